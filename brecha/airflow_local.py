"""`brecha airflow` (``make airflow``): a local Airflow 3 with the brecha_pipeline DAG, state under $BRECHA_HOME/airflow.

Also the small amount of Airflow glue the DAG in dags/ shares: the environment every Airflow process and
Cosmos dbt task needs, and ``run_step``, which turns a user-fixable ``BrechaError`` (bad input, failed
gate) into a failure that is not retried, while transient errors (a DuckDB lock) keep their retries.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from brecha.config import DAGS_DIR, paths
from brecha.errors import BrechaError

POOL = "brecha_warehouse"  # every task that writes the warehouse runs in this one-slot pool
POOL_DESCRIPTION = "DuckDB allows one writer: tasks that write the warehouse take turns"
BIN = Path(sys.executable).parent  # the venv's bin: airflow, dbt


def airflow_env(home: Path | None = None) -> dict[str, str]:
    """Environment for every Airflow process of this project (scheduler, DAG processor, tasks, tests)."""
    home = home or paths().ensure().home
    airflow_home = home / "airflow"
    return {
        "BRECHA_HOME": str(home),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",  # schedule=None: it runs only when triggered
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "180",  # Cosmos may run `dbt ls` while parsing
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "240",
        "AIRFLOW__COSMOS__CACHE_DIR": str(airflow_home / "cosmos_cache"),
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
    }


def dbt_task_env(home: Path | None = None) -> dict[str, str]:
    """Environment of the Cosmos dbt tasks: the profile reads BRECHA_HOME; target and logs stay under it."""
    home = home or paths().ensure().home
    return {
        "BRECHA_HOME": str(home),
        "DBT_TARGET_PATH": str(home / "dbt_target"),
        "DBT_LOG_PATH": str(home / "dbt_logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    }


def run_step(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call one ``brecha.steps`` function for an Airflow task and return its result."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        return fn(*args, **kwargs)
    except BrechaError as err:  # the input or a gate is wrong: retrying cannot help
        raise AirflowFailException(str(err)) from err


def _airflow(args: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run([str(BIN / "airflow"), *args], env={**os.environ, **env}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BrechaError(f"`airflow {' '.join(args)}` failed (AIRFLOW_HOME={env['AIRFLOW_HOME']}):\n"
                          f"{(proc.stdout + proc.stderr)[-2000:]}")


def prepare(env: dict[str, str] | None = None) -> dict[str, str]:
    """Migrate the metadata database and create the one-slot warehouse pool; return the environment."""
    env = env or airflow_env()
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    _airflow(["db", "migrate"], env)
    _airflow(["pools", "set", POOL, "1", POOL_DESCRIPTION], env)
    return env


def standalone() -> None:
    """Run ``airflow standalone`` (web UI on http://localhost:8080) until interrupted."""
    env = prepare()
    print(f"Airflow home: {env['AIRFLOW_HOME']} (admin password: see the log below or "
          f"{env['AIRFLOW_HOME']}/simple_auth_manager_passwords.json.generated)", file=sys.stderr)
    # standalone starts its components as `airflow ...` subprocesses: the venv's bin must come first on PATH
    path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    os.execve(str(BIN / "airflow"), [str(BIN / "airflow"), "standalone"], {**os.environ, **env, "PATH": path})
