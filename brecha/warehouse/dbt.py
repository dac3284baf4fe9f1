"""Run dbt programmatically (dbtRunner) against dbt_project/ with the profile that points at $BRECHA_HOME."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from brecha.core.db import LOCK_BACKOFF
from brecha.core.errors import BrechaError, GateFailed
from brecha.core.files import write_atomic
from brecha.core.lake import ducklake_path
from brecha.core.settings import DBT_PROJECT_DIR, EXTENSION_DIR, Paths, Settings, current, paths


@dataclass
class DbtSummary:
    command: str
    passed: int = 0
    failed: int = 0
    warned: int = 0
    skipped: int = 0
    models: int = 0
    tests_passed: int = 0
    failures: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"dbt {self.command}: {self.models} models, {self.tests_passed} tests passed, "
                f"{self.failed} failed, {self.warned} warned, {self.skipped} skipped")


def dbt_env(home: Path | None = None, settings: Settings | None = None) -> dict[str, str]:
    """Environment of every dbt invocation, the CLI's and the Cosmos tasks' alike: BRECHA_HOME (read by profiles.yml),
    the project and profile folders, dbt's target and logs under the home, and the profile's target: ``local`` (the
    embedded file) or ``lake`` (its attach path, data path and the extensions' folder). Telemetry and colours are dbt
    ``flags:`` in dbt_project.yml, not environment variables."""
    if settings is None and home is None:
        settings = current()
    p = settings.paths if settings is not None else Paths(home)
    p.ensure()
    lake = {"BRECHA_DBT_TARGET": "local"}
    if settings is not None and settings.storage == "lake":
        lake = {"BRECHA_DBT_TARGET": "lake", "DBT_ENV_SECRET_BRECHA_LAKE_ATTACH": ducklake_path(settings.lake),
                "BRECHA_DBT_LAKE_DATA": settings.lake_data, "BRECHA_DBT_EXTENSION_DIR": str(EXTENSION_DIR)}
    return {
        **lake,
        "BRECHA_HOME": str(p.home),
        "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
        "DBT_PROJECT_DIR": str(DBT_PROJECT_DIR),
        "DBT_TARGET_PATH": str(p.dbt_target),  # runtime state stays under $BRECHA_HOME
        "DBT_LOG_PATH": str(p.dbt_logs),
        "BRECHA_LOCK_ATTEMPTS": str(LOCK_BACKOFF.attempts),  # profiles.yml's retries (brecha.core.db.LOCK_BACKOFF)
    }


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` set in this process's environment for the duration of the block (dbtRunner reads its project,
    profile and BRECHA_HOME from there), the previous values restored afterwards, unset ones removed again."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def invoke(args: list[str]) -> DbtSummary:
    """Invoke one dbt command in this process with dbt's ``dbtRunner``, as the DAG's Cosmos tasks do
    (``InvocationMode.DBT_RUNNER``), and summarise its results; raise GateFailed on any failure. The warehouse is
    released afterwards (``release_warehouse``)."""
    from dbt.cli.main import dbtRunner

    cli_args = list(args)
    if not current().verbose:  # dbt's START/PASS line per node goes to its log file only; errors still show
        cli_args.append("--quiet")
    if sys.stdout.isatty():
        cli_args.append("--use-colors")  # a terminal: colours (off in the project's flags for logs, pipes, Airflow)
    try:
        with _environment(dbt_env()):  # the home, the project and profile folders: for this invocation only
            res = dbtRunner().invoke(cli_args)
    finally:
        release_warehouse()
    summary = DbtSummary(command=args[0])
    for r in getattr(res.result, "results", None) or []:
        status = str(r.status).lower()
        kind = getattr(r.node, "resource_type", "")
        if kind == "model" and status == "success":
            summary.models += 1
        if status in ("success", "pass"):
            summary.passed += 1
            if kind in ("test", "unit_test"):
                summary.tests_passed += 1
        elif status in ("error", "fail", "runtime error"):
            summary.failed += 1
            summary.failures.append(f"{r.node.unique_id}: {r.message}")
        elif status == "warn":
            summary.warned += 1
        elif status == "skipped":
            summary.skipped += 1
    if not res.success or summary.failed:
        detail = "; ".join(summary.failures[:5]) or str(res.exception or "see the dbt log above")
        raise GateFailed(f"dbt {' '.join(args)} failed: {detail}")
    return summary


def release_warehouse(*_args: object, **_kwargs: object) -> None:
    """Let go of the warehouse file after a dbtRunner invocation in this process, with public APIs only: dbt's
    ``reset_adapters`` closes the adapter's connections (Cosmos does the same after each invocation), and dbt-duckdb's
    ``close_all_connections`` (what dbt-duckdb itself runs at exit) drops the database it keeps open for the whole
    process (``keep_open``, its default: closing the file after every model costs 8-20 s per build here). Then
    read-only connections of this process and other processes can open the file. ``invoke`` calls it; the DAG's dbt
    producer tasks call it as their Cosmos ``callback`` (its arguments are ignored)."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    from dbt.adapters.factory import reset_adapters

    reset_adapters()
    DuckDBConnectionManager.close_all_connections()


def build(select: str | None = None, exclude: str | None = None) -> DbtSummary:
    args = ["build"]
    if select:
        args += ["--select", select]
    if exclude:
        args += ["--exclude", exclude]
    return invoke(args)


def docs() -> str:
    """Generate the dbt docs site; ``--static`` also writes ``static_index.html``, one file with the manifest and
    catalog inlined, which a browser opens from a file (``index.html`` needs a web server: ``brecha docs --serve``)."""
    from brecha.core.runlock import hold

    with hold():
        invoke(["docs", "generate", "--static"])
    return str(docs_dir() / "static_index.html")


def docs_dir():
    return paths().dbt_target


def serve_docs(port: int = 8081, host: str = "127.0.0.1") -> None:
    """Serve the generated docs site (index.html, manifest.json, catalog.json) over HTTP until interrupted."""
    import functools
    import http.server

    folder = docs_dir()
    if not (folder / "index.html").exists():
        raise BrechaError(f"no docs site in {folder}: run `brecha docs` first")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    with http.server.ThreadingHTTPServer((host, port), handler) as server:
        print(f"dbt docs on http://{host}:{port}/ (from {folder}); Ctrl-C stops it", file=sys.stderr, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


# --- the parsed project (manifest.json), shared by every BRECHA_HOME ----------------------------------------------
# A manifest describes the dbt project, not the warehouse: it does not depend on the DuckDB path, so one manifest
# in the project's own target folder serves every $BRECHA_HOME. It is tagged with a digest of the files dbt reads,
# so a changed model, macro, test or setting is noticed (``manifest_is_current``) and the project re-parsed.
MANIFEST_DIR = DBT_PROJECT_DIR / "target"
MANIFEST = MANIFEST_DIR / "manifest.json"
_DIGEST = MANIFEST_DIR / "manifest.sha256"
_PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "packages.yml", "selectors.yml")
_PROJECT_FOLDERS = ("models", "macros", "tests", "seeds", "snapshots", "analyses")


def project_digest() -> str:
    """sha256 of every file dbt parses in dbt_project/ (names and contents): a few milliseconds."""
    import hashlib

    h = hashlib.sha256()
    files = [DBT_PROJECT_DIR / f for f in _PROJECT_FILES]
    for folder in _PROJECT_FOLDERS:
        files += sorted(p for p in (DBT_PROJECT_DIR / folder).rglob("*") if p.is_file())
    for path in files:
        if path.is_file():
            h.update(str(path.relative_to(DBT_PROJECT_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def manifest_is_current() -> bool:
    try:
        return MANIFEST.is_file() and _DIGEST.read_text().strip() == project_digest()
    except OSError:
        return False


def parse_project(force: bool = False) -> Path:
    """``dbt parse`` into dbt_project/target/ (manifest.json) unless the manifest there is current; return its path.

    Run by ``make install``, ``brecha airflow`` and, when the manifest is missing or stale, by the DAG file itself.
    It runs in its own process (the DAG processor must not keep dbt's adapter state), with a scratch home."""
    import subprocess
    import tempfile

    if not force and manifest_is_current():
        return MANIFEST
    digest = project_digest()
    MANIFEST_DIR.mkdir(parents=True, exist_ok=True)
    dbt = os.path.join(os.path.dirname(sys.executable), "dbt")
    with tempfile.TemporaryDirectory(prefix="brecha-dbt-parse-") as scratch:
        home = Paths(Path(scratch))
        proc = subprocess.run([dbt, "parse", "--no-partial-parse"], env={**os.environ, **dbt_env(home.home)},
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise GateFailed(f"`dbt parse` of {DBT_PROJECT_DIR} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        # atomic: a DAG parse at the same moment reads the old or the new one
        write_atomic(MANIFEST, (home.dbt_target / "manifest.json").read_bytes())
    _DIGEST.write_text(digest + "\n")
    return MANIFEST
