"""The artifact of a run's selected regressor: the final model, the spatial-CV fold models and the Mondrian
conformal calibrators, with one method to score rows.

* Rows of a district with a known census share whose department was in a CV test fold
  (``is_out_of_fold``): the prediction of the fold model that never saw that department, and the interval
  calibrated without that fold's residuals. What is shown as "expected" beside an actual value is never
  a model that saw it.
* Any other row (no census share, or a what-if row): the final model, refitted on every district with a
  known share, and the interval calibrated on every out-of-fold residual.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import RegressorMixin

from brecha_ml.intervals import BAND_FEATURE, MondrianIntervals, region_of


@dataclass
class SelectedRegressor:
    model_name: str
    final: RegressorMixin
    fold_models: list[RegressorMixin]
    fold_departments: list[list[str]]  # departments of each CV test fold
    intervals: MondrianIntervals

    def fold_of(self, departments: pd.Series | np.ndarray | None, n: int) -> np.ndarray:
        """The CV fold whose model never saw each row's department; -1 where none (or no department given)."""
        out = np.full(n, -1)
        if departments is None:
            return out
        where = {d: k for k, deps in enumerate(self.fold_departments) for d in deps}
        deps = pd.Series(np.asarray(departments, dtype=object))
        return deps.map(lambda d: where.get(d, -1) if isinstance(d, str) else -1).to_numpy(int)

    def predict_frame(self, X: pd.DataFrame, oof_departments: pd.Series | np.ndarray | None = None,  # noqa: N803
                      departments: pd.Series | np.ndarray | None = None) -> pd.DataFrame:
        """predicted_internet_pct, lower_90, upper_90, half_width_scale, is_out_of_fold (index of ``X``).

        ``oof_departments``: per row, the department code of a district whose census share is known (its
        row is then scored out of fold), or null; without it every row is scored by the final model.
        ``departments``: per row, its department code (any row), which gives the interval's region in runs
        calibrated by region (before the eighth round); runs calibrated by poverty band take each row's band from
        its ``poverty_pct`` column (a row without one gets an interval calibrated by level only)."""
        fold = self.fold_of(oof_departments, len(X))
        scale = np.full(len(X), np.nan)
        final_rows = np.flatnonzero(fold < 0)
        if len(final_rows):
            scale[final_rows] = self.final.predict(X.iloc[final_rows])
        for k, model in enumerate(self.fold_models):
            rows = np.flatnonzero(fold == k)
            if len(rows):
                scale[rows] = model.predict(X.iloc[rows])
        deps = pd.Series(np.asarray(departments if departments is not None else np.full(len(X), None), dtype=object))
        if oof_departments is not None:
            deps = deps.where(deps.notna(), pd.Series(np.asarray(oof_departments, dtype=object)))
        bands = X[BAND_FEATURE].to_numpy(float) if BAND_FEATURE in X.columns else None
        out = self.intervals.interval(scale, fold, region_of(deps), bands)
        out.index = X.index
        out["is_out_of_fold"] = fold >= 0
        return out
