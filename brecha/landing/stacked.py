"""The one layout parsed in Python: OSIPTEL's stacked spreadsheet of mobile lines (IndMovil-C21.xlsx).

The sheet holds title rows, notes and several blocks stacked one under the other, each with its own header
row (``Departamento, 1994, 1995, ...`` for yearly blocks, ``Departamento, 2013-01, ...`` for monthly ones;
the last yearly header can be a date, e.g. 2018-12-01 for "2018, end of period"). No SQL reader can find such
blocks, so openpyxl walks the rows; the cells then go to DuckDB, which casts and checks them like any file.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from brecha.core.layouts import NULL_STRINGS
from brecha.landing.headers import norm

SCAN_ROWS = 500  # recognition looks for block headers in the first rows only
NOTE_PREFIXES = ("nota", "fuente", "fecha de corte", "elaboracion")


def _period(cell: object) -> tuple[str, int] | None:
    """A header cell as (ISO date, kind): kind 1 = a year, 2 = a month; None when it is no period."""
    if isinstance(cell, dt.datetime | dt.date):
        return cell.strftime("%Y-%m-01"), 2
    if isinstance(cell, int | float) and float(cell).is_integer() and 1900 <= cell <= 2100:
        return f"{int(cell)}-01-01", 1
    if isinstance(cell, str) and cell.strip().isdigit() and len(cell.strip()) == 4:
        return f"{cell.strip()}-01-01", 1
    return None


@dataclass(frozen=True)
class Block:
    header_row: int  # 1-based sheet row of the header
    granularity: str  # 'year' | 'month'
    periods: dict[int, str]  # 0-based column index -> first day of the period (ISO)


def _block(row_number: int, row: tuple[object, ...]) -> Block | None:
    if not row or norm(row[0] or "") not in ("departamento", "departmento"):
        return None
    periods = {i: p for i, cell in enumerate(row) if i and (p := _period(cell))}
    if not periods:
        return None
    kinds = {kind for _, kind in periods.values()}
    granularity = "year" if 1 in kinds else "month"
    if granularity == "year":  # a date heading a yearly block stands for its year ("2018, end of period")
        periods = {i: f"{iso[:4]}-01-01" for i, (iso, _) in periods.items()}
    else:
        periods = {i: iso for i, (iso, _) in periods.items()}
    return Block(row_number, granularity, periods)


@dataclass(frozen=True)
class Parsed:
    sheet: str
    cells: list[tuple[object, ...]]  # (sheet_row, block, departamento, period, granularity, value_text)
    records: list[tuple[int, str]]  # (sheet_row, the whole sheet row as JSON)


def _text(cell: object) -> str | None:
    if cell is None:
        return None
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    if isinstance(cell, dt.datetime | dt.date):
        return cell.isoformat()
    text = str(cell)
    return None if text.strip() in NULL_STRINGS else text


def _cells(rows: Iterable[tuple[object, ...]]) -> tuple[list[tuple[object, ...]], list[tuple[int, str]]]:
    """A data row is a row under a block header whose first cell is a label that is not a note, with at least
    one value under a period of that block. Empty cells and ``-`` (no value) are not records."""
    long: list[tuple[object, ...]] = []
    records: list[tuple[int, str]] = []
    block: Block | None = None
    number = 0
    for n, row in enumerate(rows, start=1):
        if found := _block(n, row):
            block, number = found, number + 1
            continue
        if block is None or not row or not isinstance(row[0], str) or not row[0].strip():
            continue
        if norm(row[0]).startswith(NOTE_PREFIXES):
            continue
        values = {i: v for i in block.periods if i < len(row) and (v := _text(row[i])) is not None}
        if not values:
            continue
        for i, value in values.items():
            long.append((n, number, row[0], block.periods[i], block.granularity, value))
        record = {"Departamento": row[0]}
        record.update({block.periods[i][: 4 if block.granularity == "year" else 7]: _text(row[i])
                       for i in block.periods if i < len(row)})
        records.append((n, json.dumps(record, ensure_ascii=False)))
    return long, records


@lru_cache(maxsize=4)
def _parse(path: str, size: int, mtime_ns: int) -> Parsed | None:
    import openpyxl  # imported here: only a stacked sheet needs it, and it is slow to import

    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        for ws in wb.worksheets:
            head = ws.iter_rows(max_row=SCAN_ROWS, values_only=True)
            if any(_block(n, row) for n, row in enumerate(head, start=1)):
                long, records = _cells(ws.iter_rows(values_only=True))
                return Parsed(ws.title, long, records)
        return None
    finally:
        wb.close()


def parse(path: Path) -> Parsed | None:
    """The first sheet with a ``Departamento`` block header in its first rows, parsed into cells; None when
    the workbook has no such sheet. One workbook load per file (recognition and landing share it)."""
    stat = path.stat()
    return _parse(str(path), stat.st_size, stat.st_mtime_ns)
