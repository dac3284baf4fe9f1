"""The "underserved" classifier: is a district's census internet share below a threshold?

Evaluated under the same department-grouped folds as the regressors (precision, recall, F1 per fold and
pooled out-of-fold); then fitted on every known district to give each district a probability.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

MODEL_NAME = "underserved_hgb"
DECISION_PROBABILITY = 0.5


def make_classifier(seed: int, max_iter: int, learning_rate: float) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=learning_rate, max_depth=4,
                                          min_samples_leaf=10, random_state=seed)


def _scores(y: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    pred = prob >= DECISION_PROBABILITY
    auc = roc_auc_score(y, prob) if 0 < y.sum() < len(y) else float("nan")
    return {"n_positive": int(y.sum()), "precision": float(precision_score(y, pred, zero_division=0)),
            "recall": float(recall_score(y, pred, zero_division=0)), "f1": float(f1_score(y, pred, zero_division=0)),
            "roc_auc": float(auc)}


def evaluate_and_fit(X: pd.DataFrame, y_pct: np.ndarray, groups: np.ndarray,  # noqa: N803
                     folds: list[tuple[np.ndarray, np.ndarray]], threshold: float, seed: int,
                     max_iter: int, learning_rate: float) -> tuple[HistGradientBoostingClassifier, pd.DataFrame]:
    """Return the classifier fitted on all known districts and one metrics row per fold plus a pooled row."""
    y = (y_pct < threshold).astype(int)
    base = make_classifier(seed, max_iter, learning_rate)
    oof = np.zeros(len(y))
    rows = []
    for k, (tr, te) in enumerate(folds, start=1):
        if len(np.unique(y[tr])) < 2:
            oof[te] = float(y[tr][0])
        else:
            oof[te] = clone(base).fit(X.iloc[tr], y[tr]).predict_proba(X.iloc[te])[:, 1]
        rows.append({"fold": k, "scope": "fold", "test_departments": ",".join(sorted(set(groups[te]))),
                     "n_test": len(te), **_scores(y[te], oof[te])})
    rows.append({"fold": None, "scope": "pooled", "test_departments": None, "n_test": len(y), **_scores(y, oof)})
    metrics = pd.DataFrame(rows)
    metrics.insert(0, "threshold_pct", float(threshold))
    metrics.insert(0, "model_name", MODEL_NAME)
    final = clone(base).fit(X, y) if len(np.unique(y)) > 1 else None
    return final, metrics


def predict_probability(clf: HistGradientBoostingClassifier | None, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
    if clf is None:
        return np.full(len(X), np.nan)
    return clf.predict_proba(X)[:, 1]
