"""Tell which layout a file is, from its header and content (never from its name), and plan how to read it.

Whole-file problems (unknown layout, missing required column, no data rows, unreadable bytes) raise
``InputFileError`` naming the file, the column and what to do. Nothing is written here.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
import zipfile

import duckdb

from brecha.core.errors import InputFileError
from brecha.core.layouts import (
    LAYOUTS,
    OSIPTEL_INTERNET_BOOTHS,
    OSIPTEL_MOBILE_LINE_SHARE,
    OSIPTEL_MOBILE_LINES,
    OSIPTEL_MOBILE_TELEDENSITY,
)
from brecha.landing import readers, stacked
from brecha.landing.headers import HeaderMatch, best_match, is_year, norm
from brecha.landing.plan import FilePlan
from brecha.landing.scan import SourceFile
from brecha.landing.sql import ident, lit, null_list

TABULAR = [layout for layout in LAYOUTS if layout.kind in ("csv", "xlsx")]  # a flat table, as CSV or sheet
JSON_ARRAYS = [layout for layout in LAYOUTS if layout.kind == "json"]
GEOJSON = [layout for layout in LAYOUTS if layout.kind == "geojson"]
MIN_REQUIRED_SHARE = 0.5  # a header with at least half a layout's required columns is that layout, damaged
DEPARTMENT_HEADERS = ("departamento", "departmento")  # OSIPTEL misspells it in Cuadro 2.3
SHARE_SUM_TOLERANCE = 3.0  # percentage points a year's shares may exceed 100 by (rounding)
LINES_MIN_MAX = 1000  # line counts run to thousands and millions; shares and lines per 100 never do


THOUSANDS = "[+-]?[0-9]{1,3}(,[0-9]{3})+"  # 1,234,567: a count with comma thousands separators
# 12,5 or 1.234,56 or 0,125: a decimal comma (a number with a comma that is no comma thousands grouping)
DECIMAL_COMMA = "[+-]?[0-9]+(\\.[0-9]{3})*,[0-9]+"


def decimal_comma_sql(expr: str) -> str:
    """SQL: the text ``expr`` is a number written with a decimal comma."""
    return (f"(regexp_full_match(trim({expr}), '{DECIMAL_COMMA}') "
            f"AND NOT regexp_full_match(trim({expr}), '{THOUSANDS}'))")
THOUSANDS_POINTS = "[+-]?[0-9]{1,3}(\\.[0-9]{3}){2,}(,[0-9]+)?"  # 1.234.567: only a thousands point has two groups
MAX_LINE_BYTES = 2_000_000  # DuckDB's read_csv default max_line_size


def decimal_commas(src: SourceFile, column: str | None, example: str | None) -> InputFileError:
    return InputFileError(
        src.rel, f"its numbers are written with decimal commas (e.g. '{example}'): the file was saved by a "
                 "spreadsheet with a Spanish (or other comma-decimal) locale, which also writes ';' between "
                 "columns, and its numbers cannot be read as published",
        "Use the file as published, or export it again as CSV with '.' as the decimal separator and no "
        "thousands separator (LibreOffice: Save As > Text CSV, field delimiter ',', untick 'Save cell content as "
        "shown'; Excel: set the system decimal separator to '.' first)", column=column)


def _csv_problem(src: SourceFile) -> str | None:
    """Read a CSV that DuckDB could not with Python's csv module, to say what is wrong and on which line:
    a line longer than DuckDB allows, a record with another number of fields than the header (a file cut
    short ends so), a quote never closed. None when Python reads it cleanly."""
    import csv
    import sys

    encoding = "utf-16" if src.encoding == "utf-16" else "utf-8-sig" if src.encoding == "utf-8" else "latin-1"
    with open(src.path, encoding=encoding, errors="replace", newline="") as fh:
        first = fh.readline()
        delim = max(",;\t|", key=first.count)
        fh.seek(0)
        csv.field_size_limit(sys.maxsize)
        reader = csv.reader(fh, delimiter=delim, strict=True)
        width = None
        start = 1
        try:
            for record in reader:
                size = sum(len(f) for f in record)
                if size > MAX_LINE_BYTES:
                    longest = max(range(len(record)), key=lambda i: len(record[i]))
                    return (f"line {start:,} holds {size:,} characters, more than the {MAX_LINE_BYTES:,} a line may "
                            f"have: its value number {longest + 1} alone has {len(record[longest]):,} (a damaged or "
                            "pasted-in value)")
                if width is None:
                    width = len(record)
                elif record and len(record) != width:
                    at_end = next(reader, None) is None
                    what = "the last line is cut short: the file is truncated" if at_end and len(record) < width \
                        else "the file is malformed"
                    return f"line {start:,} has {len(record)} fields where the header has {width}: {what}"
                start = reader.line_num + 1
        except csv.Error as err:
            return f"line {start:,} cannot be parsed ({err}): the file is truncated or malformed"
    return None


def describe_read_error(src: SourceFile, err: Exception, what: str = "") -> InputFileError:
    """A reader's failure as a whole-file error naming the file, and for a CSV the line and what is wrong."""
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    fix = ("Check that the file is complete and really is the format it claims; download it again or remove it "
           "from the folder")
    if src.fmt == "csv" and (problem := _csv_problem(src)):
        return InputFileError(src.rel, f"could not be read as CSV: {problem}; nothing was landed", fix)
    what = f" {what}" if what else f" as {src.fmt.upper()}"
    return InputFileError(src.rel, f"could not be read{what} ({detail}); nothing was landed", fix)


def _fix_unknown() -> str:
    return ("If it is documentation, give it a .md, .txt or .pdf name; if it is an extract, check that it is one "
            "of the published INEI/OSIPTEL layouts (brecha/core/layouts.py) with its header row intact; otherwise move "
            "it out of the folder")


def _unknown(src: SourceFile, what: str) -> InputFileError:
    return InputFileError(src.rel, f"unknown layout: {what} matches none of the known extracts", _fix_unknown())


def _has_rows(con: duckdb.DuckDBPyConnection, select_sql: str) -> bool:
    return bool(con.execute(f"SELECT count(*) FROM (SELECT 1 FROM ({select_sql}) LIMIT 1)").fetchone()[0])


def _from_match(con: duckdb.DuckDBPyConnection, src: SourceFile, m: HeaderMatch, reader: str,
                headers: list[str], sheet: str = "", has_rows: bool | None = None, cell_range: str = "") -> FilePlan:
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
    plan = FilePlan(src, layout.entity, reader, m.columns, tuple(headers), sheet, cell_range=cell_range)
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
    # counts may carry comma thousands separators ("1,234,567", quoted): read them as the landing checks do
    number = (f"CASE WHEN regexp_full_match(trim(__value), '{THOUSANDS}') THEN TRY_CAST(replace(trim(__value), ',', '') "
              "AS DOUBLE) ELSE TRY_CAST(trim(__value) AS DOUBLE) END")
    cells, n, integral, top, top_sum, comma, example, points, point_example = con.execute(
        f"WITH cells AS (SELECT __name, __value, {number} AS v FROM {readers.read_csv(src)} "
        f"UNPIVOT (__value FOR __name IN ({spread})) WHERE trim(__value) NOT IN {null_list()}) "
        "SELECT count(*), count(v), bool_and(v = floor(v)), max(v), "
        "(SELECT max(s) FROM (SELECT sum(v) AS s FROM cells GROUP BY __name)), "
        f"count(*) FILTER (WHERE {decimal_comma_sql('__value')}), "
        "any_value(__value ORDER BY v IS NOT NULL, __name), "
        f"count(*) FILTER (WHERE regexp_full_match(trim(__value), '{THOUSANDS_POINTS}')), "
        f"any_value(__value) FILTER (WHERE regexp_full_match(trim(__value), '{THOUSANDS_POINTS}')) FROM cells"
    ).fetchone()
    if not n and not cells:
        return None
    if comma:
        raise decimal_commas(src, years[0] if years else None, example)
    if points:  # 1.234.567: thousands points, so 2.097 is 2,097 lines, not 2.097 per 100 inhabitants
        raise InputFileError(
            src.rel, f"its numbers are written with thousands points (e.g. '{point_example}'), as a spreadsheet with a "
            "Spanish locale writes them, so a value such as 2.097 cannot be told from a decimal",
            "Use the file as published, or export it again with no thousands separator and '.' as the decimal "
            "separator", column=years[0] if years else None)
    if n < cells * 0.5:
        raise InputFileError(
            src.rel, f"it has the shape of an OSIPTEL table by department and year, but {cells - n:,} of its "
            f"{cells:,} values are not numbers (e.g. '{example}')",
            "Use the table as published (plain numbers, '.' for decimals), or remove it from the folder")
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
    if len(headers) == 1 and (problem := _csv_problem(src)):  # DuckDB's sniffer gave up on a damaged file
        raise InputFileError(src.rel, f"could not be read as CSV: {problem}",
                             "Download it again (it may be cut short) or remove it from the folder")
    raise _unknown(src, f"its header ({', '.join(headers[:12])})")


TITLE_ROWS_MAX = 30  # rows above a sheet's header (titles, source notes) looked through for the header
XLSX_LAST_ROW = 1_048_576  # a sheet's last row


def _header_below_titles(con: duckdb.DuckDBPyConnection, src: SourceFile, sheet: str) -> tuple[str, list[str]] | None:
    """A sheet whose header sits below title rows (PUNKU's ``Dataset``): the cell range from the header row down,
    and its headers, when one of the first rows matches a layout; else None."""
    # a range makes the reader keep every column (without one it takes as many as the first row has), named by
    # their letters
    rows = con.execute(f"SELECT * FROM read_xlsx({lit(str(src.path))}, sheet = {lit(sheet)}, all_varchar = true, "
                       f"header = false, stop_at_empty = false, range = 'A1:AZ{TITLE_ROWS_MAX}')")
    letters = [d[0] for d in rows.description]
    for offset, row in enumerate(rows.fetchall()):
        cells = [(letter, str(v).strip()) for letter, v in zip(letters, row, strict=True) if v is not None and str(v).strip()]
        if len(cells) < 2:
            continue
        m = best_match([v for _, v in cells], TABULAR)
        if m is not None and m.share_required >= MIN_REQUIRED_SHARE:
            cell_range = f"{cells[0][0]}{offset + 1}:{cells[-1][0]}{_last_row(src, sheet)}"
            return cell_range, readers.column_names(con, readers.read_xlsx(src.path, sheet, cell_range))
    return None


def _last_row(src: SourceFile, sheet: str) -> int:
    """The sheet's last row as its ``<dimension ref="A1:H128738"/>`` states it (Excel writes one at the top of
    every sheet), or the last row a sheet can have: the reader then pads the range with empty rows, which are
    skipped, at the cost of reading them."""
    with zipfile.ZipFile(src.path) as book:
        rels = ET.fromstring(book.read("xl/_rels/workbook.xml.rels"))
        root = ET.fromstring(book.read("xl/workbook.xml"))
        rid = next((v for el in root.iter() if el.tag.endswith("}sheet") and el.attrib.get("name") == sheet
                    for k, v in el.attrib.items() if k.endswith("}id")), None)
        target = next((el.attrib["Target"] for el in rels if el.attrib.get("Id") == rid), None)
        if target is None:
            return XLSX_LAST_ROW
        with book.open(target.lstrip("/") if target.startswith("/") else f"xl/{target}") as fh:
            head = fh.read(1 << 14).decode("utf-8", errors="ignore")
    found = re.search(r'<dimension ref="[A-Z]+[0-9]+:[A-Z]+([0-9]+)"', head)
    return int(found.group(1)) if found else XLSX_LAST_ROW


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
        if below := _header_below_titles(con, src, sheet):
            cell_range, headers = below
            m = best_match(headers, TABULAR)
            if m is not None and m.share_required >= MIN_REQUIRED_SHARE:
                return _from_match(con, src, m, "xlsx", headers, sheet, cell_range=cell_range)
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
    except (duckdb.Error, zipfile.BadZipFile, KeyError, ET.ParseError, OSError, EOFError) as err:
        # a damaged .xlsx is a damaged zip (BadZipFile), or lacks its workbook part (KeyError), or has broken XML
        raise describe_read_error(src, err) from err
