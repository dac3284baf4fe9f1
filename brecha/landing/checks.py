"""Cast and check every row of one file in one SQL pass; land the good rows, reject the others with the reason.

A row is rejected for the first problem found, in this order: a missing key or required value, a value that
does not cast to its type (``TRY_CAST`` failed on a non-null value; ``NA``, empty and ``-`` are nulls), a
value out of its range (negative count, flag not 0/1, share outside 0-100, non-positive weight), a ubigeo
that is not a district of the reference, and finally a duplicate key within the file (the first occurrence
is kept). The reject keeps the column, the value and the whole source record as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from brecha.landing.sql import ident, lit, null_list
from brecha.layouts import LINEAGE_COLUMNS, Column, Layout

REF_TABLE = "_ref_ubigeo"  # temp table of the district ubigeos the batch checks against
INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")


@dataclass(frozen=True)
class Landed:
    rows_landed: int
    rows_rejected: int


def _problem(column: str, value_sql: str, reason: str) -> str:
    return f"{{'column_name': {lit(column)}, 'value_text': CAST({value_sql} AS VARCHAR), 'reason': {lit(reason)}}}"


def _checks(col: Column, typed: str, text: str, raw: str, ref: str | None) -> list[tuple[int, str, str]]:
    """(order, condition, problem struct) for one column; the problem reports the value as found (``raw``)."""
    out: list[tuple[int, str, str]] = []
    if col.key or col.not_null:
        out.append((0, f"{text} IS NULL", _problem(col.name, raw, "missing key" if col.key else "missing value")))
    if col.type != "VARCHAR":
        out.append((1, f"{text} IS NOT NULL AND {typed} IS NULL", _problem(col.name, raw, f"unparseable {col.type}")))
    if col.non_negative:
        reason = "negative count" if col.type in INTEGER_TYPES else "negative value"
        out.append((2, f"{typed} < 0", _problem(col.name, raw, reason)))
    if col.flag:
        out.append((2, f"{typed} NOT IN (0, 1)", _problem(col.name, raw, "flag not 0/1")))
    if col.share:
        out.append((2, f"{typed} NOT BETWEEN 0 AND 100", _problem(col.name, raw, "share outside 0-100")))
    if col.positive:
        out.append((2, f"{typed} <= 0", _problem(col.name, raw, "non-positive value")))
    if col.ubigeo and ref:
        out.append((3, f"{typed} IS NOT NULL AND {ref}.ubigeo IS NULL", _problem(col.name, raw, "unknown ubigeo")))
    return out


def _text(col: Column, source: str) -> str:
    """The source text, NULL when it means "no value". JSON columns come from JSON readers already parsed."""
    if col.type == "JSON":
        return source
    return f"CASE WHEN trim({source}) IN {null_list()} THEN NULL ELSE {source} END"


def _typed(col: Column, text: str) -> str:
    return text if col.type in ("VARCHAR", "JSON") else f"TRY_CAST({text} AS {col.type})"


def check_sql(layout: Layout, select_sql: str, with_reference: bool) -> str:
    """``CREATE TEMP TABLE _checked``: typed columns, the source record and ``__problem`` (NULL = good row)."""
    texts = ", ".join(f"{_text(c, 's.' + ident(c.name))} AS {ident(c.name + '__t')}, "
                      f"s.{ident(c.name)} AS {ident(c.name + '__raw')}" for c in layout.columns)
    typed = ", ".join(f"{_typed(c, ident(c.name + '__t'))} AS {ident(c.name)}" for c in layout.columns)
    joins, checks = [], []
    for c in layout.columns:
        ref = None
        if c.ubigeo and with_reference:
            ref = ident(f"r_{c.name}")
            padded = f"lpad(CAST(t.{ident(c.name)} AS VARCHAR), {c.ubigeo}, '0')[1:6]"
            joins.append(f"LEFT JOIN {REF_TABLE} {ref} ON {ref}.ubigeo = {padded}")
        checks += _checks(c, f"t.{ident(c.name)}", f"t.{ident(c.name + '__t')}", f"t.{ident(c.name + '__raw')}", ref)
    checks.sort(key=lambda x: x[0])  # stable: missing, unparseable, range, ubigeo; columns in layout order
    problem = "coalesce(" + ", ".join(f"CASE WHEN {cond} THEN {p} END" for _, cond, p in checks) + ")" \
        if checks else "NULL"
    keys = [c for c in layout.columns if c.key]
    names = ", ".join(ident(c.name) for c in layout.columns)
    if keys:
        partition = ", ".join(ident(c.name) for c in keys)
        key_text = "concat_ws('|', " + ", ".join(f"CAST({ident(c.name)} AS VARCHAR)" for c in keys) + ")"
        duplicate = _problem(",".join(c.name for c in keys), key_text, "duplicate key")
        final = (f"CASE WHEN __p IS NULL AND row_number() OVER (PARTITION BY {partition}, __p IS NULL "
                 f"ORDER BY __row) > 1 THEN {duplicate} ELSE __p END")
    else:
        final = "__p"
    return (
        f"CREATE OR REPLACE TEMP TABLE _checked AS "
        f"WITH s AS ({select_sql}), "
        f"n AS (SELECT s.__row, s.__rec, {texts} FROM s), "
        f"t AS (SELECT n.*, {typed} FROM n), "
        f"p AS (SELECT t.__row, t.__rec, {', '.join('t.' + ident(c.name) for c in layout.columns)}, "
        f"{problem} AS __p FROM t {' '.join(joins)}) "
        f"SELECT __row, CASE WHEN __problem IS NOT NULL THEN CAST(to_json(__rec) AS JSON) END AS __rec, "
        f"{names}, __problem FROM (SELECT __row, __rec, {names}, {final} AS __problem FROM p)"
    )


def land_checked(con: duckdb.DuckDBPyConnection, layout: Layout, source_file: str, sha256: str,
                 loaded_at: datetime) -> Landed:
    """Insert the good rows of ``_checked`` into the raw table and the others into ``raw._rejects``."""
    names = ", ".join(ident(c.name) for c in layout.columns)
    order = ", ".join(["__row", *(ident(c.name) for c in layout.columns if c.key)])
    lineage = ", ".join(ident(n) for n in LINEAGE_COLUMNS)
    params = [source_file, sha256, loaded_at]
    con.execute(
        f"INSERT INTO {layout.table} ({lineage}, {names}) SELECT $1, $2, $3, __row, {names} "
        f"FROM _checked WHERE __problem IS NULL ORDER BY {order}", params)
    con.execute(
        "INSERT INTO raw._rejects SELECT $1, $2, $3, __row, $4, __problem.column_name, __problem.value_text, "
        f"__problem.reason, __rec FROM _checked WHERE __problem IS NOT NULL ORDER BY {order}",
        [*params, layout.entity])
    landed, rejected = con.execute(
        "SELECT count(*) FILTER (WHERE __problem IS NULL), count(*) FILTER (WHERE __problem IS NOT NULL) "
        "FROM _checked").fetchone()
    con.execute("DROP TABLE _checked")
    return Landed(landed, rejected)
