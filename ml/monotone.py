"""Monotone effects of a fitted model, checked on every district.

The served model is monotone by construction in ``TrainConfig.monotone`` (electricity: more never gives less
internet; poverty: more never gives more): ``monotonic_cst`` in ``hist_gbm`` and a ``MonotoneMLP`` in
``torch_mlp``, so their mean and its square are monotone too. ``check`` verifies it on real rows rather than
trusting the construction: for each ``Rule`` it moves one feature of every district by ``change`` points
(clipped to 0..100; a district without the feature is left out) and counts the districts whose prediction
moved the wrong way. ``effect_of_setting`` measures the average effect of setting a feature to one value
(e.g. electricity from ~93.5 % to 100 %). Used by the tests (``tests/test_monotone.py``) and ``ml/README.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from brecha_ml.models import from_model_scale

# a prediction (percent) that moves by less than this is unchanged: float32 rounding in the network, not an effect
TOLERANCE_PP = 1e-6

Predict = Callable[[pd.DataFrame], np.ndarray]  # feature rows -> predicted internet share (percent)


@dataclass(frozen=True)
class Rule:
    """Moving ``feature`` by ``change`` points must not move the prediction against ``direction`` (+1: it must
    not fall; -1: it must not rise)."""

    feature: str
    change: float
    direction: int

    @property
    def label(self) -> str:
        return f"{self.feature} {self.change:+g} pp"


# the what-ifs: electricity +10 pp must not lower the prediction, poverty -10 pp must not lower it either
RULES: tuple[Rule, ...] = (Rule("electricity_pct", 10.0, +1), Rule("poverty_pct", -10.0, +1))


def percent_predictor(model) -> Predict:
    """A model fitted on the sqrt scale (any candidate, fold model or final model) as a percent predictor."""
    return lambda X: from_model_scale(model.predict(X))  # noqa: N803


def check(predict: Predict, X: pd.DataFrame, rules: tuple[Rule, ...] = RULES) -> pd.DataFrame:  # noqa: N803
    """One row per rule: districts moved, how many moved the wrong way (beyond ``TOLERANCE_PP``), the worst
    wrong-way move and the mean and largest change (pp)."""
    base = np.asarray(predict(X), float)
    rows = []
    for rule in rules:
        has = X[rule.feature].notna().to_numpy()
        moved = X.copy()
        moved[rule.feature] = (X[rule.feature] + rule.change).clip(0, 100)
        delta = (np.asarray(predict(moved), float) - base)[has] * rule.direction
        wrong = delta < -TOLERANCE_PP
        rows.append({"rule": rule.label, "feature": rule.feature, "change": rule.change,
                     "n_districts": int(has.sum()), "n_wrong_way": int(wrong.sum()),
                     "worst_wrong_pp": float(delta[wrong].min() * rule.direction) if wrong.any() else 0.0,
                     "mean_change_pp": float(delta.mean() * rule.direction) if has.any() else float("nan"),
                     "max_abs_change_pp": float(np.abs(delta).max()) if has.any() else float("nan")})
    return pd.DataFrame(rows)


def effect_of_setting(predict: Predict, X: pd.DataFrame, feature: str, value: float,  # noqa: N803
                      rows: np.ndarray | None = None) -> pd.Series:
    """Change of each prediction (pp) when ``feature`` is set to ``value`` (in ``rows``, a boolean mask; all)."""
    sub = X if rows is None else X[np.asarray(rows, bool)]
    return pd.Series(np.asarray(predict(sub.assign(**{feature: value})), float) - np.asarray(predict(sub), float),
                     index=sub.index)
