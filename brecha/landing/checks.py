"""Cast and check every row of one file in one SQL pass; land the good rows, reject the others with the reason.

A row is rejected for the first problem found, in this order: a missing key or required value, a value that
does not cast to its type (``TRY_CAST`` failed on a non-null value; ``NA``, empty and ``-`` are nulls), a
value out of its range (negative count, flag not 0/1, share outside 0-100, non-positive weight, a year, month
or centroid outside ``Column.between``), a ubigeo
that is not a district of the reference, and finally a duplicate key within the file (the first occurrence
is kept). The reject keeps the column, the value and the whole source record as JSON; the record is not
carried through the checks but read again from the file for the rejected rows alone (most files have none).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from datetime import datetime

import duckdb

from brecha.core.layouts import LINEAGE_COLUMNS, NULL_STRINGS, Column, Layout
from brecha.landing.sql import ident, is_null_text, lit, value, values

REF_TABLE = "_ref_ubigeo"  # temp table of the district ubigeos the batch checks against
INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")
PROBLEM_TYPE = "STRUCT(column_name VARCHAR, value_text VARCHAR, reason VARCHAR)"
CHECKED = "_checked"  # temp table of one file's checked rows (a file checked ahead: a table of its own database)


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
    if col.between:
        lo, hi = col.between
        out.append((2, f"{typed} NOT BETWEEN {lo} AND {hi}", _problem(col.name, raw, f"outside {lo:g}..{hi:g}")))
    if col.ubigeo and not col.pad:  # a number whose first digits are the district: at most `ubigeo` digits
        out.append((1, f"{typed} IS NOT NULL AND NOT regexp_full_match(CAST({typed} AS VARCHAR), '[0-9]{{1,{col.ubigeo}}}')",
                    _problem(col.name, raw, f"malformed code (expected up to {col.ubigeo} digits)")))
    if col.pad:
        out.append((1, f"{text} IS NOT NULL AND NOT regexp_full_match({text}, '[0-9]{{{col.pad}}}')",
                    _problem(col.name, raw, f"malformed code (expected {col.pad} digits)")))
    if col.geometry:
        out.append((2, f"{typed} IS NOT NULL AND NOT {geometry_ok(typed)}", _problem(col.name, raw, "invalid geometry")))
    if col.ubigeo and ref:
        out.append((3, f"{typed} IS NOT NULL AND {ref}.ubigeo IS NULL", _problem(col.name, raw, "unknown ubigeo")))
    return out


# Byte ranges (strings compare byte-wise) of texts that cannot be one of the null texts, whatever their spaces:
# ``trim`` removes only ' ' and the other Unicode spaces (category Zs, whose UTF-8 starts with 0xC2 or above), and
# every null text is empty or starts with '-', 'N.', 'NA' or 'S.'. A text starting with anything else below
# 0x80 but a space trims to a text starting the same way. Nearly every value (numbers, codes, names) falls in a
# range, and a few comparisons of short strings cost a fraction of trimming it and comparing it with every null
# text (which costs most of the check of a CSV of names without this test first; `make bench` measures it).
_PLAIN_RANGES = (("!", "-"), (".", "N."), ("N/", "NA"), ("NB", "S."), ("S/", "\u0080"))
assert not any(lo.encode() <= s.encode() < hi.encode() for s in NULL_STRINGS for lo, hi in _PLAIN_RANGES), \
    "a null text falls in _PLAIN_RANGES: narrow them"


def _plain(source: str) -> str:
    """SQL: ``source`` is not NULL and certainly no null text (``_PLAIN_RANGES``)."""
    return "(" + " OR ".join(f"({source} >= {lit(lo)} AND {source} < {lit(hi)})" for lo, hi in _PLAIN_RANGES) + ")"


def text_sql(col: Column, source: str) -> str:
    """The source text, NULL when it means "no value". JSON columns come from JSON readers already parsed.
    A code (``Column.pad``) is normalised here, once: trimmed and, when all digits, left-padded to its width.
    The first branch (``_plain``) only saves the trim for the common case: the result is the same without it."""
    if col.type == "JSON":
        return source
    if col.pad:
        trimmed = f"trim({source})"
        digits = f"'[0-9]{{1,{col.pad}}}'"
        return (f"CASE WHEN {_plain(source)} AND regexp_full_match({source}, {digits}) THEN lpad({source}, {col.pad}, '0') "
                f"WHEN {is_null_text(trimmed)} THEN NULL "
                f"WHEN regexp_full_match({trimmed}, {digits}) THEN lpad({trimmed}, {col.pad}, '0') "
                f"ELSE {source} END")
    return f"CASE WHEN {_plain(source)} THEN {source} WHEN {is_null_text(f'trim({source})')} THEN NULL ELSE {source} END"


def _typed(col: Column, text: str) -> str:
    """The typed value, NULL when the text does not parse. Whole numbers must be written as such: DuckDB's own
    cast rounds '1.5' to 2 and reads '1.234' (a thousands point) as 1, so an integer column takes digits only,
    with comma thousands separators ('1,234,567', as OSIPTEL's tables print counts) or a '.0' a spreadsheet
    added; anything else is unparseable."""
    if col.type in ("VARCHAR", "JSON"):
        return text
    if col.type in INTEGER_TYPES:
        t = f"trim({text})"
        # plain digits (nearly every value) take the first branch: one cheap match, no trim
        return (f"CASE WHEN regexp_full_match({text}, '[0-9]+') THEN TRY_CAST({text} AS {col.type}) "
                f"WHEN regexp_full_match({t}, '[+-]?[0-9]+(\\.0)?') "
                f"THEN TRY_CAST(regexp_replace({t}, '\\.0$', '') AS {col.type}) "
                f"WHEN regexp_full_match({t}, '[+-]?[0-9]{{1,3}}(,[0-9]{{3}})+') "
                f"THEN TRY_CAST(replace({t}, ',', '') AS {col.type}) END")
    return f"TRY_CAST({text} AS {col.type})"


NUMERIC = "('DOUBLE', 'BIGINT', 'UBIGINT')"


def _position_ok(p: str) -> str:
    return (f"(json_type({p}) = 'ARRAY' AND json_array_length({p}) BETWEEN 2 AND 4 "
            f"AND json_type({p}, '$[0]') IN {NUMERIC} AND json_type({p}, '$[1]') IN {NUMERIC})")


def _ring_ok(r: str) -> str:
    return (f"(json_type({r}) = 'ARRAY' AND json_array_length({r}) >= 4 AND "
            f"list_bool_and(list_transform(json_extract({r}, '$[*]'), p -> {_position_ok('p')})) AND "
            f"json_extract({r}, '$[0]') = json_extract({r}, '$[#-1]'))")


def _polygon_ok(x: str) -> str:
    return (f"(json_type({x}) = 'ARRAY' AND json_array_length({x}) >= 1 AND "
            f"list_bool_and(list_transform(json_extract({x}, '$[*]'), r -> {_ring_ok('r')})))")


def geometry_ok(g: str) -> str:
    """SQL: ``g`` (JSON) is a well-formed GeoJSON Polygon, MultiPolygon or Point: every ring closed, with at
    least four positions of two to four numbers. (Whether rings self-intersect is not judged: that needs a
    geometry library, and simplified boundaries often do.)"""
    c = f"json_extract({g}, '$.coordinates')"
    return (f"coalesce(CASE json_extract_string({g}, '$.type') "
            f"WHEN 'Polygon' THEN {_polygon_ok(c)} "
            f"WHEN 'MultiPolygon' THEN json_type({c}) = 'ARRAY' AND json_array_length({c}) >= 1 AND "
            f"list_bool_and(list_transform(json_extract({c}, '$[*]'), q -> {_polygon_ok('q')})) "
            f"WHEN 'Point' THEN {_position_ok(c)} ELSE false END, false)")


def check_sql(layout: Layout, select_sql: str, with_reference: bool, table: str = CHECKED) -> str:
    """``CREATE TEMP TABLE _checked`` (or ``table``, e.g. in an attached database): ``__row``, the typed columns
    and ``__problem`` (NULL = good row so far; duplicates are marked afterwards by ``mark_duplicates``). The
    source record is not carried along: only rejected rows need it, and ``land_checked`` reads it for them alone."""
    texts = ", ".join(f"{text_sql(c, 's.' + ident(c.name))} AS {ident(c.name + '__t')}, "
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
        f"CREATE OR REPLACE {'TEMP ' if table == CHECKED else ''}TABLE {table} AS "
        f"WITH s AS ({select_sql}), "
        f"n AS (SELECT s.__row, {texts} FROM s), "
        f"t AS (SELECT n.*, {typed} FROM n) "
        f"SELECT t.__row, {', '.join('t.' + ident(c.name) for c in layout.columns)}, {problem} AS __problem "
        f"FROM t {' '.join(joins)}"
    )


def mark_duplicates(con: duckdb.DuckDBPyConnection, layout: Layout, table: str = CHECKED) -> None:
    """Reject a good row of ``_checked`` whose key an earlier good row of the file already has (the first
    occurrence is kept). Only rows whose key hash is seen more than once are ranked by their exact key, so a
    file without duplicates costs one aggregate over a hash."""
    keys = [ident(c.name) for c in layout.columns if c.key]
    if not keys:
        return
    partition = ", ".join(keys)
    key_text = "concat_ws('|', " + ", ".join(f"CAST({k} AS VARCHAR)" for k in keys) + ")"
    duplicate = _problem(",".join(c.name for c in layout.columns if c.key), key_text, "duplicate key")
    repeated = f"SELECT hash({partition}) FROM {table} WHERE __problem IS NULL GROUP BY 1 HAVING count(*) > 1"
    if not con.execute(f"SELECT count(*) FROM ({repeated})").fetchone()[0]:
        return  # no key hash seen twice (equal keys have equal hashes): no duplicate, no second scan
    con.execute(
        f"UPDATE {table} SET __problem = {duplicate} WHERE rowid IN (SELECT rowid FROM ("
        f"SELECT rowid, row_number() OVER (PARTITION BY {partition} ORDER BY __row, rowid) AS n FROM {table} "
        f"WHERE __problem IS NULL AND hash({partition}) IN ({repeated})) WHERE n > 1)")


MAX_REJECT_SHARE = 0.5  # a file that would lose more than this share of its rows (cells, for wide tables) ...
MIN_ROWS_FOR_SHARE = 8  # ... out of at least this many is a whole-file problem, not a row problem


@dataclass(frozen=True)
class Verdict:
    total: int
    rejected: int
    column: str | None
    reason: str | None
    example: str | None
    row: int | None
    count: int

    @property
    def whole_file(self) -> bool:
        return self.total >= MIN_ROWS_FOR_SHARE and self.rejected > MAX_REJECT_SHARE * self.total


def verdict(con: duckdb.DuckDBPyConnection, table: str = CHECKED) -> Verdict:
    """How many rows of ``table`` would be rejected, and the commonest problem (column, reason, an example)."""
    total, rejected = con.execute(
        f"SELECT count(*), count(__problem) FROM {table}").fetchone()
    top = con.execute(
        "SELECT __problem.column_name, __problem.reason, any_value(__problem.value_text ORDER BY __row), min(__row), "
        f"count(*) FROM {table} WHERE __problem IS NOT NULL GROUP BY 1, 2 ORDER BY 5 DESC, 1, 2 LIMIT 1").fetchone()
    return Verdict(total, rejected, *(top or (None, None, None, None, 0)))


@dataclass(frozen=True)
class Tally:
    in_order: bool  # the table's rows are in file order already
    landed: int
    rejected: int


def tally(con: duckdb.DuckDBPyConnection, table: str = CHECKED) -> Tally:
    """Whether ``table`` is in file order, and its good and rejected rows. Rows land in file order. ``_checked``
    usually is in that order already (its query joins the reference, and a join does not promise to keep order,
    so it is checked): then no sort, which costs a third of the insert. A scan of one table, filtered or under
    ``OVER ()``, keeps the table's order (DuckDB's preserve_insertion_order, on by default)."""
    in_order = con.execute(f"SELECT count(*) FROM (SELECT __row - lag(__row) OVER () AS step FROM {table}) "
                           "WHERE step <= 0").fetchone()[0] == 0
    landed, rejected = con.execute(
        "SELECT count(*) FILTER (WHERE __problem IS NULL), count(*) FILTER (WHERE __problem IS NOT NULL) "
        f"FROM {table}").fetchone()
    return Tally(in_order, landed, rejected)


def land_checked(con: duckdb.DuckDBPyConnection, layout: Layout, select_sql: str, source_file: str, sha256: str,
                 loaded_at: datetime, table: str = CHECKED, counted: Tally | None = None) -> Landed:
    """Insert the good rows of ``table`` into the raw table and the others into ``raw._rejects``, each with
    its whole source record as JSON (read again from ``select_sql``, for the rejected rows only). The temp table
    ``_checked`` is dropped; another table (checked ahead, in a database of its own, with its ``tally`` taken
    there: ``counted``) is left to its owner."""
    names = ", ".join(ident(c.name) for c in layout.columns)
    order = ["__row", *(ident(c.name) for c in layout.columns if c.key)]
    lineage = ", ".join(ident(n) for n in LINEAGE_COLUMNS)
    lineage_values = values(source_file, sha256, loaded_at)
    in_order, landed, rejected = astuple(counted or tally(con, table))
    con.execute(
        f"INSERT INTO {layout.table} ({lineage}, {names}) SELECT {lineage_values}, __row, {names} "
        f"FROM {table} WHERE __problem IS NULL{'' if in_order else ' ORDER BY ' + ', '.join(order)}")
    if rejected:
        records = (f"SELECT __row, any_value(CAST(to_json(__rec) AS JSON)) AS __rec FROM ({select_sql}) "
                   f"WHERE __row IN (SELECT __row FROM {table} WHERE __problem IS NOT NULL) GROUP BY __row")
        con.execute(
            f"INSERT INTO raw._rejects SELECT {lineage_values}, c.__row, {value(layout.entity)}, c.__problem.column_name, "
            f"c.__problem.value_text, c.__problem.reason, r.__rec FROM {table} c LEFT JOIN ({records}) r "
            f"USING (__row) WHERE c.__problem IS NOT NULL ORDER BY {', '.join('c.' + k for k in order)}")
    if table == CHECKED:
        con.execute(f"DROP TABLE {CHECKED}")
    return Landed(landed, rejected)
