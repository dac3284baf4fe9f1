"""Quoting for the SQL the landing step writes (file paths, headers and values come from user files)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from brecha.core.layouts import NULL_STRINGS


def lit(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def value(v: str | int | bool | datetime | Sequence[str] | None) -> str:
    """A SQL literal for a Python value. Landing writes its few values inline rather than as parameters:
    binding any parameter makes the DuckDB client import pandas (half a second per ``brecha ingest``)."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, datetime):
        return f"TIMESTAMP {lit(v.isoformat(sep=' '))}"
    if isinstance(v, str):
        return lit(v)
    return "[" + ", ".join(value(x) for x in v) + "]::VARCHAR[]"


def values(*vs: str | int | bool | datetime | Sequence[str] | None) -> str:
    """``value(a), value(b), ...``"""
    return ", ".join(value(v) for v in vs)


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def null_list() -> str:
    """``('', 'NA', ...)``: the texts that mean "no value" in these extracts."""
    return "(" + ", ".join(lit(s) for s in NULL_STRINGS) + ")"


def is_null_text(expr: str) -> str:
    """SQL: ``expr`` (already trimmed) is one of the texts that mean "no value". Comparisons, not ``IN (...)``:
    DuckDB plans an IN list of strings as a join, one per column, which costs more than the cast."""
    return "(" + " OR ".join(f"{expr} = {lit(s)}" for s in NULL_STRINGS) + ")"
