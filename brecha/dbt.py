"""Run dbt programmatically (dbtRunner) against dbt_project/ with the profile that points at $BRECHA_HOME."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from brecha.config import DBT_PROJECT_DIR, paths
from brecha.errors import BrechaError, GateFailed


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


def dbt_env() -> dict[str, str]:
    """Environment dbt needs: BRECHA_HOME (read by profiles.yml) and no telemetry."""
    home = paths().ensure().home
    env = {
        "BRECHA_HOME": str(home),
        "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
        "DBT_PROJECT_DIR": str(DBT_PROJECT_DIR),
        "DBT_TARGET_PATH": str(home / "dbt_target"),  # runtime state stays under $BRECHA_HOME
        "DBT_LOG_PATH": str(home / "dbt_logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    }
    if not sys.stdout.isatty():  # logs, pipes, Airflow: no ANSI colour codes (unless the user set DBT_USE_COLORS)
        env["DBT_USE_COLORS"] = os.environ.get("DBT_USE_COLORS", "False")
    os.environ.update(env)
    return env


def invoke(args: list[str]) -> DbtSummary:
    """Invoke one dbt command in-process and summarise its results; raise GateFailed on any failure."""
    from dbt.cli.main import dbtRunner

    dbt_env()
    cli_args = [*args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    try:
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


def release_warehouse() -> None:
    """Close the DuckDB database that dbt-duckdb keeps open in this process after an in-process invoke.

    dbt-duckdb caches its environment (and so the open database file, with its write lock) at class level;
    left open, it blocks other processes and read-only connections of this one until the process exits.
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        env, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None
        if env is not None:
            env.close()


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
    from brecha.runlock import hold

    with hold():
        invoke(["docs", "generate", "--static"])
    return str(docs_dir() / "static_index.html")


def docs_dir():
    return paths().home / "dbt_target"


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
