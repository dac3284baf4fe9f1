"""Keep every expectation outcome in the warehouse table ``ops.validation_results`` (for the data-quality dashboard)."""

from __future__ import annotations

import json

from brecha.core.db import session
from brecha.warehouse.gx.runner import Check

DDL = (
    "CREATE SCHEMA IF NOT EXISTS ops",
    """CREATE TABLE IF NOT EXISTS ops.validation_results (
        validated_at TIMESTAMP NOT NULL,   -- UTC, one value per `brecha validate` call
        run_id VARCHAR NOT NULL,           -- e.g. 'validate-20240101T120000-landed'
        gate VARCHAR NOT NULL,             -- 'landed' | 'marts'
        suite VARCHAR NOT NULL,            -- e.g. 'landed.inei__census_indicators' (expectations/landed/<table>.json)
        asset VARCHAR NOT NULL,            -- the table checked, e.g. 'raw.inei__census_indicators'
        expectation VARCHAR NOT NULL,      -- GX expectation type
        column_name VARCHAR,               -- null for table-level expectations
        kwargs JSON,                       -- the expectation's arguments, parameters resolved
        success BOOLEAN,                   -- null: left out on this run (e.g. no previous load to compare with)
        observed_value VARCHAR,            -- GX observed value, or 'n of m rows unexpected, e.g. [...]'
        unexpected_count BIGINT,
        element_count BIGINT,
        unexpected_sample JSON,            -- offending values (up to 10), for expectations on values
        why VARCHAR                        -- the expectation's meta.why from the suite file
    )""",
)


def record(checks: list[Check]) -> int:
    """Append the checks to ``ops.validation_results``; return how many rows were written."""
    rows = [
        (c.validated_at, c.run_id, c.gate, c.suite, c.asset, c.expectation, c.column,
         json.dumps(c.kwargs, default=str), c.success, c.observed, c.unexpected_count, c.element_count,
         json.dumps(c.sample, default=str), c.why)
        for c in checks
    ]
    with session() as con:
        for stmt in DDL:
            con.execute(stmt)
        if rows:
            con.executemany("INSERT INTO ops.validation_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return len(rows)
