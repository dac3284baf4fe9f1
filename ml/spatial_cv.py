"""Spatial cross-validation: folds grouped by department, so no department is ever in training and test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import RegressorMixin, clone
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
from sklearn.model_selection import GroupKFold

from ml.models import from_model_scale, to_model_scale


def department_folds(groups: np.ndarray, n_splits: int) -> GroupKFold:
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(f"spatial CV needs districts of at least 2 departments with a known target; found {n_groups}")
    return GroupKFold(n_splits=min(n_splits, n_groups))


def fold_indices(X: pd.DataFrame, groups: np.ndarray, n_splits: int) -> list[tuple[np.ndarray, np.ndarray]]:  # noqa: N803
    return list(department_folds(groups, n_splits).split(X, groups=groups))


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    r2 = r2_score(y, pred) if len(y) > 1 and np.var(y) > 0 else float("nan")
    return {"r2": float(r2), "mae": float(mean_absolute_error(y, pred)), "rmse": float(root_mean_squared_error(y, pred))}


@dataclass
class CVResult:
    oof: np.ndarray  # out-of-fold prediction (percent, clipped 0..100)
    oof_scale: np.ndarray  # out-of-fold prediction on the model scale
    folds: pd.DataFrame  # fold, test_departments, n_test, r2, mae, rmse
    pooled: dict[str, float]
    models: list[RegressorMixin]  # the fitted fold models, in fold order


def cross_validate(estimator: RegressorMixin, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray,  # noqa: N803
                   folds: list[tuple[np.ndarray, np.ndarray]]) -> CVResult:
    z = to_model_scale(y)
    oof_scale = np.full(len(y), np.nan)
    rows, models = [], []
    for k, (tr, te) in enumerate(folds, start=1):
        model = clone(estimator).fit(X.iloc[tr], z[tr])
        oof_scale[te] = model.predict(X.iloc[te])
        pred = from_model_scale(oof_scale[te])
        rows.append({"fold": k, "test_departments": ",".join(sorted(set(groups[te]))), "n_test": len(te),
                     **regression_metrics(y[te], pred)})
        models.append(model)
    oof = from_model_scale(oof_scale)
    return CVResult(oof, oof_scale, pd.DataFrame(rows), regression_metrics(y, oof), models)


def cv_interval_coverage(y: np.ndarray, oof_scale: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
                         confidence: float) -> float:
    """Diagnostic only (the intervals themselves come from MAPIE): coverage on each test fold of the
    interval ``oof ± q`` on the model scale, with ``q`` the conformal quantile of the *other* folds'
    absolute out-of-fold residuals. Estimates how well intervals hold for departments never seen."""
    z = to_model_scale(y)
    resid = np.abs(z - oof_scale)
    hits = np.zeros(len(y), dtype=bool)
    for tr, te in folds:
        n = len(tr)
        level = min(1.0, np.ceil((n + 1) * confidence) / n)
        q = np.quantile(resid[tr], level, method="higher")
        lo, hi = from_model_scale(oof_scale[te] - q), from_model_scale(oof_scale[te] + q)
        hits[te] = (y[te] >= lo - 1e-9) & (y[te] <= hi + 1e-9)
    return float(hits.mean())
