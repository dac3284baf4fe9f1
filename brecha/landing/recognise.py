"""Tell which layout a file is, from its header and content (never from its name), and plan how to read it.

Whole-file problems (unknown layout, missing required column, no data rows, unreadable bytes) raise
``InputFileError`` naming the file, the column and what to do. Nothing is written here.
"""

from __future__ import annotations

import duckdb

from brecha.errors import InputFileError
from brecha.landing import readers, stacked
from brecha.landing.headers import HeaderMatch, best_match, is_year, norm
from brecha.landing.plan import FilePlan
from brecha.landing.scan import SourceFile
from brecha.landing.sql import ident, lit, null_list
from brecha.layouts import (
    LAYOUTS,
    OSIPTEL_INTERNET_BOOTHS,
    OSIPTEL_MOBILE_LINE_SHARE,
    OSIPTEL_MOBILE_LINES,
    OSIPTEL_MOBILE_TELEDENSITY,
)

TABULAR = [layout for layout in LAYOUTS if layout.kind in ("csv", "xlsx")]  # a flat table, as CSV or sheet
JSON_ARRAYS = [layout for layout in LAYOUTS if layout.kind == "json"]
GEOJSON = [layout for layout in LAYOUTS if layout.kind == "geojson"]
MIN_REQUIRED_SHARE = 0.5  # a header with at least half a layout's required columns is that layout, damaged
DEPARTMENT_HEADERS = ("departamento", "departmento")  # OSIPTEL misspells it in Cuadro 2.3
SHARE_SUM_TOLERANCE = 3.0  # percentage points a year's shares may exceed 100 by (rounding)
LINES_MIN_MAX = 1000  # line counts run to thousands and millions; shares and lines per 100 never do


def _fix_unknown() -> str:
    return ("If it is documentation, give it a .md, .txt or .pdf name; if it is an extract, check that it is one "
            "of the published INEI/OSIPTEL layouts (brecha/layouts.py) with its header row intact; otherwise move "
            "it out of the folder")


def _unknown(src: SourceFile, what: str) -> InputFileError:
    return InputFileError(src.rel, f"unknown layout: {what} matches none of the known extracts", _fix_unknown())


def _has_rows(con: duckdb.DuckDBPyConnection, select_sql: str) -> bool:
    return bool(con.execute(f"SELECT count(*) FROM (SELECT 1 FROM ({select_sql}) LIMIT 1)").fetchone()[0])


def _from_match(con: duckdb.DuckDBPyConnection, src: SourceFile, m: HeaderMatch, reader: str,
                headers: list[str], sheet: str = "", has_rows: bool | None = None) -> FilePlan:
    """The plan for a file whose header matched ``m``; ``has_rows`` when the caller already knows whether the
    reader yields a row."""
    layout = m.layout
    if m.missing:
        col = m.missing[0]
        renamed = f" It has these columns the layout does not know: {', '.join(m.unmatched)} (was one renamed?)." \
            if m.unmatched else ""
        others = f" (also missing: {', '.join(m.missing[1:])})" if len(m.missing) > 1 else ""
        raise InputFileError(
            src.rel, f"required column '{col}' is missing{others}; the file otherwise looks like {layout.entity} "
                     f"({layout.description})",
            f"{renamed} Restore the header '{col}' exactly as published "
            f"(e.g. in {', '.join(layout.example_names)}), or remove the file from the folder".lstrip(),
            column=col,
        )
    plan = FilePlan(src, layout.entity, reader, m.columns, tuple(headers), sheet)
    if not (_has_rows(con, readers.select_sql(con, plan)) if has_rows is None else has_rows):
        raise InputFileError(src.rel, f"the file has the header of {layout.entity} but no data rows",
                             "Download it again (it may be cut short) or remove it from the folder")
    return plan


def _wide_kind(con: duckdb.DuckDBPyConnection, src: SourceFile, years: list[str]) -> tuple[str, str] | None:
    """Three published tables share the shape ``iden, Departamento|Departmento, <years>``: IndMovil-C21.csv
    (lines in service, Cuadro 2.1), IndMovil-C23.csv (share of national lines, Cuadro 2.3) and
    moviles-lineas_C2.2 (lines per 100 inhabitants, Cuadro 2.2). The header cannot tell them apart; the
    numbers can: lines are whole numbers running to thousands and millions; shares lie within 0-100 and
    no year's column sums to more than ~100 (the published table sums to 100; a table whose denominator
    includes lines without a department sums to less); lines per 100 inhabitants are decimals whose yearly
    sums over ~25 departments run far above 100 (126 to 2,326 in the real Cuadro 2.2).
    """
    spread = ", ".join(ident(y) for y in years)
    n, integral, top, top_sum = con.execute(
        f"WITH cells AS (SELECT __name, TRY_CAST(__value AS DOUBLE) AS v FROM {readers.read_csv(src)} "
        f"UNPIVOT (__value FOR __name IN ({spread})) WHERE trim(__value) NOT IN {null_list()}) "
        "SELECT count(v), bool_and(v = floor(v)), max(v), "
        "(SELECT max(s) FROM (SELECT sum(v) AS s FROM cells GROUP BY __name)) FROM cells"
    ).fetchone()
    if not n:
        return None
    if integral and top >= LINES_MIN_MAX:
        return OSIPTEL_MOBILE_LINES.entity, "whole numbers in the thousands or more: lines in service (Cuadro 2.1)"
    if top <= 100 and top_sum <= 100 + SHARE_SUM_TOLERANCE:
        return OSIPTEL_MOBILE_LINE_SHARE.entity, "no year sums to more than ~100: shares of national lines (Cuadro 2.3)"
    return OSIPTEL_MOBILE_TELEDENSITY.entity, \
        "yearly sums above 100, no large whole numbers: lines per 100 inhabitants (Cuadro 2.2)"


def _plan_wide(con: duckdb.DuckDBPyConnection, src: SourceFile, headers: list[str]) -> FilePlan | None:
    dept = [h for h in headers if norm(h) in DEPARTMENT_HEADERS]
    if not dept:
        return None
    years = [h for h in headers if is_year(h)]
    rest = [h for h in headers if h not in dept and h not in years and norm(h) != "iden"]
    if years and not rest:
        kind = _wide_kind(con, src, years)
        if kind is None:
            return None
        entity, note = kind
        plan = FilePlan(src, entity, "wide_csv", {"departamento": dept[0]}, tuple(headers), "", tuple(years), note)
    elif not years and rest and norm(headers[0]) == "departamento":
        # Cuadro 8.8: one column per operator with counts of public internet booths
        plan = FilePlan(src, OSIPTEL_INTERNET_BOOTHS.entity, "wide_csv", {"departamento": dept[0]}, tuple(headers),
                        "", tuple(rest), "Departamento then one column per operator: internet booths (Cuadro 8.8)")
    else:
        return None
    if not _has_rows(con, readers.select_sql(con, plan)):
        raise InputFileError(src.rel, f"the file has the header of {plan.entity} but no values",
                             "Download it again (it may be cut short) or remove it from the folder")
    return plan


def _plan_csv(con: duckdb.DuckDBPyConnection, src: SourceFile) -> FilePlan:
    # one read (one dialect sniff) gives the header and tells whether there is a record
    cursor = con.execute(f"SELECT * FROM {readers.read_csv(src)} LIMIT 1")
    headers = [d[0] for d in cursor.description]
    has_rows = cursor.fetchone() is not None
    m = best_match(headers, TABULAR)
    if m is not None and m.share_required >= MIN_REQUIRED_SHARE:
        return _from_match(con, src, m, "csv", headers, has_rows=has_rows)
    if plan := _plan_wide(con, src, headers):
        return plan
    raise _unknown(src, f"its header ({', '.join(headers[:12])})")


def _plan_xlsx(con: duckdb.DuckDBPyConnection, src: SourceFile) -> FilePlan:
    seen: list[str] = []
    for sheet in readers.xlsx_sheets(src.path):
        try:
            headers = readers.column_names(con, readers.read_xlsx(src.path, sheet))
        except duckdb.Error:  # an empty or chart-only sheet
            continue
        seen.append(f"sheet '{sheet}': {', '.join(headers[:8])}")
        m = best_match(headers, TABULAR)
        if m is not None and m.share_required >= MIN_REQUIRED_SHARE:
            return _from_match(con, src, m, "xlsx", headers, sheet)
    # Only Cuadro 2.1 (lines in service) is published as a stacked sheet of yearly and monthly blocks.
    if parsed := stacked.parse(src.path):
        if not parsed.cells:
            raise InputFileError(src.rel, f"sheet '{parsed.sheet}' has 'Departamento' block headers but no values",
                                 "Download it again or remove it from the folder")
        return FilePlan(src, OSIPTEL_MOBILE_LINES.entity, "stacked_xlsx", {}, (), parsed.sheet, (),
                        "stacked sheet of 'Departamento' blocks by year and month: lines in service (Cuadro 2.1)")
    raise _unknown(src, "no sheet (" + "; ".join(seen) + ")")


def _plan_json(con: duckdb.DuckDBPyConnection, src: SourceFile) -> FilePlan:
    if src.encoding != "utf-8":
        raise InputFileError(src.rel, f"JSON must be UTF-8, but the bytes are {src.encoding}",
                             "Save the file as UTF-8 and ingest again")
    doc_type = con.execute(
        f"SELECT json_extract_string(json, '$.type') FROM read_json_objects({lit(str(src.path))}, "
        f"format = 'unstructured', maximum_object_size = {readers.MAX_JSON_BYTES})").fetchone()[0]
    if doc_type == "FeatureCollection":
        keys = readers.json_keys(con, readers.geojson_features(src.path), "f -> 'properties'")
        m, reader = best_match(keys, GEOJSON), "geojson"
    else:
        keys = readers.json_keys(con, readers.read_json_array(src.path), "json")
        m, reader = best_match(keys, JSON_ARRAYS), "json_array"
    if m is None or m.share_required < MIN_REQUIRED_SHARE:
        raise _unknown(src, f"its keys ({', '.join(keys[:12])})" if keys else "a JSON document with no objects")
    return _from_match(con, src, m, reader, keys)


def plan_file(con: duckdb.DuckDBPyConnection, src: SourceFile) -> FilePlan:
    """Recognise ``src`` and return how to land it, or raise ``InputFileError``."""
    try:
        if src.fmt == "csv":
            return _plan_csv(con, src)
        if src.fmt == "xlsx":
            return _plan_xlsx(con, src)
        return _plan_json(con, src)
    except duckdb.Error as err:
        detail = str(err).strip().splitlines()[0]
        raise InputFileError(src.rel, f"could not be read as {src.fmt.upper()} ({detail})",
                             "Check that the file is complete and really is the format it claims; download it "
                             "again or remove it from the folder") from err
