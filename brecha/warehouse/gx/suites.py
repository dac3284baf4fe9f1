"""The expectation suites, versioned as Great Expectations JSON under ``expectations/<gate>/<table>.json``.

Each file is a GX 1.x suite (``name``, ``meta``, ``expectations``); ``meta.asset`` names the warehouse
table it checks. Bounds that depend on the data are written as GX suite parameters, e.g.
``{"$PARAMETER": "previous_rows * 0.5"}``; ``brecha.warehouse.gx.batches`` supplies their values at run time.
An expectation whose parameter has no value on this run (``previous_rows`` on a first load) is left out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brecha.core.errors import BrechaError
from brecha.core.settings import EXPECTATIONS_DIR

GATES = ("landed", "marts")
_PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Suite:
    gate: str  # 'landed' | 'marts'
    name: str  # e.g. 'landed.inei__census_indicators'
    asset: str  # e.g. 'raw.inei__census_indicators'
    expectations: tuple[dict[str, Any], ...]
    path: Path

    @property
    def table(self) -> str:
        """The table name without its schema."""
        return self.asset.split(".", 1)[1]

    def columns(self) -> list[str] | None:
        """The columns the expectations read, for a batch that holds only those (None: an expectation names its
        columns otherwise, e.g. ``column_list`` or ``column_A``, so the batch keeps every column)."""
        if any(k.startswith("column") and k != "column" for e in self.expectations for k in e["kwargs"]):
            return None
        return sorted({e["kwargs"]["column"] for e in self.expectations if "column" in e["kwargs"]})

    def parameters(self, expectation: dict[str, Any]) -> set[str]:
        """Names of the suite parameters an expectation refers to."""
        return set().union(*(_PARAMETER_NAME.findall(v["$PARAMETER"]) for v in _parameter_refs(expectation["kwargs"])))

    def resolvable(self, values: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Split the expectations into those whose parameters all have values, and those left out."""
        kept, left_out = [], []
        for exp in self.expectations:
            missing = {p for p in self.parameters(exp) if values.get(p) is None}
            (left_out if missing else kept).append(exp)
        return kept, left_out


def _parameter_refs(kwargs: dict[str, Any]) -> list[dict[str, str]]:
    return [v for v in kwargs.values() if isinstance(v, dict) and "$PARAMETER" in v]


def load(gate: str, root: Path = EXPECTATIONS_DIR) -> list[Suite]:
    """Every suite of ``gate``, sorted by file name."""
    if gate not in GATES:
        raise BrechaError(f"unknown suite {gate!r}: choose one of {', '.join(GATES)} or 'all'")
    suites = []
    for path in sorted((root / gate).glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            suites.append(Suite(gate, doc["name"], doc["meta"]["asset"], tuple(doc["expectations"]), path))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise BrechaError(f"{path}: not a valid expectation suite ({err}). Fix the JSON: it needs 'name', "
                              f"'meta.asset' and a list of 'expectations' with 'type' and 'kwargs'.") from err
    if not suites:
        raise BrechaError(f"no expectation suites found in {root / gate}")
    return suites
