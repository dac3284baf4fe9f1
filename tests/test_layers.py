"""The house's layers: the stages import one way, down the data's trip (import-linter's contract in pyproject.toml),
and no module imports itself back through others (grimp's graph of brecha and brecha_ml, lazy imports and
``TYPE_CHECKING`` ones included)."""

from __future__ import annotations

import graphlib
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_cycle():
    graph = grimp.build_graph("brecha", "brecha_ml", exclude_type_checking_imports=False)
    deps = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    try:
        list(graphlib.TopologicalSorter(deps).static_order())
    except graphlib.CycleError as err:
        raise AssertionError(f"import cycle: {' -> '.join(err.args[1])}") from None


def test_stages_import_down_the_data_trip_only():
    """``lint-imports`` checks the layers contract; an upward import (say the gate ledger reading the orchestrator's
    selectors, as it once did) breaks it and names the import chain."""
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout


def test_an_upward_import_is_caught():
    """The contract is live: the same graph with one extra edge from a lower stage to a higher one breaks it."""
    graph = grimp.build_graph("brecha", "brecha_ml")
    graph.add_import(importer="brecha.warehouse.gates", imported="brecha.orchestrate.pipeline")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c["layers"] for c in config["contracts"] if c["type"] == "layers")
    assert graph.find_illegal_dependencies_for_layers(layers=layers)
    graph.remove_import(importer="brecha.warehouse.gates", imported="brecha.orchestrate.pipeline")
    assert not graph.find_illegal_dependencies_for_layers(layers=layers)
