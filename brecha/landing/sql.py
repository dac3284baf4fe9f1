"""Quoting for the SQL the landing step writes (file paths, headers and values come from user files)."""

from __future__ import annotations

from brecha.layouts import NULL_STRINGS


def lit(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def null_list() -> str:
    """``('', 'NA', ...)``: the texts that mean "no value" in these extracts."""
    return "(" + ", ".join(lit(s) for s in NULL_STRINGS) + ")"
