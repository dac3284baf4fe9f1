"""Scoring every district with a fitted bundle (regressor with intervals + underserved classifier).

Used by both ``train`` and ``predict`` so a reloaded artifact reproduces the run's predictions exactly.

Priority (documented formula, higher = act first; rank 1 = highest score, ties by ubigeo):
    priority_score = 0.5 · divide_index / 100
                   + 0.3 · min(max(−gap_pp, 0), 10) / 10      (shortfall vs the model, capped at 10 pp; 0 when
                                                              the census share is unknown)
                   + 0.2 · population percentile rank (0..1)  (how many people are affected)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.features import TARGET
from ml.intervals import predict_with_interval
from ml.underserved import DECISION_PROBABILITY, predict_probability

W_DIVIDE, W_SHORTFALL, W_POPULATION = 0.5, 0.3, 0.2
SHORTFALL_CAP_PP = 10.0


def priority(divide_index: pd.Series, gap_pp: pd.Series, population: pd.Series) -> tuple[pd.Series, pd.Series]:
    shortfall = (-gap_pp).clip(lower=0, upper=SHORTFALL_CAP_PP).fillna(0) / SHORTFALL_CAP_PP
    score = (W_DIVIDE * divide_index.fillna(divide_index.median()).fillna(0) / 100 + W_SHORTFALL * shortfall
             + W_POPULATION * population.rank(pct=True).fillna(0))
    order = pd.DataFrame({"s": -score.round(12), "u": score.index}).sort_values(["s", "u"], kind="stable")
    rank = pd.Series(np.arange(1, len(order) + 1), index=order.index)
    return score, rank.reindex(score.index)


def score_districts(regressor, classifier, X: pd.DataFrame, marts: pd.DataFrame, model_name: str) -> pd.DataFrame:  # noqa: N803
    out = predict_with_interval(regressor, X)
    out.insert(0, "ubigeo", marts["ubigeo"].astype(str))
    out.insert(1, "model_name", model_name)
    out["actual_internet_pct"] = marts[TARGET].astype(float)
    out["gap_pp"] = out["actual_internet_pct"] - out["predicted_internet_pct"]
    out["priority_score"], out["priority_rank"] = priority(marts["divide_index"].astype(float), out["gap_pp"],
                                                           marts["population"].astype(float))
    prob = predict_probability(classifier, X)
    out["underserved_probability"] = prob
    out["underserved_predicted"] = pd.Series(prob >= DECISION_PROBABILITY, index=X.index).where(~np.isnan(prob))
    return out.reset_index(drop=True)
