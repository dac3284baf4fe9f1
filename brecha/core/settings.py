"""Where things live. All runtime state sits under one folder, ``$BRECHA_HOME`` (default ``warehouse/``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
GRAFANA_DIR = PROJECT_ROOT / "grafana"
DAGS_DIR = PROJECT_ROOT / "dags"
DEFAULT_SEED = 42


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
    def extensions(self) -> Path:
        return self.home / ".duckdb_extensions"

    def ensure(self) -> Paths:
        self.home.mkdir(parents=True, exist_ok=True)
        return self


def paths() -> Paths:
    """The paths for the current ``BRECHA_HOME`` (read at call time, so tests can change it)."""
    home = os.environ.get("BRECHA_HOME") or str(PROJECT_ROOT / "warehouse")
    return Paths(Path(home).expanduser().resolve())
