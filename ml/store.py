"""The ``ml.*`` tables: created when missing, appended per run (never overwritten), written from pandas."""

from __future__ import annotations

import duckdb
import pandas as pd

from brecha.core.db import create_ddl, table_exists
from brecha_ml.segments import SEGMENT_FEATURES

_CENTROIDS = ", ".join(f"centroid_{c} DOUBLE" for c in SEGMENT_FEATURES)

DDL: dict[str, str] = {
    "district_predictions": """run_id VARCHAR NOT NULL, ubigeo VARCHAR NOT NULL, model_name VARCHAR NOT NULL,
        predicted_internet_pct DOUBLE, lower_90 DOUBLE, upper_90 DOUBLE, internet_pct DOUBLE,
        gap_pp DOUBLE, priority_score DOUBLE, priority_rank INTEGER, underserved_predicted BOOLEAN,
        underserved_probability DOUBLE, is_out_of_fold BOOLEAN, households_offline DOUBLE, shortfall_score DOUBLE,
        error_group VARCHAR, error_group_mae_pp DOUBLE, shortfall_weight DOUBLE, offline_priority_score DOUBLE,
        offline_priority_rank INTEGER, PRIMARY KEY (run_id, ubigeo)""",
    "model_runs": """run_id VARCHAR NOT NULL, run_at TIMESTAMP, data_fingerprint VARCHAR, seed INTEGER,
        model_name VARCHAR NOT NULL, model_family VARCHAR, params JSON, cv_r2 DOUBLE, cv_mae DOUBLE,
        cv_rmse DOUBLE, interval_coverage DOUBLE, selected BOOLEAN, artifact_path VARCHAR, n_train INTEGER,
        n_features INTEGER, fit_seconds DOUBLE, cv_r2_household_weighted DOUBLE, cv_mae_household_weighted DOUBLE,
        PRIMARY KEY (run_id, model_name)""",
    "model_fold_metrics": """run_id VARCHAR NOT NULL, model_name VARCHAR NOT NULL, fold INTEGER NOT NULL,
        test_departments VARCHAR, n_test INTEGER, r2 DOUBLE, mae DOUBLE, rmse DOUBLE""",
    "feature_importance": """run_id VARCHAR NOT NULL, model_name VARCHAR NOT NULL, feature VARCHAR NOT NULL,
        importance_mean DOUBLE, importance_std DOUBLE, rank INTEGER""",
    "district_segments": """run_id VARCHAR NOT NULL, ubigeo VARCHAR NOT NULL, segment_id INTEGER,
        segment_label VARCHAR, PRIMARY KEY (run_id, ubigeo)""",
    "segment_profiles": f"""run_id VARCHAR NOT NULL, segment_id INTEGER NOT NULL, segment_label VARCHAR,
        n_districts INTEGER, description VARCHAR, silhouette DOUBLE, {_CENTROIDS}, mean_internet_pct DOUBLE""",
    "classification_metrics": """run_id VARCHAR NOT NULL, model_name VARCHAR, threshold_pct DOUBLE,
        fold INTEGER, scope VARCHAR, test_departments VARCHAR, n_test INTEGER, n_positive INTEGER,
        precision DOUBLE, recall DOUBLE, f1 DOUBLE, roc_auc DOUBLE""",
    "feature_drift": """run_id VARCHAR NOT NULL, feature VARCHAR NOT NULL, mean DOUBLE, std DOUBLE, p05 DOUBLE,
        p50 DOUBLE, p95 DOUBLE, null_share DOUBLE, psi_vs_previous DOUBLE""",
    "interval_coverage_by_group": """run_id VARCHAR NOT NULL, model_name VARCHAR NOT NULL, scope VARCHAR NOT NULL,
        group_value VARCHAR NOT NULL, n_districts INTEGER, coverage DOUBLE, coverage_household_weighted DOUBLE,
        mean_width_pp DOUBLE, PRIMARY KEY (run_id, model_name, scope, group_value)""",
}

# Tables written after training, not by it. `brecha predict --run RUN_ID`: every rescoring of the current marts by a
# run's artifact, kept (never overwritten), keyed by run and time.
LATER_DDL: dict[str, str] = {
    "rescored_predictions": "rescored_at TIMESTAMP NOT NULL, " + DDL["district_predictions"].replace(
        "PRIMARY KEY (run_id, ubigeo)", "PRIMARY KEY (run_id, rescored_at, ubigeo)"),
}


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS ml")
    for name, cols in {**DDL, **LATER_DDL}.items():
        con.execute(create_ddl(con, f"CREATE TABLE IF NOT EXISTS ml.{name} ({cols})"))  # the lake: no keys


def append(con: duckdb.DuckDBPyConnection, table: str, df: pd.DataFrame) -> None:
    """Insert ``df`` into ``ml.<table>`` matching columns by name."""
    if table not in DDL and table not in LATER_DDL:
        raise KeyError(f"unknown ml table {table!r}")
    con.register("_ml_frame", df)
    try:
        con.execute(f"INSERT INTO ml.{table} BY NAME SELECT * FROM _ml_frame")
    finally:
        con.unregister("_ml_frame")


def latest_run_id(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> str | None:
    """The latest model run recorded in ``ml.model_runs`` of ``catalog`` (default: the current database), by
    ``run_at`` then ``run_id``; None when there is none. Training asks before writing its own run (the previous
    run, the reference for drift); publish asks which run the serving copy carries."""
    if not table_exists(con, "ml", "model_runs", catalog):
        return None
    db = f'"{catalog}".' if catalog else ""
    row = con.execute(f"SELECT run_id FROM {db}ml.model_runs ORDER BY run_at DESC, run_id DESC LIMIT 1").fetchone()
    return str(row[0]) if row else None
