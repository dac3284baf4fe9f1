"""DuckDB connections with the project's settings and the offline extension wheels: the embedded warehouse file, or
the lake (storage "lake": DuckLake on PostgreSQL, attached as ``lake`` and made the current database)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from brecha.core.errors import BrechaError
from brecha.core.lake import ALIAS, attach_sql, redact
from brecha.core.settings import EXTENSION_DIR, current, paths

# Every extension the project loads, each from its duckdb-extension-<name> wheel (pinned in constraints.txt)
EXTENSIONS = ("excel", "ducklake", "postgres")
LAKE_EXTENSIONS = ("ducklake", "postgres")
# No extension is ever downloaded: they are found in EXTENSION_DIR or not at all
OFFLINE = {"extension_directory": str(EXTENSION_DIR), "autoinstall_known_extensions": False}


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
    False: fail at once, for a reader that must not wait). On the lake (no ``db``), an in-memory DuckDB with the lake
    attached and in use: ``raw.x`` and ``marts.y`` are the lake's."""
    if db is None and current().storage == "lake":
        return connect_lake(read_only=read_only, extensions=extensions)
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


def connect_lake(*, read_only: bool = False, extensions: tuple[str, ...] = (),
                 snapshot: int | None = None) -> duckdb.DuckDBPyConnection:
    """The lake of the settings in effect, attached as ``lake`` (``READ_ONLY``, or pinned to ``snapshot``) and in use;
    read-only, as the catalog's read-only role when the settings have it (``lake-up`` creates it)."""
    settings = current()
    con = duckdb.connect(config=OFFLINE)
    for name in (*LAKE_EXTENSIONS, *extensions):
        load_extension(con, name)
    dsn = settings.lake_reader if read_only and settings.lake_reader else settings.lake
    try:
        con.execute(attach_sql(dsn, settings.lake_data, read_only=read_only, snapshot=snapshot))
    except duckdb.Error as err:
        con.close()
        if (detail := catalog_fault(err)) is None:
            raise
        raise lake_unreachable(dsn or "", detail) from None
    con.execute(f"USE {ALIAS}")
    return con


_UNREACHABLE = re.compile(r'Unable to connect to Postgres(?: at "[^"]*")?:?\s*(.*)', re.DOTALL)


def catalog_fault(err: BaseException) -> str | None:
    """The first line of why DuckDB's attach could not reach the lake's catalog (its server down, a wrong port or
    password), or None for any other failure."""
    found = _UNREACHABLE.search(str(err))
    return (found.group(1).strip().splitlines() or ["no answer"])[0] if found else None


def lake_unreachable(dsn: str, detail: str, purpose: str = "") -> BrechaError:
    """The one message for a lake whose catalog cannot be reached (``connect_lake``, the run lock, ``brecha sql``,
    ``tools.lake_compare``): which catalog (password hidden), why, and what to do."""
    return BrechaError(f"the lake's catalog {redact(dsn)} cannot be reached{purpose} ({detail}): is its server up "
                       "(`make lake-up`), and were this shell's settings read from that home's lake.env "
                       "(`. $BRECHA_HOME/lake.env`)?")


def on_lake(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``con``'s current database is a DuckLake catalog."""
    return con.execute("SELECT type FROM duckdb_databases() WHERE database_name = current_database()").fetchone() \
        == ("ducklake",)


_KEYS = re.compile(r",\s*PRIMARY KEY\s*\([^)]*\)|\s+PRIMARY KEY\b|\s+UNIQUE\b", re.IGNORECASE)


def create_ddl(con: duckdb.DuckDBPyConnection, ddl: str) -> str:
    """``ddl`` for ``con``'s database: on the lake without PRIMARY KEY / UNIQUE, which DuckLake does not have (the
    keys there are kept by the writers, who take turns under the run lock, and by dbt's tests, not enforced)."""
    return _KEYS.sub("", ddl) if on_lake(con) else ddl


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Load ``name`` from EXTENSION_DIR (installed there from its ``duckdb-extension-<name>`` wheel when missing: no
    network)."""
    con.execute(f"SET extension_directory = '{EXTENSION_DIR}'")
    try:
        con.execute(f"LOAD {name}")
        return
    except duckdb.Error:
        pass
    install_extensions((name,))
    con.execute(f"LOAD {name}")


def install_extensions(names: tuple[str, ...] = EXTENSIONS) -> Path:
    """Copy ``names`` from their wheels into EXTENSION_DIR (``make install``; ``INSTALL`` of a local file, no
    network), unless there already; the folder."""
    import duckdb_extensions

    EXTENSION_DIR.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config=OFFLINE)
    try:
        installed = {r[0] for r in con.execute("SELECT extension_name FROM duckdb_extensions() WHERE installed")
                     .fetchall()}
        for name in names:
            if {name, f"{name}_scanner"}.isdisjoint(installed):  # the postgres wheel installs postgres_scanner
                try:
                    duckdb_extensions.import_extension(name, con=con)
                except ModuleNotFoundError:
                    raise BrechaError(f"DuckDB's {name} extension is not installed: run `make install` (it installs "
                                      f"the duckdb-extension-{name} package of constraints.txt)") from None
    finally:
        con.close()
    return EXTENSION_DIR


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
