"""Settings are built once, at an entry point, and passed down: no other module reads the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from brecha.core.settings import Settings, current, paths, using

ROOT = Path(__file__).resolve().parents[1]
# The entry points: they build the settings from the environment (``Settings.from_env(os.environ)``).
ENTRY_POINTS = {
    "brecha/orchestrate/cli.py",
    "brecha/serve/api/app.py",
    "dags/brecha_pipeline.py",
    "dags/run_dag_test.py",
}
# Functions that set variables for one call and restore what was there before (which needs the previous values).
SAVE_AND_RESTORE = {("brecha/warehouse/dbt.py", "_environment")}


def environment_reads(source: str, allowed_functions: frozenset[str] = frozenset()) -> list[int]:
    """Lines that read the environment or build settings from it: any use of ``os.environ`` or ``os.getenv`` (``os``
    under any alias: ``import os as o``), ``from os import environ / getenv``, and any ``from_env(...)`` call. Not
    reads: handing the whole environment on to a child process as its ``env=`` (``{**os.environ, ...}``,
    ``dict(os.environ)``) and setting a variable for one (``os.environ[...] = ...``, ``del os.environ[...]``,
    ``os.environ.update(...)`` as a statement). Uses inside ``allowed_functions`` (save-and-restore helpers) pass."""
    tree = ast.parse(source)
    parent: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parent[child] = node
    os_names = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "os" or alias.name.startswith("os.")
    }
    os_names = {name.split(".")[0] for name in os_names}

    def passed_on_or_set(node: ast.Attribute) -> bool:
        up = parent.get(node)
        if node.attr != "environ":
            return False
        if isinstance(up, ast.Subscript) and isinstance(up.ctx, ast.Store | ast.Del):
            return True  # os.environ[...] = ... / del os.environ[...]
        if (
            isinstance(up, ast.Attribute)
            and up.attr == "update"
            and isinstance(call := parent.get(up), ast.Call)
            and isinstance(parent.get(call), ast.Expr)
        ):
            return True  # os.environ.update(...) as a statement
        if isinstance(up, ast.Dict) and node in up.values and up.keys[up.values.index(node)] is None:
            up = parent.get(up)  # {**os.environ, ...}
        elif isinstance(up, ast.Call) and isinstance(up.func, ast.Name) and up.func.id == "dict" and up.args == [node]:
            up = parent.get(up)  # dict(os.environ)
        else:
            return False
        return isinstance(up, ast.keyword) and up.arg == "env"

    def inside_allowed(node: ast.AST) -> bool:
        while (node := parent.get(node)) is not None:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in allowed_functions:
                return True
        return False

    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "getenv")
            and isinstance(node.value, ast.Name)
            and node.value.id in os_names
            and not passed_on_or_set(node)
        ):
            lines.append(node.lineno)
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and {a.name for a in node.names} & {"environ", "getenv"}
        ):
            lines.append(node.lineno)
        elif isinstance(node, ast.Call) and (
            (isinstance(node.func, ast.Attribute) and node.func.attr == "from_env")
            or (isinstance(node.func, ast.Name) and node.func.id == "from_env")
        ):
            lines.append(node.lineno)
        else:
            continue
        if inside_allowed(node):
            lines.pop()
    return sorted(set(lines))


def test_no_module_outside_the_entry_points_reads_the_environment():
    files = [*ROOT.glob("brecha/**/*.py"), *ROOT.glob("ml/**/*.py"), *ROOT.glob("dags/*.py")]
    found = {}
    for f in files:
        name = str(f.relative_to(ROOT))
        allowed = frozenset(fn for module, fn in SAVE_AND_RESTORE if module == name)
        if name not in ENTRY_POINTS and (lines := environment_reads(f.read_text(), allowed)):
            found[name] = lines
    assert found == {}, f"modules reading the environment themselves (take a Settings instead): {found}"
    assert len(files) > 80


def test_the_scan_finds_each_kind_of_read():
    reads = (
        'import os\nos.getenv("A")\nos.environ.get("A")\nos.environ["A"]\n"A" in os.environ\n'
        'os.environ.setdefault("A", "1")\nfrom os import environ\nSettings.from_env(os.environ)\n'
        'env = os.environ\nenv.get("A")\ndict(os.environ).get("A")\nf(os.getenv)\nfrom_env({})\n'
        "x = {**os.environ}\n"
    )
    assert environment_reads(reads) == [2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14]
    assert environment_reads('import os as o\no.getenv("A")\nimport os.path\nos.environ\n') == [2, 4]
    passing_on = (
        'import os\nsubprocess.run(c, env={**os.environ, "A": "1"})\nos.environ["A"] = "1"\n'
        'os.environ.update(env)\nPopen(c, env=dict(os.environ))\ndel os.environ["A"]\n'
    )
    assert environment_reads(passing_on) == []
    restore = 'import os\ndef restore():\n    return os.environ.get("A")\n'
    assert environment_reads(restore) == [3]
    assert environment_reads(restore, frozenset({"restore"})) == []


def test_settings_from_the_environment_and_in_effect(tmp_path: Path):
    s = Settings.from_env(
        {
            "BRECHA_HOME": str(tmp_path / "h"),
            "BRECHA_DUCKDB_MEMORY": "1GB",
            "BRECHA_LOCK_WAIT": "2.5",
            "BRECHA_RUN_OWNER": "airflow:x/y",
        },
        seed=7,
    )
    assert (s.home, s.storage, s.seed, s.memory_cap, s.lock_wait, s.run_owner) == (
        (tmp_path / "h").resolve(),
        "embedded",
        7,
        "1GB",
        2.5,
        "airflow:x/y",
    )
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
