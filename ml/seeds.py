"""Model figures that hold on every seed: the spatial CV of ``brecha train`` repeated for several seeds.

One training run is one seed: the networks' initialisation and batch order (and so the MLP's and the ensemble's
figures) change with it, by as much as 0.007 R² between seeds on the real extracts. ``brecha seeds`` (``brecha_ml.multiseed.run``)
cross-validates every candidate on the current marts for each seed, with the same folds, features, selection rule
and intervals as ``brecha train`` (``brecha_ml.train.cross_validate_candidates``), and appends one row per seed and
candidate to ``ml.seed_metrics``; ``brecha runs`` and the model dashboard show their mean ± SD for the warehouse's
data. ``brecha train`` adds its own seed's rows too. Nothing is refitted on all districts and no prediction is
written: this measures, it does not serve.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brecha_ml.intervals import coverage_tables
from brecha_ml.spatial_cv import CVResult, regression_metrics

DEFAULT_SEEDS: tuple[int, ...] = (42, 7, 1, 2, 3)
METRICS: tuple[str, ...] = ("r2", "mae", "r2_household_weighted", "mae_lima_callao", "interval_coverage",
                            "share_above_interval", "share_below_interval", "departments_below_85",
                            "departments_below_80", "mean_width_pp", "mean_error_pp")

DDL = """data_fingerprint VARCHAR NOT NULL, seed INTEGER NOT NULL, model_name VARCHAR NOT NULL, run_id VARCHAR,
    computed_at TIMESTAMP, selected BOOLEAN, r2 DOUBLE, mae DOUBLE, rmse DOUBLE, r2_household_weighted DOUBLE,
    mae_household_weighted DOUBLE, mae_lima_callao DOUBLE, interval_coverage DOUBLE, share_above_interval DOUBLE,
    share_below_interval DOUBLE, departments_below_85 INTEGER, departments_below_80 INTEGER,
    min_department_coverage DOUBLE, mean_width_pp DOUBLE, mean_error_pp DOUBLE, seconds DOUBLE"""

CALLAO = "07"
LIMA_PROVINCE = "1501"


def lima_callao(ubigeos: np.ndarray) -> np.ndarray:
    """Districts of Lima Metropolitana (province 1501) and Callao (department 07)."""
    u = pd.Series(np.asarray(ubigeos, dtype=str))
    return (u.str[:4].eq(LIMA_PROVINCE) | u.str[:2].eq(CALLAO)).to_numpy()


def figures(cv: CVResult, intervals: pd.DataFrame, y: np.ndarray, departments: np.ndarray, households: np.ndarray,
            ubigeos: np.ndarray) -> dict[str, float]:
    """The figures of one candidate's out-of-fold predictions and intervals (percent points, shares 0..1)."""
    lima = lima_callao(ubigeos)
    weighted = regression_metrics(y, cv.oof, households)
    cover = coverage_tables(y, intervals, departments)
    by_dept = cover.loc[cover["scope"] == "department", "coverage"]
    above = y > intervals["upper_90"].to_numpy() + 1e-9
    below = y < intervals["lower_90"].to_numpy() - 1e-9
    return {**cv.pooled, "r2_household_weighted": weighted["r2"], "mae_household_weighted": weighted["mae"],
            "mae_lima_callao": float(np.abs(cv.oof[lima] - y[lima]).mean()) if lima.any() else float("nan"),
            "interval_coverage": float(1 - above.mean() - below.mean()),
            "share_above_interval": float(above.mean()), "share_below_interval": float(below.mean()),
            "departments_below_85": int((by_dept < 0.85).sum()), "departments_below_80": int((by_dept < 0.80).sum()),
            "min_department_coverage": float(by_dept.min()),
            "mean_width_pp": float(cover.loc[cover["scope"] == "pooled", "mean_width_pp"].iloc[0]),
            "mean_error_pp": float(np.mean(y - cv.oof))}


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean, SD, min, max and number of seeds of every figure, per model (rows of ``ml.seed_metrics``)."""
    stats = rows.groupby("model_name")[list(METRICS)].agg(["mean", "std", "min", "max"])
    stats["seeds"] = rows.groupby("model_name")["seed"].nunique()
    return stats


def format_table(rows: pd.DataFrame) -> str:
    """Mean ± SD over seeds per model, as text (what ``brecha seeds`` and ``brecha runs`` print)."""
    if rows.empty:
        return "no seed figures (ml.seed_metrics): run `brecha seeds`"
    stats = summarise(rows)
    served = set(rows.loc[rows["selected"].fillna(False).astype(bool), "model_name"])
    lines = [f"spatial CV over {int(stats['seeds'].max())} seed(s) ({', '.join(map(str, sorted(set(rows['seed']))))}): "
             "mean ± SD [min-max]"]
    for model, s in stats.sort_values(("mae", "mean")).iterrows():
        mark = "*" if model in served else " "
        lines.append(
            f" {mark} {model:<18} R² {s['r2', 'mean']:.4f} ± {s['r2', 'std']:.4f}  "
            f"MAE {s['mae', 'mean']:.3f} ± {s['mae', 'std']:.3f} pp  "
            f"R² hh {s['r2_household_weighted', 'mean']:.3f} ± {s['r2_household_weighted', 'std']:.3f}  "
            f"MAE Lima+Callao {s['mae_lima_callao', 'mean']:.2f} ± {s['mae_lima_callao', 'std']:.2f} pp  "
            f"coverage {s['interval_coverage', 'mean']:.1%} ± {s['interval_coverage', 'std']:.1%} "
            f"(above {s['share_above_interval', 'mean']:.1%}, below {s['share_below_interval', 'mean']:.1%})  "
            f"departments < 85 % {s['departments_below_85', 'min']:.0f}-{s['departments_below_85', 'max']:.0f}, "
            f"< 80 % {s['departments_below_80', 'min']:.0f}-{s['departments_below_80', 'max']:.0f}")
    return "\n".join(lines)


def append(con, rows: pd.DataFrame) -> None:
    """Append rows to ``ml.seed_metrics``, replacing earlier rows of the same data, seed and model."""
    con.execute("CREATE SCHEMA IF NOT EXISTS ml")
    con.execute(f"CREATE TABLE IF NOT EXISTS ml.seed_metrics ({DDL})")
    con.register("_seed_rows", rows)
    con.execute("""DELETE FROM ml.seed_metrics USING _seed_rows
        WHERE seed_metrics.data_fingerprint = _seed_rows.data_fingerprint AND seed_metrics.seed = _seed_rows.seed
          AND seed_metrics.model_name = _seed_rows.model_name""")
    con.execute("INSERT INTO ml.seed_metrics BY NAME SELECT * FROM _seed_rows")
    con.unregister("_seed_rows")


def latest(con, fingerprint: str | None = None) -> pd.DataFrame:
    """The seed rows of ``fingerprint``'s data, by default the data of the latest training run (empty when none)."""
    from brecha.core.db import table_exists

    if not table_exists(con, "ml", "seed_metrics"):
        return pd.DataFrame()
    if fingerprint is None:
        if not table_exists(con, "ml", "model_runs"):
            return pd.DataFrame()
        row = con.execute("SELECT data_fingerprint FROM ml.model_runs ORDER BY run_at DESC LIMIT 1").fetchone()
        fingerprint = row[0] if row else None
    return con.execute("SELECT * FROM ml.seed_metrics WHERE data_fingerprint = ? ORDER BY seed, model_name",
                       [fingerprint]).df()
