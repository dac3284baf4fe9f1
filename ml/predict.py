"""``brecha predict --run RUN_ID``: reload a run's selected artifact and rescore the current marts; and
``predict_frame``, the one way to apply a run's selected regressor and its intervals to feature rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from brecha.core.db import session
from brecha.core.errors import BrechaError
from brecha_ml import artifacts, store
from brecha_ml.features import GROUP, build_feature_table, load_marts
from brecha_ml.scoring import oof_departments, score_districts
from brecha_ml.selected import SelectedRegressor
from brecha_ml.underserved import MODEL_NAME as CLASSIFIER_NAME

RESCORED_FILE = "rescored_predictions.parquet"
INTERVAL_COLUMNS = ["predicted_internet_pct", "lower_90", "upper_90"]


@dataclass
class PredictResult:
    run_id: str
    model_name: str
    predictions: pd.DataFrame
    max_abs_diff_vs_run: float | None  # vs ml.district_predictions of that run (same districts)
    output: Path
    rescored_at: datetime | None = None  # the rows' key in ml.rescored_predictions (with run_id)

    def __str__(self) -> str:
        p = self.predictions["predicted_internet_pct"]
        same = ("no stored predictions to compare" if self.max_abs_diff_vs_run is None
                else f"max |difference| vs the run's stored predictions: {self.max_abs_diff_vs_run:.2e} pp")
        return (f"run {self.run_id} ({self.model_name}): {len(p)} districts rescored, mean predicted internet "
                f"{p.mean():.2f} %; {same}; written to ml.rescored_predictions (run_id = '{self.run_id}', "
                f"rescored_at = '{self.rescored_at}') and {self.output}")


@lru_cache(maxsize=4)
def load_selected(run_id: str) -> tuple[str, Any, dict]:
    """(model name, regressor, model_config) of a run's selected model, found from the run's artifacts alone (the
    folder whose ``model_config.json`` says ``"selected": true``; no database is opened, so the HTTP API reads only
    the serving copy and these files), loaded once per run id and process."""
    run = artifacts.run_dir(run_id)
    chosen = [c.parent for c in sorted(run.glob("*/model_config.json")) if json.loads(c.read_text()).get("selected")]
    if not chosen:
        raise BrechaError(f"run {run_id!r} has no selected model under {run}: pick a run trained in this BRECHA_HOME "
                          "(`select distinct run_id from ml.model_runs`)")
    regressor, config = artifacts.load_model(chosen[0])
    return config.get("model_name", chosen[0].name), regressor, config


def apply_regressor(regressor: Any, X: pd.DataFrame,  # noqa: N803
                    oof_departments: pd.Series | None = None, departments: pd.Series | None = None) -> pd.DataFrame:
    """Prediction and 90 % interval (percent) of a loaded selected regressor; ``is_out_of_fold`` and the
    interval's half-width on the model scale come with runs that have them (``SelectedRegressor``)."""
    if not isinstance(regressor, SelectedRegressor):
        raise BrechaError(f"a {type(regressor).__name__} is no selected model of this version: the run was trained by "
                          "an older brecha. Train again (`brecha train`, or `brecha run`)")
    return regressor.predict_frame(X, oof_departments, departments)


def predict_frame(run_id: str, features: pd.DataFrame, *, oof_departments: pd.Series | None = None,
                  departments: pd.Series | None = None) -> pd.DataFrame:
    """Apply run ``run_id``'s selected regressor and its (Mondrian conformal) 90 % intervals to arbitrary
    feature rows: ``features`` must hold the run's ``config["features"]`` columns (extra columns are ignored).
    Every row is scored by the final model (fitted on every district with a known census share). Returns
    ``predicted_internet_pct``, ``lower_90``, ``upper_90`` (percent, 0..100) with the index of ``features``.

    ``oof_departments`` (used by ``brecha predict``): per row, the department of a district whose census share
    is known, or null; such rows are scored by the spatial-CV fold model that never saw that department, and
    the result also has ``is_out_of_fold`` and ``half_width_scale`` (the interval half-width, sqrt scale).
    ``departments`` (optional): per row, the department code, which calibrates the interval by predicted level
    within the department's region (``brecha_ml.intervals.region_of``); without it, by predicted level only."""
    _, regressor, config = load_selected(run_id)
    missing = [f for f in config["features"] if f not in features.columns]
    if missing:
        raise BrechaError(f"run {run_id} needs feature column(s) {', '.join(missing)}; the run's features are "
                          f"{', '.join(config['features'])}")
    with threadpool_limits(limits=1):
        out = apply_regressor(regressor, features[config["features"]].astype(float), oof_departments,
                              None if departments is None else pd.Series(np.asarray(departments, dtype=object)))
    out = out.set_axis(features.index)
    return out[INTERVAL_COLUMNS] if oof_departments is None else out


def predict(run_id: str) -> PredictResult:
    with threadpool_limits(limits=1):
        return _predict(run_id)


def _predict(run_id: str) -> PredictResult:
    model_name, _, config = load_selected(run_id)
    classifier, _ = artifacts.load_model(artifacts.model_dir(run_id, CLASSIFIER_NAME))
    with session(read_only=True) as con:
        marts = load_marts(con)
        stored = con.execute("select ubigeo, predicted_internet_pct from ml.district_predictions where run_id = ?",
                             [run_id]).df()
    features = build_feature_table(marts)
    missing = [f for f in config["features"] if f not in features.columns]
    if missing:
        raise BrechaError(f"run {run_id} was trained on features {missing} that this version cannot build")
    X = features[config["features"]]  # noqa: N806
    predicted = predict_frame(run_id, X, oof_departments=oof_departments(marts),
                              departments=marts[GROUP].astype(str))
    out = score_districts(predicted, classifier, X, marts, model_name)
    out.insert(0, "run_id", run_id)
    diff = None
    if len(stored):
        j = out.merge(stored, on="ubigeo", suffixes=("", "_stored"))
        diff = float(np.nanmax(np.abs(j["predicted_internet_pct"] - j["predicted_internet_pct_stored"]))) if len(j) else None
    target = artifacts.run_dir(run_id) / RESCORED_FILE
    artifacts.write_parquet(out, target)
    rescored_at = datetime.now(UTC).replace(tzinfo=None)
    with session() as con:
        store.ensure_tables(con)
        store.append(con, "rescored_predictions", out.assign(rescored_at=rescored_at))
    return PredictResult(run_id, model_name, out, diff, target, rescored_at)
