"""``brecha predict --run RUN_ID``: reload a run's selected artifact and rescore the current marts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from brecha.db import session
from brecha.errors import BrechaError
from ml import artifacts
from ml.features import build_feature_table, load_marts
from ml.intervals import predict_with_interval
from ml.scoring import score_districts
from ml.underserved import MODEL_NAME as CLASSIFIER_NAME

RESCORED_FILE = "rescored_predictions.parquet"


@dataclass
class PredictResult:
    run_id: str
    model_name: str
    predictions: pd.DataFrame
    max_abs_diff_vs_run: float | None  # vs ml.district_predictions of that run (same districts)
    output: Path

    def __str__(self) -> str:
        p = self.predictions["predicted_internet_pct"]
        same = ("no stored predictions to compare" if self.max_abs_diff_vs_run is None
                else f"max |difference| vs the run's stored predictions: {self.max_abs_diff_vs_run:.2e} pp")
        return (f"run {self.run_id} ({self.model_name}): {len(p)} districts rescored, mean predicted internet "
                f"{p.mean():.2f} %; {same}; written to {self.output}")


def _selected(run_id: str) -> tuple[str, Path]:
    with session(read_only=True) as con:
        try:
            row = con.execute("select model_name, artifact_path from ml.model_runs where run_id = ? and selected",
                              [run_id]).fetchone()
        except Exception as err:  # no ml schema yet
            raise BrechaError(f"no ml.model_runs table in this warehouse: run `brecha train` first ({err})") from err
    if row is None:
        raise BrechaError(f"run {run_id!r} is not in ml.model_runs: pick a run_id from "
                          "`select distinct run_id from ml.model_runs`")
    return row[0], Path(row[1])


@lru_cache(maxsize=4)
def selected_model(run_id: str) -> tuple[Any, dict]:
    """The selected regressor of ``run_id`` and its config, found from the artifacts alone (the folder whose
    ``model_config.json`` says ``"selected": true``), loaded once per run id per process."""
    run = artifacts.run_dir(run_id)
    chosen = [c.parent for c in sorted(run.glob("*/model_config.json")) if json.loads(c.read_text()).get("selected")]
    if not chosen:
        raise BrechaError(f"{run}: no selected model artifact for run {run_id!r} (was it trained in this "
                          "BRECHA_HOME? `brecha train` writes one folder per model there)")
    return artifacts.load_model(chosen[0])


def predict_frame(run_id: str, features: pd.DataFrame, *, departments: pd.Series | None = None) -> pd.DataFrame:
    """Apply the selected model of ``run_id`` to ``features`` (one row per district, the feature table's
    columns; extra columns are ignored): ``predicted_internet_pct``, ``lower_90``, ``upper_90`` with the
    features' index. ``departments`` (per row, the department code) is accepted for intervals calibrated by
    region; today's cross-conformal intervals do not depend on it."""
    model, config = selected_model(run_id)
    missing = [f for f in config["features"] if f not in features.columns]
    if missing:
        raise BrechaError(f"run {run_id} was trained on features {missing} that this version cannot build")
    return predict_with_interval(model, features[config["features"]])


def predict(run_id: str) -> PredictResult:
    with threadpool_limits(limits=1):
        return _predict(run_id)


def _predict(run_id: str) -> PredictResult:
    model_name, path = _selected(run_id)
    regressor, config = artifacts.load_model(path)
    classifier, _ = artifacts.load_model(artifacts.model_dir(run_id, CLASSIFIER_NAME))
    with session(read_only=True) as con:
        marts = load_marts(con)
        stored = con.execute("select ubigeo, predicted_internet_pct from ml.district_predictions where run_id = ?",
                             [run_id]).df()
    features = build_feature_table(marts)
    missing = [f for f in config["features"] if f not in features.columns]
    if missing:
        raise BrechaError(f"run {run_id} was trained on features {missing} that this version cannot build")
    out = score_districts(regressor, classifier, features[config["features"]], marts, model_name)
    out.insert(0, "run_id", run_id)
    diff = None
    if len(stored):
        j = out.merge(stored, on="ubigeo", suffixes=("", "_stored"))
        diff = float(np.nanmax(np.abs(j["predicted_internet_pct"] - j["predicted_internet_pct_stored"]))) if len(j) else None
    target = artifacts.run_dir(run_id) / RESCORED_FILE
    artifacts.write_parquet(out, target)
    return PredictResult(run_id, model_name, out, diff, target)
