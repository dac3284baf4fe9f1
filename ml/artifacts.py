"""Model artifacts: ``<artifacts>/<run_id>/<model_name>/`` with model_config.json, the model
(``model.pkl`` via joblib for scikit-learn models, ``model.pt`` via ``torch.save`` for models that contain a
PyTorch network) and metrics.json. Artifacts are the project's own files: loading unpickles them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import joblib
import pandas as pd
import torch

from brecha.core.settings import paths

FEATURES_SNAPSHOT = "features.parquet"


def run_dir(run_id: str) -> Path:
    return paths().artifacts / run_id


def model_dir(run_id: str, model_name: str) -> Path:
    return run_dir(run_id) / model_name


def save_model(run_id: str, model_name: str, model: Any, family: str, config: dict, metrics: dict) -> Path:
    d = model_dir(run_id, model_name)
    d.mkdir(parents=True, exist_ok=True)
    if family == "torch":
        torch.save(model, d / "model.pt")
    else:
        joblib.dump(model, d / "model.pkl")
    (d / "model_config.json").write_text(json.dumps({**config, "family": family}, indent=2, default=str))
    (d / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    return d


def load_model(d: Path) -> tuple[Any, dict]:
    if not (d / "model_config.json").is_file():
        raise FileNotFoundError(f"no model_config.json in {d}: was this run trained in this BRECHA_HOME?")
    config = json.loads((d / "model_config.json").read_text())
    if (d / "model.pt").is_file():
        model = torch.load(d / "model.pt", weights_only=False)  # our own artifact: trusted
    else:
        model = joblib.load(d / "model.pkl")
    return model, config


def write_parquet(df: pd.DataFrame, target: Path) -> Path:
    """Write ``df`` (its columns, not its index) to a Parquet file with DuckDB."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as con:
        con.register("_frame", df)
        con.execute(f"COPY _frame TO '{target}' (FORMAT parquet)")
    return target


def save_features(run_id: str, features: pd.DataFrame) -> None:
    """Snapshot of the run's feature table, the reference for the next run's drift (PSI)."""
    write_parquet(features.rename_axis("ubigeo").reset_index(), run_dir(run_id) / FEATURES_SNAPSHOT)


def load_features(run_id: str) -> pd.DataFrame | None:
    f = run_dir(run_id) / FEATURES_SNAPSHOT
    if not f.is_file():
        return None
    with duckdb.connect() as con:
        return con.execute(f"select * from read_parquet('{f}')").df().set_index("ubigeo")
