"""`brecha runs`: the model runs recorded in ``ml.model_runs``, newest first, with their cross-validated metrics and
how often each run's artifact rescored the marts (``ml.rescored_predictions``, written by ``brecha predict``), then
the mean ± SD over seeds of the latest run's data (``ml.seed_metrics``, written by ``brecha train`` and ``brecha
seeds``)."""

from __future__ import annotations

import duckdb

from brecha.core.db import table_exists
from brecha.core.errors import BrechaError
from brecha.core.settings import current, paths

RUNS_SQL = """
    SELECT r.run_id, strftime(min(r.run_at), '%Y-%m-%d %H:%M:%S') AS run_at, any_value(r.seed) AS seed,
           count(*) AS models,
           max(CASE WHEN r.selected THEN r.model_name END) AS selected_model,
           max(CASE WHEN r.selected THEN r.cv_mae END) AS cv_mae,
           max(CASE WHEN r.selected THEN r.cv_rmse END) AS cv_rmse,
           max(CASE WHEN r.selected THEN r.cv_r2 END) AS cv_r2,
           max(CASE WHEN r.selected THEN r.interval_coverage END) AS coverage_90,
           max(CASE WHEN r.selected THEN r.n_train END) AS n_train
    FROM ml.model_runs r
    GROUP BY r.run_id
"""


def _rows(con: duckdb.DuckDBPyConnection, limit: int) -> list[tuple]:
    if not table_exists(con, "ml", "model_runs"):
        return []
    rescored = ("(SELECT run_id, count(DISTINCT rescored_at) AS n, max(rescored_at) AS last "
                "FROM ml.rescored_predictions GROUP BY run_id)" if table_exists(con, "ml", "rescored_predictions")
                else "(SELECT NULL::VARCHAR AS run_id, 0 AS n, NULL::TIMESTAMP AS last WHERE false)")
    return con.execute(f"""
        SELECT r.*, coalesce(s.n, 0) AS rescorings, strftime(s.last, '%Y-%m-%d %H:%M:%S') AS last_rescored
        FROM ({RUNS_SQL}) r LEFT JOIN {rescored} s USING (run_id)
        ORDER BY r.run_at DESC, r.run_id DESC LIMIT ?""", [limit]).fetchall()


def list_runs(limit: int = 20) -> str:
    """The latest ``limit`` runs as a text table. Reads the warehouse read-only; while a writer holds it (a run in
    progress), the serving copy instead, and says so. On the lake, the lake's latest snapshot, read-only (as the
    catalog's read-only role: it never waits for a writer)."""
    p = paths()
    source: object = p.db
    con: duckdb.DuckDBPyConnection | None = None
    if current().storage == "lake":
        from brecha.core.db import connect_lake
        from brecha.core.lake import redact

        source = f"the lake {redact(current().lake or '')} (its latest snapshot)"
        con = connect_lake(read_only=True)
    else:
        try:
            con = duckdb.connect(str(p.db), read_only=True) if p.db.exists() else None
        except duckdb.IOException:
            con = None
    if con is None:
        if not p.serving_db.exists():
            raise BrechaError(f"no warehouse at {p.db} and no serving copy: run `brecha run` (or `brecha train`) first")
        source = p.serving_db
        con = duckdb.connect(str(p.serving_db), read_only=True)
    from brecha_ml.seeds import format_table, latest

    with con:
        rows = _rows(con, limit)
        by_seed = latest(con)
    if not rows:
        return f"no model runs in {source} (ml.model_runs): `brecha train` records one"
    head = ("run id", "run at (UTC)", "seed", "models", "selected", "CV MAE", "CV RMSE", "CV R²", "90 % coverage",
            "n train", "rescored", "last rescored")
    cells = [head] + [(r[0], r[1], str(r[2]), str(r[3]), r[4] or "-", *(_num(v) for v in r[5:9]), str(r[9]),
                       str(r[10]), r[11] or "-") for r in rows]
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.append(f"{len(rows)} run(s) from {source}; per model and fold: ml.model_runs, ml.model_fold_metrics; "
                 "rescore one with `brecha predict --run RUN_ID` (rows go to ml.rescored_predictions)")
    # one run is one seed: the figures that hold are the mean ± SD over seeds of the latest run's data
    lines += ["", format_table(by_seed) if len(by_seed) and by_seed["seed"].nunique() > 1 else
              f"one seed so far for the latest run's data ({by_seed['seed'].nunique() if len(by_seed) else 0} in "
              "ml.seed_metrics): `brecha seeds` repeats the spatial CV over 5 seeds and this shows mean ± SD"]
    return "\n".join(lines)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"
