"""Scoring every district with a run's selected regressor and underserved classifier.

Used by both ``train`` and ``predict`` so a reloaded artifact reproduces the run's predictions exactly.
Districts with a known census share are scored out of fold (``is_out_of_fold``; see ``brecha_ml.selected``), the
others by the final model; ``gap_pp = actual − predicted`` is therefore an out-of-fold gap. The priority
scores (the divide lens and the households-offline lens) are documented in ``brecha_ml.priority``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brecha_ml.features import GROUP, TARGET
from brecha_ml.priority import priority
from brecha_ml.underserved import DECISION_PROBABILITY, predict_probability


def oof_departments(marts: pd.DataFrame) -> pd.Series:
    """Per district, its department code when its census share is known (scored out of fold), else null."""
    return marts[GROUP].astype(str).where(marts[TARGET].notna())


def score_districts(predicted: pd.DataFrame, classifier, X: pd.DataFrame, marts: pd.DataFrame,  # noqa: N803
                    model_name: str) -> pd.DataFrame:
    """``predicted``: the selected regressor's output for ``X`` with ``oof_departments(marts)``
    (``brecha_ml.predict.apply_regressor``): prediction, interval, half_width_scale, is_out_of_fold."""
    actual = marts[TARGET].astype(float)
    out = predicted.copy()
    out.insert(0, "ubigeo", marts["ubigeo"].astype(str))
    out.insert(1, "model_name", model_name)
    out["internet_pct"] = actual  # the census share, named as in the marts and the API
    out["gap_pp"] = out["internet_pct"] - out["predicted_internet_pct"]
    out = out.join(priority(marts["households_2025_estimated"].astype(float), out["predicted_internet_pct"], actual,
                            out["half_width_scale"], marts["divide_index"].astype(float), out["is_out_of_fold"]))
    prob = predict_probability(classifier, X)
    out["underserved_probability"] = prob
    out["underserved_predicted"] = pd.Series(prob >= DECISION_PROBABILITY, index=X.index).where(~np.isnan(prob))
    return out.drop(columns="half_width_scale").reset_index(drop=True)
