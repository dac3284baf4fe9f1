"""Settings: one frozen object built once at an entry point (the CLI, the DAG file, the API's app factory) and passed
down to the steps; and every runtime path, derived from one home folder (``Paths``).

Only the entry points read the environment (``Settings.from_env(os.environ)``; tests/test_settings.py checks that no
other module does). A step receives its ``Settings`` and puts it in effect for the libraries it calls while it runs
(``using``); they find it with ``current()`` / ``paths()``, a context variable (per thread and per asyncio task), so
nothing global is left behind between two callers.
"""

from __future__ import annotations

import contextvars
import dataclasses
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
GRAFANA_DIR = PROJECT_ROOT / "grafana"
DAGS_DIR = PROJECT_ROOT / "dags"
DEFAULT_SEED = 42
DEFAULT_HOME = PROJECT_ROOT / "warehouse"
# DuckDB's extensions, copied by `make install` from the duckdb-extension-* wheels (brecha.core.db.install_extensions):
# one folder per environment, so no process ever downloads one
EXTENSION_DIR = Path(sys.prefix) / "duckdb_extensions"

# The environment an entry point reads (``Settings.from_env``) and hands on to the processes it starts (dbt, Airflow).
HOME_ENV = "BRECHA_HOME"
MEMORY_ENV = "BRECHA_DUCKDB_MEMORY"  # DuckDB's memory cap while landing, e.g. 3GB
LOCK_WAIT_ENV = "BRECHA_LOCK_WAIT"  # seconds a step waits for the home's run lock (default 0: stop at once)
OWNER_ENV = "BRECHA_RUN_OWNER"  # the DAG run whose claim on the home a task process may pass ("airflow:<run>")
AIRFLOW_HOST_ENV = "BRECHA_AIRFLOW_HOST"  # where `brecha airflow` listens (default 127.0.0.1: this machine only)
AIRFLOW_PORT_ENV = "AIRFLOW__API__PORT"
LAKE_ENV = "BRECHA_LAKE"  # postgresql://user:password@host:port/db of a DuckLake catalog: storage "lake" (lake.env)
LAKE_DATA_ENV = "BRECHA_LAKE_DATA"  # the lake's data path (Parquet files)
LAKE_READER_ENV = "BRECHA_LAKE_READER"  # the catalog as a role that may only read it (readers attach with it)


@dataclass(frozen=True)
class Paths:
    """Every runtime path, derived from one home folder."""

    home: Path

    @property
    def db(self) -> Path:
        return self.home / "brecha.duckdb"

    @property
    def dbt_target(self) -> Path:
        """dbt's target folder for this home (run results, the docs site, the manifest of the last build)."""
        return self.home / "dbt_target"

    @property
    def archive(self) -> Path:
        """Original extracts, stored by checksum, so the raw layer can be rebuilt from here alone."""
        return self.home / "archive"

    @property
    def extracts(self) -> Path:
        """Default folder for the synthetic extracts that ``brecha run`` generates."""
        return self.home / "extracts"

    @property
    def artifacts(self) -> Path:
        """Model artifacts, one folder per run and model."""
        return self.home / "artifacts"

    @property
    def serving(self) -> Path:
        return self.home / "serving"

    @property
    def serving_db(self) -> Path:
        return self.serving / "brecha.duckdb"

    @property
    def snapshots(self) -> Path:
        """The kept copies of published serving files (``brecha publish --list``), one ``<snapshot id>.duckdb`` each."""
        return self.serving / "snapshots"

    @property
    def publish_lock(self) -> Path:
        """Held by one publish, rollback or serve at a time."""
        return self.serving / ".publish.lock"

    @property
    def ledger_pending(self) -> Path:
        """What the snapshot ledger must record once the swap under way is done (``brecha.warehouse.publish``)."""
        return self.serving / ".ledger-pending.json"

    @property
    def atlas(self) -> Path:
        """The static HTML atlas (``brecha atlas``)."""
        return self.home / "atlas" / "index.html"

    @property
    def dbt_logs(self) -> Path:
        return self.home / "dbt_logs"

    @property
    def run_lock(self) -> Path:
        """Held by the process running a pipeline step on this home (``brecha.core.runlock``)."""
        return self.home / ".run.lock"

    @property
    def run_claim(self) -> Path:
        """Written by a DAG run that claims the home for all its tasks (``brecha.core.runlock.claim``)."""
        return self.home / ".run.claim"

    @property
    def gx(self) -> Path:
        """Great Expectations data docs and validation results."""
        return self.home / "gx"

    @property
    def airflow(self) -> Path:
        return self.home / "airflow"

    @property
    def lake(self) -> Path:
        """The lake's own server and data, when this home runs one (``make lake-up``, ``brecha.core.lake``)."""
        return self.home / "lake"

    @property
    def lake_pgdata(self) -> Path:
        """The PostgreSQL cluster holding the lake's catalog."""
        return self.lake / "pg"

    @property
    def lake_log(self) -> Path:
        return self.lake / "postgresql.log"

    @property
    def lake_data(self) -> Path:
        """The DuckLake data path: the Parquet files."""
        return self.lake / "data"

    @property
    def lake_env(self) -> Path:
        """The lake's settings (``BRECHA_LAKE``, ...) that a shell sources; mode 0600."""
        return self.home / "lake.env"

    def ensure(self) -> Paths:
        self.home.mkdir(parents=True, exist_ok=True)
        return self


# "embedded": the one DuckDB file under home (the default); "lake": a DuckLake catalog in PostgreSQL (``lake``) with
# Parquet data under ``lake_data`` (README "Past one machine: the lake"; brecha.core.lake)
Storage = Literal["embedded", "lake"]


@dataclass(frozen=True)
class Settings:
    """What a run needs to know about where and how it runs; built once at the entry point, never changed."""

    home: Path = DEFAULT_HOME
    storage: Storage = "embedded"
    seed: int = DEFAULT_SEED
    memory_cap: str = "3GB"  # DuckDB's memory_limit while landing
    lock_wait: float = 0.0  # seconds a step waits for the home's run lock held by another process
    run_owner: str | None = None  # the DAG run whose claim on the home this process may pass
    airflow_host: str = "127.0.0.1"
    airflow_port: int = 8080
    verbose: bool = False  # dbt's per-node lines on the console too (always in <home>/dbt_logs/dbt.log)
    lake: str | None = field(default=None, repr=False)  # the catalog's postgresql:// address (holds its password)
    lake_data: str | None = None  # the lake's data path
    lake_reader: str | None = field(default=None, repr=False)  # the catalog's address for readers (read-only role)

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home).expanduser().resolve())
        if self.storage not in ("embedded", "lake"):
            raise ValueError(f"storage {self.storage!r}: 'embedded' (the DuckDB file under the home) or 'lake'")
        if (self.storage == "lake") != bool(self.lake and self.lake_data):
            raise ValueError(f"storage {self.storage!r} with lake={'set' if self.lake else None}, lake_data="
                             f"{self.lake_data!r}: the lake takes both {LAKE_ENV} and {LAKE_DATA_ENV} (`make lake-up` "
                             "writes them to $BRECHA_HOME/lake.env), the embedded file neither")

    @property
    def paths(self) -> Paths:
        return Paths(self.home)

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: object) -> Settings:
        """The settings an entry point runs with: ``environ`` (the process environment) and the command's options."""
        values: dict[str, object] = {"home": Path(environ.get(HOME_ENV) or DEFAULT_HOME)}
        if environ.get(MEMORY_ENV):
            values["memory_cap"] = environ[MEMORY_ENV]
        if environ.get(LOCK_WAIT_ENV):
            values["lock_wait"] = float(environ[LOCK_WAIT_ENV])
        if environ.get(OWNER_ENV):
            values["run_owner"] = environ[OWNER_ENV]
        if environ.get(AIRFLOW_HOST_ENV):
            values["airflow_host"] = environ[AIRFLOW_HOST_ENV]
        if environ.get(AIRFLOW_PORT_ENV):
            values["airflow_port"] = int(environ[AIRFLOW_PORT_ENV])
        if environ.get(LAKE_ENV) or environ.get(LAKE_DATA_ENV):
            values.update(storage="lake", lake=environ.get(LAKE_ENV), lake_data=environ.get(LAKE_DATA_ENV),
                          lake_reader=environ.get(LAKE_READER_ENV) or None)
        return cls(**{**values, **overrides})

    def env(self) -> dict[str, str]:
        """The environment that hands these settings to a child process (dbt, an Airflow task, `brecha` itself)."""
        env = {HOME_ENV: str(self.home), MEMORY_ENV: self.memory_cap, LOCK_WAIT_ENV: str(self.lock_wait)}
        if self.run_owner:
            env[OWNER_ENV] = self.run_owner
        if self.storage == "lake":
            env.update({LAKE_ENV: self.lake, LAKE_DATA_ENV: self.lake_data})
            if self.lake_reader:
                env[LAKE_READER_ENV] = self.lake_reader
        return env


_CURRENT: contextvars.ContextVar[Settings | None] = contextvars.ContextVar("brecha_settings", default=None)


@contextmanager
def using(settings: Settings) -> Iterator[Settings]:
    """Put ``settings`` in effect for the code called inside the block (a step's libraries); restored afterwards."""
    token = _CURRENT.set(settings)
    try:
        yield settings
    finally:
        _CURRENT.reset(token)


def current() -> Settings:
    """The settings in effect (``using``); a step or an entry point must have put them there."""
    settings = _CURRENT.get()
    if settings is None:
        raise RuntimeError("no brecha settings in effect: an entry point builds them (Settings.from_env) and a step "
                           "puts them in effect (brecha.core.settings.using)")
    return settings


def paths() -> Paths:
    """The paths of the settings in effect."""
    return current().paths
