"""Which gates and builds each landing batch passed: ``ops.batch_gates``, written by the steps, read by publish.

A serving copy may only be built from a batch that passed, in this order, the landed-extracts gate
(``landed``), the dbt build of the core marts (``dbt_core``), the marts gate (``marts``) and the dbt build
of the prediction marts (``dbt_predictions``). Each step records its outcome for the latest successful
batch when it ends, passed or failed: ``brecha validate`` and ``brecha build`` (so ``brecha run`` too), and in
the Airflow DAG the same step functions, plus one task after each Cosmos dbt group (the group's tasks run
dbt directly; the task after it runs only when every one of them succeeded, and records that).
The latest outcome of a gate for a batch is the one that counts: a later failure undoes an earlier pass.
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

from brecha.core.db import table_exists
from brecha.core.layouts import LATEST_OK_BATCH
from brecha.warehouse.selectors import CLUSTER_MARTS, PREDICTION_MARTS

REQUIRED = ("landed", "dbt_core", "marts", "dbt_predictions")

DDL = (
    "CREATE SCHEMA IF NOT EXISTS ops",
    """CREATE TABLE IF NOT EXISTS ops.batch_gates (
        batch_id INTEGER NOT NULL,        -- raw._batches.batch_id the gate checked (latest successful batch)
        gate VARCHAR NOT NULL,            -- 'landed' | 'dbt_core' | 'marts' | 'dbt_predictions'
        passed BOOLEAN NOT NULL,
        checked_at TIMESTAMP NOT NULL,    -- UTC
        detail VARCHAR                    -- summary of the outcome, or the failure
    )""",
    """CREATE TABLE IF NOT EXISTS ops.publish_checks (
        snapshot_id VARCHAR NOT NULL,     -- the snapshot published (ops.snapshots.snapshot_id)
        batch_id INTEGER NOT NULL,        -- the batch it serves
        gate VARCHAR NOT NULL,
        passed BOOLEAN NOT NULL,          -- the gate's latest outcome for that batch, as publish saw it
        checked_at TIMESTAMP NOT NULL     -- when that gate ran
    )""",
)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def dbt_gates(select: str | None, exclude: str | None) -> tuple[str, ...]:
    """The gates a ``dbt build`` with these selectors stands for (none for another partial selection)."""
    if not select and not exclude:
        return "dbt_core", "dbt_predictions"
    if not select and exclude in (PREDICTION_MARTS, f"{PREDICTION_MARTS}+"):
        return ("dbt_core",)
    if select == PREDICTION_MARTS and exclude in (None, "", CLUSTER_MARTS):
        return ("dbt_predictions",)
    return ()


def latest_ok_batch_row(con: duckdb.DuckDBPyConnection) -> tuple[int, str] | None:
    """(batch_id, input_dir) of the latest successful landing batch (view ``raw._latest_ok_batch``); None when
    nothing landed yet (no view)."""
    has = con.execute("SELECT count(*) FROM duckdb_views() WHERE database_name = current_database() "
                      "AND schema_name = 'raw' AND view_name = '_latest_ok_batch'").fetchone()[0]
    if not has:
        return None
    row = con.execute(f"SELECT batch_id, input_dir FROM {LATEST_OK_BATCH}").fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def latest_ok_batch(con: duckdb.DuckDBPyConnection) -> int | None:
    """The latest successful landing batch's id; None when nothing landed yet."""
    row = latest_ok_batch_row(con)
    return None if row is None else row[0]


def record(gates: tuple[str, ...] | str, passed: bool, detail: str = "",
           con: duckdb.DuckDBPyConnection | None = None) -> int | None:
    """Record the outcome of ``gates`` for the latest successful batch; return its id (None: nothing landed)."""
    from brecha.core.db import session

    names = (gates,) if isinstance(gates, str) else gates
    if not names:
        return None
    if con is None:
        with session() as own:
            return record(names, passed, detail, own)
    batch_id = latest_ok_batch(con)
    if batch_id is None:
        return None
    for ddl in DDL:
        con.execute(ddl)
    now = _now()
    for gate in names:
        con.execute("INSERT INTO ops.batch_gates VALUES (?, ?, ?, ?, ?)", [batch_id, gate, passed, now, detail[:2000]])
    return batch_id


def outcomes(con: duckdb.DuckDBPyConnection, batch_id: int, catalog: str | None = None) -> dict[str, tuple[bool, datetime, str]]:
    """``{gate: (passed, checked_at, detail)}``: the latest outcome of each gate recorded for ``batch_id``."""
    db = f'"{catalog}".' if catalog else ""
    if not table_exists(con, "ops", "batch_gates", catalog):
        return {}
    rows = con.execute(
        f"SELECT gate, passed, checked_at, detail FROM {db}ops.batch_gates WHERE batch_id = ? "
        "QUALIFY row_number() OVER (PARTITION BY gate ORDER BY checked_at DESC, passed) = 1", [batch_id]).fetchall()
    return {g: (bool(p), t, d or "") for g, p, t, d in rows}
