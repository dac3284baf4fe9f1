"""Cast and check every row of one file in one SQL pass; land the good rows, reject the others with the reason.

A row is rejected for the first problem found, in this order: a missing key or required value, a value that
does not cast to its type (``TRY_CAST`` failed on a non-null value; ``NA``, empty and ``-`` are nulls), a
value out of its range (negative count, flag not 0/1, share outside 0-100, non-positive weight), a ubigeo
that is not a district of the reference, and finally a duplicate key within the file (the first occurrence
is kept). The reject keeps the column, the value and the whole source record as JSON; the record is not
carried through the checks but read again from the file for the rejected rows alone (most files have none).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from brecha.landing.sql import ident, lit, null_list, value, values
from brecha.layouts import LINEAGE_COLUMNS, Column, Layout

REF_TABLE = "_ref_ubigeo"  # temp table of the district ubigeos the batch checks against
INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")
PROBLEM_TYPE = "STRUCT(column_name VARCHAR, value_text VARCHAR, reason VARCHAR)"


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
    """``CREATE TEMP TABLE _checked``: ``__row``, the typed columns and ``__problem`` (NULL = good row so far;
    duplicates are marked afterwards by ``mark_duplicates``). The source record is not carried along: only
    rejected rows need it, and ``land_checked`` reads it for them alone."""
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
        if checks else f"NULL::{PROBLEM_TYPE}"
    return (
        f"CREATE OR REPLACE TEMP TABLE _checked AS "
        f"WITH s AS ({select_sql}), "
        f"n AS (SELECT s.__row, {texts} FROM s), "
        f"t AS (SELECT n.*, {typed} FROM n) "
        f"SELECT t.__row, {', '.join('t.' + ident(c.name) for c in layout.columns)}, {problem} AS __problem "
        f"FROM t {' '.join(joins)}"
    )


def mark_duplicates(con: duckdb.DuckDBPyConnection, layout: Layout) -> None:
    """Reject a good row of ``_checked`` whose key an earlier good row of the file already has (the first
    occurrence is kept). Only rows whose key hash is seen more than once are ranked by their exact key, so a
    file without duplicates costs one aggregate over a hash."""
    keys = [ident(c.name) for c in layout.columns if c.key]
    if not keys:
        return
    partition = ", ".join(keys)
    key_text = "concat_ws('|', " + ", ".join(f"CAST({k} AS VARCHAR)" for k in keys) + ")"
    duplicate = _problem(",".join(c.name for c in layout.columns if c.key), key_text, "duplicate key")
    con.execute(
        f"UPDATE _checked SET __problem = {duplicate} WHERE rowid IN (SELECT rowid FROM ("
        f"SELECT rowid, row_number() OVER (PARTITION BY {partition} ORDER BY __row, rowid) AS n FROM _checked "
        f"WHERE __problem IS NULL AND hash({partition}) IN (SELECT hash({partition}) FROM _checked "
        "WHERE __problem IS NULL GROUP BY 1 HAVING count(*) > 1)) WHERE n > 1)")


def land_checked(con: duckdb.DuckDBPyConnection, layout: Layout, select_sql: str, source_file: str, sha256: str,
                 loaded_at: datetime) -> Landed:
    """Insert the good rows of ``_checked`` into the raw table and the others into ``raw._rejects``, each with
    its whole source record as JSON (read again from ``select_sql``, for the rejected rows only)."""
    names = ", ".join(ident(c.name) for c in layout.columns)
    order = ["__row", *(ident(c.name) for c in layout.columns if c.key)]
    lineage = ", ".join(ident(n) for n in LINEAGE_COLUMNS)
    lineage_values = values(source_file, sha256, loaded_at)
    con.execute(
        f"INSERT INTO {layout.table} ({lineage}, {names}) SELECT {lineage_values}, __row, {names} "
        f"FROM _checked WHERE __problem IS NULL ORDER BY {', '.join(order)}")
    landed, rejected = con.execute(
        "SELECT count(*) FILTER (WHERE __problem IS NULL), count(*) FILTER (WHERE __problem IS NOT NULL) "
        "FROM _checked").fetchone()
    if rejected:
        records = (f"SELECT __row, any_value(CAST(to_json(__rec) AS JSON)) AS __rec FROM ({select_sql}) "
                   "WHERE __row IN (SELECT __row FROM _checked WHERE __problem IS NOT NULL) GROUP BY __row")
        con.execute(
            f"INSERT INTO raw._rejects SELECT {lineage_values}, c.__row, {value(layout.entity)}, c.__problem.column_name, "
            f"c.__problem.value_text, c.__problem.reason, r.__rec FROM _checked c LEFT JOIN ({records}) r "
            f"USING (__row) WHERE c.__problem IS NOT NULL ORDER BY {', '.join('c.' + k for k in order)}")
    con.execute("DROP TABLE _checked")
    return Landed(landed, rejected)
