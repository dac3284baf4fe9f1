"""90 % prediction intervals with MAPIE's cross-conformal regressor, folds grouped by department.

MAPIE 1.x ``CrossConformalRegressor`` accepts any scikit-learn splitter and forwards ``groups`` to it, so
the conformity scores are out-of-fold residuals of models that never saw the district's department.
Scores are absolute residuals on the model's sqrt scale, which makes intervals in percent narrow for
near-zero districts and wider for high-share ones (a variance-stabilised, normalised conformal interval).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from mapie.regression import CrossConformalRegressor
from sklearn.base import RegressorMixin

from ml.models import from_model_scale, to_model_scale
from ml.spatial_cv import department_folds


def fit_conformal(estimator: RegressorMixin, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray,  # noqa: N803
                  *, n_splits: int, confidence: float, method: str) -> CrossConformalRegressor:
    """Fit the final model on every known district and conformalise it with department-grouped folds."""
    reg = CrossConformalRegressor(estimator=estimator, confidence_level=confidence, conformity_score="absolute",
                                  method=method, cv=department_folds(groups, n_splits))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reg.fit_conformalize(X, to_model_scale(y), groups=groups)
    return reg


def predict_with_interval(reg: CrossConformalRegressor, X: pd.DataFrame) -> pd.DataFrame:  # noqa: N803
    """Point prediction of the model fitted on all known districts, and the interval, in percent 0..100."""
    point, iv = reg.predict_interval(X, aggregate_point_predictions=None)
    pred = from_model_scale(point)
    lower = np.minimum(from_model_scale(iv[:, 0, 0]), pred)
    upper = np.maximum(from_model_scale(iv[:, 1, 0]), pred)
    return pd.DataFrame({"predicted_internet_pct": pred, "lower_90": lower, "upper_90": upper}, index=X.index)
