"""DuckDB connections with the project's settings and the offline extension wheels."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from brecha.core.settings import paths


@dataclass(frozen=True)
class Backoff:
    """How long to keep trying while another process holds the warehouse's write lock: ``attempts`` tries, waiting
    ``first`` seconds after the first failure and ``factor`` times longer after each next one."""

    attempts: int
    first: float
    factor: float = 2.0

    def delays(self) -> list[float]:
        return [self.first * self.factor**i for i in range(self.attempts - 1)]


# The one retry policy for DuckDB's lock (a writer holds the file for a moment): this process's connections
# (``connect``), dbt's (profiles.yml ``retries.connect_attempts``, from ``BRECHA_LOCK_ATTEMPTS``) and the Airflow tasks'
# retries (``brecha.orchestrate.airflow_local.task_retries``) all follow it: waits of 1, 2, 4, 8 and 16 s.
LOCK_BACKOFF = Backoff(attempts=6, first=1.0)


def connect(db: Path | None = None, *, read_only: bool = False, extensions: tuple[str, ...] = (),
            retry: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the warehouse (or ``db``), retrying with ``LOCK_BACKOFF`` while another writer holds the lock (``retry``
    False: fail at once, for a reader that must not wait)."""
    target = db or paths().ensure().db
    for pause in (*LOCK_BACKOFF.delays(), None) if retry else (None,):
        try:
            con = duckdb.connect(str(target), read_only=read_only)
            break
        except duckdb.IOException as err:
            if "lock" not in str(err).lower() or pause is None:
                raise
            time.sleep(pause)
    for name in extensions:
        load_extension(con, name)
    return con


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Install ``name`` from its ``duckdb-extension-<name>`` wheel (no network) and load it."""
    ext_dir = paths().ensure().extensions
    ext_dir.mkdir(parents=True, exist_ok=True)
    con.execute(f"SET extension_directory = '{ext_dir}'")
    try:
        con.execute(f"LOAD {name}")
        return
    except duckdb.Error:
        pass
    import duckdb_extensions

    duckdb_extensions.import_extension(name, con=con)
    con.execute(f"LOAD {name}")


@contextmanager
def session(db: Path | None = None, *, read_only: bool = False, extensions: tuple[str, ...] = ()) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(db, read_only=read_only, extensions=extensions)
    try:
        yield con
    finally:
        con.close()


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, name: str, catalog: str | None = None) -> bool:
    """Whether table ``schema.name`` exists in ``catalog`` (default: the connection's current database)."""
    return con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = coalesce(?, current_database()) "
        "AND schema_name = ? AND table_name = ?", [catalog, schema, name]).fetchone()[0] > 0
