"""Spatial cross-validation: folds grouped by department, so no department is ever in training and test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import RegressorMixin, clone
from sklearn.ensemble import VotingRegressor
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
from sklearn.model_selection import GroupKFold

from brecha_ml.models import assemble_voting, fit_grouped, from_model_scale, to_model_scale


def department_folds(groups: np.ndarray, n_splits: int) -> GroupKFold:
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(f"spatial CV needs districts of at least 2 departments with a known target; found {n_groups}")
    return GroupKFold(n_splits=min(n_splits, n_groups))


def fold_indices(X: pd.DataFrame, groups: np.ndarray, n_splits: int) -> list[tuple[np.ndarray, np.ndarray]]:  # noqa: N803
    return list(department_folds(groups, n_splits).split(X, groups=groups))


def regression_metrics(y: np.ndarray, pred: np.ndarray, weight: np.ndarray | None = None) -> dict[str, float]:
    """R², MAE and RMSE (pp); with ``weight`` (households) each district counts by its households."""
    r2 = r2_score(y, pred, sample_weight=weight) if len(y) > 1 and np.var(y) > 0 else float("nan")
    return {"r2": float(r2), "mae": float(mean_absolute_error(y, pred, sample_weight=weight)),
            "rmse": float(root_mean_squared_error(y, pred, sample_weight=weight))}


def household_weights(population: np.ndarray) -> np.ndarray:
    """Weights proportional to households (population / persons per household: the same ranking of weights);
    districts without a population get the median weight."""
    pop = np.asarray(population, dtype=float)
    return np.where(np.isfinite(pop) & (pop > 0), pop, np.nanmedian(pop))


@dataclass
class CVResult:
    oof: np.ndarray  # out-of-fold prediction (percent, clipped 0..100)
    oof_scale: np.ndarray  # out-of-fold prediction on the model scale
    folds: pd.DataFrame  # fold, test_departments, n_test, r2, mae, rmse
    pooled: dict[str, float]
    models: list[RegressorMixin]  # the fitted fold models, in fold order

    def weighted(self, y: np.ndarray, weight: np.ndarray) -> dict[str, float]:
        """Pooled out-of-fold metrics with each district weighted by its households."""
        return regression_metrics(y, self.oof, weight)


def cross_validate(estimator: RegressorMixin, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray,  # noqa: N803
                   folds: list[tuple[np.ndarray, np.ndarray]]) -> CVResult:
    z = to_model_scale(y)
    models = [fit_grouped(clone(estimator), X.iloc[tr], z[tr], groups[tr]) for tr, _ in folds]
    return evaluate_fold_models(models, X, y, groups, folds)


def cross_validate_ensemble(template: VotingRegressor, members: dict[str, CVResult], X: pd.DataFrame,  # noqa: N803
                            y: np.ndarray, groups: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]) -> CVResult:
    """CV of a ``VotingRegressor`` whose members were already cross-validated on the same folds: each fold's
    ensemble is assembled from the members' fold models (what refitting it would produce), not refitted."""
    models = [assemble_voting(template, {name: cv.models[k] for name, cv in members.items()})
              for k in range(len(folds))]
    return evaluate_fold_models(models, X, y, groups, folds)


def evaluate_fold_models(models: list[RegressorMixin], X: pd.DataFrame, y: np.ndarray,  # noqa: N803
                         groups: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]) -> CVResult:
    """Out-of-fold predictions and metrics of fold models (model k trained without fold k's departments)."""
    oof_scale = np.full(len(y), np.nan)
    rows = []
    for k, (model, (_, te)) in enumerate(zip(models, folds, strict=True), start=1):
        oof_scale[te] = model.predict(X.iloc[te])
        pred = from_model_scale(oof_scale[te])
        rows.append({"fold": k, "test_departments": ",".join(sorted(set(groups[te]))), "n_test": len(te),
                     **regression_metrics(y[te], pred)})
    oof = from_model_scale(oof_scale)
    return CVResult(oof, oof_scale, pd.DataFrame(rows), regression_metrics(y, oof), list(models))
