"""Settings are built once, at an entry point, and passed down: no other module reads the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from brecha.core.settings import Settings, current, paths, using

ROOT = Path(__file__).resolve().parents[1]
# The entry points: they build the settings from the environment (``Settings.from_env(os.environ)``).
ENTRY_POINTS = {"brecha/orchestrate/cli.py", "brecha/serve/api/app.py", "dags/brecha_pipeline.py", "dags/run_dag_test.py",
                # the `python -m` scripts of two model modules (README figures, the withheld-departments study)
                "ml/clusters.py", "ml/withheld.py"}


def environment_reads(source: str) -> list[int]:
    """Lines that read a setting from the environment: ``os.getenv(...)``, ``os.environ.get(...)`` (or ``setdefault``,
    ``pop``), ``os.environ[...]`` read, ``... in os.environ``, and ``from os import environ / getenv``. Handing the
    whole environment on to a child process (``{**os.environ, ...}``, ``dict(os.environ)``) and setting a variable for
    one (``os.environ[...] = ...``, ``os.environ.update(...)``) are no reads of a setting."""

    def is_environ(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name)
                and node.value.id == "os")

    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f = node.func
            if f.attr == "getenv" and isinstance(f.value, ast.Name) and f.value.id == "os":
                lines.append(node.lineno)
            elif f.attr in ("get", "setdefault", "pop") and is_environ(f.value):
                lines.append(node.lineno)
        elif isinstance(node, ast.Subscript) and is_environ(node.value) and isinstance(node.ctx, ast.Load):
            lines.append(node.lineno)
        elif isinstance(node, ast.Compare) and any(is_environ(c) for c in node.comparators):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and {a.name for a in node.names} & {"environ",
                                                                                                          "getenv"}:
            lines.append(node.lineno)
    return sorted(lines)


def test_no_module_outside_the_entry_points_reads_the_environment():
    files = [*ROOT.glob("brecha/**/*.py"), *ROOT.glob("ml/**/*.py"), *ROOT.glob("dags/*.py")]
    found = {str(f.relative_to(ROOT)): lines for f in files
             if str(f.relative_to(ROOT)) not in ENTRY_POINTS and (lines := environment_reads(f.read_text()))}
    assert found == {}, f"modules reading the environment themselves (take a Settings instead): {found}"
    assert len(files) > 80


def test_the_scan_finds_each_kind_of_read():
    reads = ('import os\nos.getenv("A")\nos.environ.get("A")\nos.environ["A"]\n"A" in os.environ\n'
             'os.environ.setdefault("A", "1")\nfrom os import environ\n')
    assert environment_reads(reads) == [2, 3, 4, 5, 6, 7]
    passing_on = 'import os\nenv = {**os.environ, "A": "1"}\nos.environ["A"] = "1"\nos.environ.update(env)\n'
    assert environment_reads(passing_on) == []


def test_settings_from_the_environment_and_in_effect(tmp_path: Path):
    s = Settings.from_env({"BRECHA_HOME": str(tmp_path / "h"), "BRECHA_DUCKDB_MEMORY": "1GB",
                           "BRECHA_LOCK_WAIT": "2.5", "BRECHA_RUN_OWNER": "airflow:x/y"}, seed=7)
    assert (s.home, s.storage, s.seed, s.memory_cap, s.lock_wait, s.run_owner) == (
        (tmp_path / "h").resolve(), "embedded", 7, "1GB", 2.5, "airflow:x/y")
    assert Settings.from_env({}).home == (ROOT / "warehouse").resolve()
    with pytest.raises(AttributeError):
        s.seed = 1  # frozen
    with pytest.raises(ValueError, match="storage"):
        Settings(home=tmp_path, storage="lake")
    with pytest.raises(RuntimeError, match="no brecha settings in effect"):
        paths()
    with using(s):
        assert current() is s and paths().db == s.home / "brecha.duckdb"
        with using(s.replace(home=tmp_path / "other")):
            assert paths().home == (tmp_path / "other").resolve()
        assert paths().home == s.home
    with pytest.raises(RuntimeError):
        current()
