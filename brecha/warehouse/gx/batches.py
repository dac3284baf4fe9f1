"""What each suite checks: a DataFrame read from the warehouse (read-only) and the run-time suite parameters.

* ``landed`` suites check the rows of ``raw.<entity>`` that the latest successful batch landed (the rows the
  dbt staging models read) as a whole: volumes and distributions, compared with the previous batch. Each row
  was judged at landing already (brecha/landing/checks.py). Parameters: ``previous_rows`` and
  ``previous_mean__<column>`` (rows, and a column's mean, of the same entity in the previous successful batch
  from the same input folder; none on a first load) and ``reference_districts`` (rows of the district
  reference in the latest batch).
* ``marts`` suites check the whole mart table (distributions the dbt tests cannot state). No parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd

from brecha.core.errors import BrechaError
from brecha.core.layouts import LATEST_OK_BATCH, LINEAGE_COLUMNS
from brecha.warehouse.gates import latest_ok_batch_row
from brecha.warehouse.gx.suites import Suite

PREVIOUS_MEAN = "previous_mean__"  # suite parameter prefix: the column's mean in the previous batch


@dataclass
class Batch:
    suite: Suite
    frame: pd.DataFrame | None  # None: nothing to check (entity not in the latest batch)
    parameters: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {f"{s}.{t}" for s, t in con.execute(
        "select table_schema, table_name from information_schema.tables").fetchall()}


def latest_batch(con: duckdb.DuckDBPyConnection) -> tuple[int, str]:
    """(batch_id, input_dir) of the latest successful landing batch (``gates.latest_ok_batch_row``)."""
    row = latest_ok_batch_row(con)
    if row is None:
        raise BrechaError(f"no successful landing batch in this warehouse ({LATEST_OK_BATCH} is empty or missing): "
                          "run `brecha ingest DIR` and fix its errors first (a warehouse landed by an older brecha "
                          "gets the view from its next ingest)")
    return row


def _batch_rows(con: duckdb.DuckDBPyConnection, entity: str, batch_id: int, select: str = "count(*)") -> str:
    return (f"select {select} from raw.{entity} where _source_sha256 in "
            f"(select sha256 from raw._batch_files where batch_id = {batch_id} and entity = '{entity}')")


def _previous(con: duckdb.DuckDBPyConnection, suite: Suite, batch_id: int, input_dir: str) -> dict[str, Any]:
    """``previous_rows`` and each ``previous_mean__<column>`` the suite refers to, from the entity's rows in the
    previous successful batch from the same input folder (all None on a first load)."""
    entity = suite.table
    means = sorted({n for e in suite.expectations for n in suite.parameters(e) if n.startswith(PREVIOUS_MEAN)})
    out: dict[str, Any] = dict.fromkeys(["previous_rows", *means])
    prev = con.execute(
        "select max(b.batch_id) from raw._batches b join raw._batch_files f using (batch_id) "
        "where b.status = 'ok' and b.batch_id < ? and b.input_dir = ? and f.entity = ?",
        [batch_id, input_dir, entity]).fetchone()[0]
    if prev is None:
        return out
    aggregates = ["count(*)", *(f'avg("{n.removeprefix(PREVIOUS_MEAN)}")' for n in means)]
    row = con.execute(_batch_rows(con, entity, int(prev), ", ".join(aggregates))).fetchone()
    if row[0]:
        out.update(zip(out, row, strict=True))
    return out


def landed(con: duckdb.DuckDBPyConnection, suites: list[Suite]) -> list[Batch]:
    batch_id, input_dir = latest_batch(con)
    have = _tables(con)
    reference = None
    if "raw.inei__districts" in have:
        reference = con.execute(_batch_rows(con, "inei__districts", batch_id)).fetchone()[0] or None
    out = []
    for suite in suites:
        entity = suite.table
        if suite.asset not in have:
            out.append(Batch(suite, None, note=f"{suite.asset} does not exist"))
            continue
        frame = con.execute(_batch_rows(con, entity, batch_id,
                                        _select(suite, "* exclude (" + ", ".join(LINEAGE_COLUMNS) + ")"))).df()
        if frame.empty:
            out.append(Batch(suite, None, note=f"no file of the latest batch ({batch_id}) landed rows in {suite.asset}"))
            continue
        out.append(Batch(suite, frame, {**_previous(con, suite, batch_id, input_dir), "reference_districts": reference}))
    return out


def marts(con: duckdb.DuckDBPyConnection, suites: list[Suite]) -> list[Batch]:
    have = _tables(con)
    missing = [s.asset for s in suites if s.asset not in have]
    if missing:
        raise BrechaError(f"marts gate: table(s) {', '.join(missing)} missing from the warehouse: run `brecha build` first")
    return [Batch(s, con.execute(f"select {_select(s, '*')} from {s.asset}").df()) for s in suites]


def _select(suite: Suite, every: str) -> str:
    """The select list of a suite's batch: only the columns its expectations read (the suites hold volume and
    distribution checks, so a row-count-only suite needs one constant column, not the rows' values)."""
    columns = suite.columns()
    if columns is None:
        return every
    return ", ".join(f'"{c}"' for c in columns) if columns else "true as _row"
