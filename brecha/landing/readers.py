"""Readers: one SQL query per planned file over DuckDB's own readers (read_csv, read_xlsx, read_json_objects).

Every reader yields the same shape, which ``checks`` casts and checks in one pass:
``__row`` (1-based record number), ``__rec`` (the whole source record, a STRUCT or JSON) and one VARCHAR column
per column of the layout (NULL when an optional column is absent). Text stays text here: nothing is cast, so
nothing can fail while reading a row.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import duckdb

from brecha.core.layouts import Column
from brecha.landing import stacked
from brecha.landing.plan import FilePlan
from brecha.landing.scan import SourceFile
from brecha.landing.sql import ident, lit, null_list

MAX_JSON_BYTES = 1 << 30  # a whole GeoJSON document is one JSON value
STACKED_CELLS = {"sheet_row": "BIGINT", "block": "BIGINT", "departamento": "VARCHAR", "period": "VARCHAR",
                 "granularity": "VARCHAR", "value": "VARCHAR"}  # stacked.Parsed.cells
STACKED_RECORDS = {"sheet_row": "BIGINT", "record": "VARCHAR"}  # stacked.Parsed.records

# Wide tables (one column per year or per operator) land in long form: which raw column receives the header
# of the spread column, and which receives the cell. Extra constant columns per entity.
WIDE: dict[str, tuple[str, str, dict[str, str]]] = {
    "osiptel__mobile_lines": ("period", "lines", {"granularity": "'year'", "block": "'1'"}),
    "osiptel__mobile_line_share": ("year", "share_pct", {}),
    "osiptel__mobile_teledensity": ("year", "lines_per_100", {}),
    "osiptel__internet_booths": ("operador", "cabinas", {}),
}


def read_csv(src: SourceFile) -> str:
    return f"read_csv({lit(str(src.path))}, all_varchar = true, header = true, encoding = {lit(src.encoding)})"


def read_xlsx(path: Path, sheet: str, cell_range: str = "") -> str:
    # stop_at_empty=false: by default read_xlsx silently stops at the first blank row; a range starts at a header
    # below title rows (its empty rows to the sheet's end are skipped as blank, like any blank row)
    within = f", range = {lit(cell_range)}" if cell_range else ""
    return (f"read_xlsx({lit(str(path))}, sheet = {lit(sheet)}, all_varchar = true, header = true, "
            f"stop_at_empty = false{within})")


def read_json_array(path: Path) -> str:
    return f"read_json_objects({lit(str(path))}, format = 'array', maximum_object_size = {MAX_JSON_BYTES})"


def geojson_features(path: Path) -> str:
    doc = f"read_json_objects({lit(str(path))}, format = 'unstructured', maximum_object_size = {MAX_JSON_BYTES})"
    return f"(SELECT unnest(json_extract(json, '$.features[*]')) AS f FROM {doc})"


def column_names(con: duckdb.DuckDBPyConnection, table_sql: str) -> list[str]:
    return [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {table_sql}").fetchall()]


def json_keys(con: duckdb.DuckDBPyConnection, objects_sql: str, expr: str) -> list[str]:
    """Every key of the JSON objects ``expr`` over ``objects_sql``, in order of first appearance."""
    rows = con.execute(
        f"SELECT k FROM (SELECT unnest(json_keys({expr})) AS k, row_number() OVER () AS n FROM {objects_sql}) "
        "GROUP BY k ORDER BY min(n)"
    ).fetchall()
    return [r[0] for r in rows]


def xlsx_sheets(path: Path) -> list[str]:
    """Sheet names in workbook order, read from the workbook's XML (no cells are parsed)."""
    with zipfile.ZipFile(path) as zf:
        root = ET.fromstring(zf.read("xl/workbook.xml"))
    return [el.attrib["name"] for el in root.iter() if re.sub(r"^\{.*\}", "", el.tag) == "sheet"]


def _json_text(obj: str, *keys: str) -> str:
    """``json_extract_string(obj, '$."a"."b"')``: keys quoted, so any key text works."""
    path = "$" + "".join('."' + k.replace('"', '\\"') + '"' for k in keys)
    return f"json_extract_string({obj}, {lit(path)})"


SOURCE_TABLE = "_source"  # temp table: the file's cells as read, one row per record in file order


def _numbered_sql(table_sql: str) -> str:
    return f"SELECT row_number() OVER () AS __row, * FROM {table_sql}"


def _over_table(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """The query over a table of cells read with their record numbers, with the record as read (for rejects)."""
    names = [n for n in column_names(con, table) if n != "__row"]
    record = "{" + ", ".join(f"{lit(n)}: s.{ident(n)}" for n in names) + "}"
    return f"(SELECT s.__row, {record} AS __rec, s.* EXCLUDE (__row) FROM {table} s)"


def materialise(con: duckdb.DuckDBPyConnection, table_sql: str) -> str:
    """Read ``table_sql`` once into a temp table with its record numbers, and return the query over it. The
    ``row_number() OVER ()`` keeps its pipeline on one thread: here that is the read alone, not the casts and
    checks, which then run in parallel over the temp table. (``rowid`` cannot number the records: inside the
    batch's transaction a new table's row ids do not start at 0.)"""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {SOURCE_TABLE} AS {_numbered_sql(table_sql)}")
    return _over_table(con, SOURCE_TABLE)


def drop_materialised(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"DROP TABLE IF EXISTS temp.{SOURCE_TABLE}")


class SheetPrefetch:
    """Sheets read ahead in a background thread while the batch lands the files before them.

    DuckDB's XLSX reader runs on one thread (a large workbook takes seconds; `make bench` measures it), and
    most of a batch's other work is one-threaded too, so on two cores the read costs little wall time when it
    overlaps the CSVs that land before it. Each sheet is read, with its record numbers, by a cursor of the same
    DuckDB instance (same memory limit) into a table of its own in-memory database, ``ATTACH``ed for it alone:
    DuckDB starts a transaction's snapshot of an attached database when the transaction first touches it, so
    the batch's transaction, which touches that database only after the read committed (``select_sql`` waits
    for it), sees the whole table, and nothing else of it. The sheet is then checked and landed from there
    exactly as from ``materialise``'s temp table; a read error is raised when the sheet's turn comes, as it was
    without the read-ahead. ``close`` (always, after the batch's transaction ended) stops a read still running
    and detaches the databases."""

    def __init__(self, con: duckdb.DuckDBPyConnection, plans: list[FilePlan]) -> None:
        from concurrent.futures import Future, ThreadPoolExecutor

        self._con = con
        self._dbs: dict[str, str] = {}
        self._futures: dict[str, Future[None]] = {}
        self._closing = False
        sheets = [p for p in plans if p.reader == "xlsx"]
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="brecha-sheet") if sheets else None
        self._cursor = con.cursor() if sheets else None
        for plan in sheets:
            db = f"_sheet_{plan.source.sha256[:16]}"
            con.execute(f"ATTACH ':memory:' AS {ident(db)}")
            self._dbs[plan.source.sha256] = db
        for plan in sheets:
            assert self._pool is not None
            self._futures[plan.source.sha256] = self._pool.submit(self._read, plan)

    def _read(self, plan: FilePlan) -> None:
        if self._closing or self._cursor is None:
            return
        table = f"{ident(self._dbs[plan.source.sha256])}.main.source"
        self._cursor.execute(f"CREATE TABLE {table} AS {_numbered_sql(read_xlsx(plan.source.path, plan.sheet, plan.cell_range))}")

    def __contains__(self, plan: FilePlan) -> bool:
        return plan.source.sha256 in self._futures

    def select_sql(self, plan: FilePlan, con: duckdb.DuckDBPyConnection | None = None) -> str:
        """``select_sql(con, plan, landing=True)`` for a sheet read ahead: waits for its read (raising its
        ``duckdb.Error``), then queries its table (its columns are looked up on ``con``, by default the batch's
        connection; a thread of its own passes its own cursor)."""
        self._futures[plan.source.sha256].result()
        table = f"{ident(self._dbs[plan.source.sha256])}.main.source"
        return _flat(plan, "", skip_blank=True, numbered=_over_table(con or self._con, table))

    def stop(self) -> None:
        """Cancel the reads not started and interrupt the one running (without waiting: ``close`` waits)."""
        self._closing = True
        for future in self._futures.values():
            future.cancel()
        if self._cursor is not None:
            self._cursor.interrupt()

    def close(self) -> None:
        """Stop what is still to be read, wait for the thread, detach the sheets' databases. Call it outside the
        batch's transaction (a database a transaction touched cannot be detached before it ends)."""
        self.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._cursor is not None:
            self._cursor.close()
        for db in self._dbs.values():
            self._con.execute(f"DETACH DATABASE IF EXISTS {ident(db)}")


NUMBER_TEXT = "[+-]?[0-9]+([.][0-9]*)?"


def label_key_sql(expr: str) -> str:
    """SQL: a label as it is looked up: lower case, no accents, blanks trimmed and runs of blanks made one."""
    return f"lower(strip_accents(regexp_replace(trim({expr}), '\\s+', ' ', 'g')))"


def label_key(text: str) -> str:
    """``label_key_sql`` in Python (for the layouts' label tables)."""
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", " ".join(text.split()))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()


def decode_labels(col: Column, expr: str) -> str:
    """SQL: the text ``expr`` of ``col`` with a value label replaced by its code (``Column.labels``); numbers,
    null texts and unknown labels are kept as they are (an unknown label is then rejected as unparseable)."""
    if not col.labels:
        return expr
    cases = " ".join(f"WHEN {lit(label_key(label))} THEN {lit(code)}" for label, code in col.labels)
    other = lit(col.other_label) if col.other_label else expr
    return (f"CASE WHEN {expr} IS NULL OR regexp_full_match(trim({expr}), '{NUMBER_TEXT}') "
            f"OR trim({expr}) IN {null_list()} THEN {expr} "
            f"ELSE CASE {label_key_sql(expr)} {cases} ELSE {other} END END")


def _flat(plan: FilePlan, table_sql: str, skip_blank: bool, con: duckdb.DuckDBPyConnection | None = None,
          numbered: str | None = None) -> str:
    """``con`` given: the file is read once into a temp table first (landing a sheet); ``numbered`` given: the
    query over a table it was already read into (``SheetPrefetch``); without either, the query reads the file
    where it is used (a CSV when landed, and recognition, which looks at the first row only)."""
    if numbered is None:
        numbered = materialise(con, table_sql) if con is not None else \
            f"(SELECT row_number() OVER () AS __row, s AS __rec, * FROM {table_sql} s)"
    cols = [
        f"{decode_labels(c, f'CAST(t.{ident(plan.columns[c.name])} AS VARCHAR)')} AS {ident(c.name)}"
        if c.name in plan.columns else f"NULL::VARCHAR AS {ident(c.name)}"
        for c in plan.layout.columns
    ]
    where = ""
    if skip_blank:  # spreadsheet rows with no value at all are formatting, not records
        where = f" WHERE coalesce({', '.join('t.' + ident(h) for h in plan.headers)}) IS NOT NULL"
    return f"SELECT t.__row, t.__rec, {', '.join(cols)} FROM {numbered} t{where}"


def _json_array(plan: FilePlan) -> str:
    cols = [
        f"{_json_text('json', plan.columns[c.name])} AS {ident(c.name)}" if c.name in plan.columns
        else f"NULL::VARCHAR AS {ident(c.name)}"
        for c in plan.layout.columns
    ]
    return (f"SELECT row_number() OVER () AS __row, json AS __rec, {', '.join(cols)} "
            f"FROM {read_json_array(plan.source.path)}")


def _geojson(plan: FilePlan) -> str:
    cols = []
    for c in plan.layout.columns:
        if c.name == "geometry":  # a null geometry is JSON null: keep it as SQL NULL
            cols.append("nullif(f -> 'geometry', 'null'::JSON) AS geometry")
        elif c.name in plan.columns:
            cols.append(f"{_json_text('f', 'properties', plan.columns[c.name])} AS {ident(c.name)}")
        else:
            cols.append(f"NULL::VARCHAR AS {ident(c.name)}")
    return f"SELECT row_number() OVER () AS __row, f AS __rec, {', '.join(cols)} FROM {geojson_features(plan.source.path)}"


def _wide(plan: FilePlan) -> str:
    name_col, value_col, constants = WIDE[plan.entity]
    name_expr = "__name || '-01-01'" if name_col == "period" else "__name"
    exprs = {"departamento": f"CAST({ident(plan.columns['departamento'])} AS VARCHAR)", name_col: name_expr,
             value_col: "__value", **constants}
    cols = ", ".join(f"CAST({exprs[c.name]} AS VARCHAR) AS {ident(c.name)}" for c in plan.layout.columns)
    spread = ", ".join(ident(h) for h in plan.value_columns)
    return (
        f"SELECT __row, __rec, {cols} FROM ("
        f"SELECT row_number() OVER () AS __row, s AS __rec, * FROM {read_csv(plan.source)} s"
        f") UNPIVOT (__value FOR __name IN ({spread})) "
        f"WHERE trim(__value) NOT IN {null_list()}"  # an empty cell is no record
    )


def _temp_table(con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, str], rows: list[tuple[object, ...]]) -> None:
    """A temp table of Python rows, passed as one JSON literal (binding parameters would import pandas)."""
    doc = json.dumps([dict(zip(columns, row, strict=True)) for row in rows], ensure_ascii=False)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT unnest(from_json({lit(doc)}, "
                f"{lit(json.dumps([columns]))}), recursive := true)")


def _stacked(con: duckdb.DuckDBPyConnection, plan: FilePlan) -> str:
    parsed = stacked.parse(plan.source.path)
    if parsed is None or parsed.sheet != plan.sheet:
        raise ValueError(f"{plan.source.rel}: no stacked sheet '{plan.sheet}' found")
    name = f"_stacked_{plan.source.sha256[:16]}"
    _temp_table(con, f"{name}_cells", STACKED_CELLS, parsed.cells)
    _temp_table(con, f"{name}_records", STACKED_RECORDS, parsed.records)
    return (
        "SELECT c.sheet_row AS __row, CAST(r.record AS JSON) AS __rec, CAST(c.departamento AS VARCHAR) AS departamento, "
        "CAST(c.period AS VARCHAR) AS period, CAST(c.granularity AS VARCHAR) AS granularity, "
        "CAST(c.value AS VARCHAR) AS lines, CAST(c.block AS VARCHAR) AS block "
        f"FROM {name}_cells c JOIN {name}_records r USING (sheet_row)"
    )


def select_sql(con: duckdb.DuckDBPyConnection, plan: FilePlan, landing: bool = False) -> str:
    """The query yielding ``__row, __rec`` and the layout's columns as text for ``plan``. When ``landing``, a sheet
    is read into a temp table first (dropped by ``drop_materialised``): reading an XLSX twice (checks, then the
    rejects' records) would cost more. (``brecha ingest`` reads its sheets ahead instead: ``SheetPrefetch``.) A CSV
    is read inside the check query. Its ``row_number() OVER ()`` keeps that whole query on one thread, but
    measured on a 350k-row ENAHO CSV (scale 10) it is still the cheaper way: 0.43 s single-threaded, against 0.23 s
    for a temp table with the record numbers plus 0.30 s of CPU for the checks over it (0.15 s on two free cores;
    while a sheet is read ahead, one core is busy, and the temp table only adds work). During an ingest that
    one-threaded query runs on a thread of its own, ahead of the file's turn (``ingest.CheckAhead``), beside
    the insert of the file before it."""
    if plan.reader == "csv":
        return _flat(plan, read_csv(plan.source), skip_blank=False)
    if plan.reader == "xlsx":
        return _flat(plan, read_xlsx(plan.source.path, plan.sheet, plan.cell_range), skip_blank=True,
                     con=con if landing else None)
    if plan.reader == "json_array":
        return _json_array(plan)
    if plan.reader == "geojson":
        return _geojson(plan)
    if plan.reader == "wide_csv":
        return _wide(plan)
    if plan.reader == "stacked_xlsx":
        return _stacked(con, plan)
    raise ValueError(f"unknown reader {plan.reader!r}")
