"""`brecha airflow` (``make airflow``): a local Airflow 3 with the brecha_pipeline DAG, state under $BRECHA_HOME/airflow.

Also the small amount of Airflow glue the DAG in dags/ shares: the environment every Airflow process needs (the
Cosmos dbt tasks get ``brecha.warehouse.dbt.dbt_env``, as the CLI's dbt does), and ``run_step``, which turns a user-fixable
``BrechaError`` (bad input, failed gate) into a failure that is not retried, while transient errors (a DuckDB lock)
keep their retries.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from brecha.core.errors import BrechaError
from brecha.core.settings import DAGS_DIR, Settings

POOL = "brecha_warehouse"  # every task that writes the warehouse runs in this one-slot pool
POOL_DESCRIPTION = "DuckDB allows one writer: tasks that write the warehouse take turns"
BIN = Path(sys.executable).parent  # the venv's bin: airflow, dbt
P = ParamSpec("P")
T = TypeVar("T")


def airflow_env(settings: Settings) -> dict[str, str]:
    """Environment for every Airflow process of this project (scheduler, DAG processor, tasks, tests): the settings
    (which the DAG file builds its own from) and Airflow's configuration."""
    p = settings.paths.ensure()
    airflow_home = p.airflow
    return {
        **settings.env(),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",  # schedule=None: it runs only when triggered
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "180",  # Cosmos may run `dbt ls` while parsing
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "240",
        "AIRFLOW__COSMOS__CACHE_DIR": str(airflow_home / "cosmos_cache"),
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__COSMOS__ENABLE_WATCHER_RELIABLE_RETRY": "False",  # producers never retry (dags/brecha_pipeline.py)
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        # sized to the machine, not Airflow's defaults (32 task slots, 4 API server workers, 2 DAG parsers): the
        # warehouse takes one writer at a time and the DAG is one file
        **machine_size(),
        "DO_NOT_TRACK": "1",
        # the API server and UI listen on this machine only; BRECHA_AIRFLOW_HOST=0.0.0.0 opens them to the network
        "AIRFLOW__API__HOST": settings.airflow_host,
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        # tasks report to the API server's execution API, on the port it listens on
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{settings.airflow_port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file(airflow_home)),
    }


def machine_size(cpus: int | None = None) -> dict[str, str]:
    """Airflow's pools of processes for this machine's cores: task slots for the writers' one at a time plus the dbt
    sensors (two per core), one API server worker and one DAG parser."""
    cpus = cpus or len(os.sched_getaffinity(0)) or 1
    slots = str(max(2, 2 * cpus))
    return {"AIRFLOW__CORE__PARALLELISM": slots, "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": slots,
            "AIRFLOW__API__WORKERS": "1", "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1"}


def password_file(airflow_home: Path) -> Path:
    return airflow_home / "simple_auth_manager_passwords.json.generated"


def ensure_password(airflow_home: Path, user: str = "admin") -> Path:
    """The simple auth manager's password file, created with a random password (readable by its owner only)
    before Airflow starts: Airflow prints a password to its log only when it generates one itself."""
    import json
    import secrets

    path = password_file(airflow_home)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        passwords = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except ValueError:
        passwords = {}
    if user not in passwords:
        passwords[user] = secrets.token_urlsafe(16)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(passwords) + "\n")
    os.chmod(path, 0o600)
    return path


def task_retries() -> dict[str, object]:
    """Airflow's retries of a task that met a transient error (a DuckDB lock held past its connections' own retries),
    with the project's one back-off (``brecha.core.db.LOCK_BACKOFF``)."""
    from datetime import timedelta

    from brecha.core.db import LOCK_BACKOFF

    delays = LOCK_BACKOFF.delays()
    return {"retries": len(delays), "retry_delay": timedelta(seconds=delays[0]),
            "retry_exponential_backoff": LOCK_BACKOFF.factor, "max_retry_delay": timedelta(seconds=delays[-1])}


def run_step(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call one ``brecha.orchestrate.steps`` function for an Airflow task and return its result (the DAG passes the
    task's settings, whose ``run_owner`` is the DAG run that claimed the home)."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        return fn(*args, **kwargs)
    except BrechaError as err:  # the input or a gate is wrong: retrying cannot help
        raise AirflowFailException(str(err)) from err


def dag_run_owner() -> str | None:
    """``airflow:<dag id>/<run id>`` of the DAG run this task belongs to (None outside a task)."""
    try:
        from airflow.sdk import get_current_context

        ctx = get_current_context()
    except Exception:  # noqa: BLE001 (not inside a running task)
        return None
    run = ctx.get("dag_run")
    return f"airflow:{run.dag_id}/{run.run_id}" if run is not None else None


def _airflow(args: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run([str(BIN / "airflow"), *args], env={**os.environ, **env}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BrechaError(f"`airflow {' '.join(args)}` failed (AIRFLOW_HOME={env['AIRFLOW_HOME']}):\n"
                          f"{(proc.stdout + proc.stderr)[-2000:]}")


def prepare(env: dict[str, str]) -> dict[str, str]:
    """Parse the dbt project (the manifest the DAG loads, when it changed), migrate the metadata database and create
    the one-slot warehouse pool; return the environment."""
    from brecha.warehouse.dbt import parse_project

    parse_project()
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    _airflow(["db", "migrate"], env)
    _airflow(["pools", "set", POOL, "1", POOL_DESCRIPTION], env)
    return env


# The components `airflow standalone` runs, each with the scheduler's and triggerer's own log server left out: Airflow
# starts that one (`serve-logs`) on every interface, with no setting to change it; `brecha airflow` runs it itself,
# on the API server's interface (``_serve_logs``).
COMPONENTS = {
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "api-server": ["api-server"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def loopback_hostname() -> str:
    """Airflow's ``[core] hostname_callable`` under `brecha airflow`: the host a task's running log is fetched from
    (the log server listens on 127.0.0.1, which the machine's name may not resolve to)."""
    return "127.0.0.1"


def serve_logs(host: str) -> None:
    """Airflow's task log server (what ``airflow scheduler`` starts as `serve-logs`), listening on ``host`` only."""
    import uvicorn
    from airflow.configuration import conf
    from setproctitle import setproctitle

    setproctitle("airflow serve-logs")
    uvicorn.run("airflow.utils.serve_logs.log_server:get_app", factory=True, host=host,
                port=conf.getint("logging", "worker_log_server_port"), log_config=None, access_log=False,
                log_level=conf.get("logging", "uvicorn_logging_level", fallback="info").lower())


def standalone(settings: Settings) -> None:
    """Run a local Airflow (web UI on http://127.0.0.1:8080, this machine only) until stopped: its scheduler, DAG
    processor, API server and triggerer, as `airflow standalone` runs them, and the task log server, every
    listening socket on ``AIRFLOW__API__HOST`` (127.0.0.1 unless BRECHA_AIRFLOW_HOST says otherwise).

    Ctrl-C, SIGTERM (to this process or its process group) or SIGHUP stops every process it started, their own
    children included: Airflow starts task processes in sessions of their own, which a signal to the process group
    never reaches, so this process adopts every descendant and stops them one by one (``brecha.core.lifetime``). Killed
    with SIGKILL, its components get SIGTERM from the kernel."""
    import signal
    import threading

    from brecha.core.lifetime import adopt_orphans, exit_with_parent, stop_tree

    env = prepare(airflow_env(settings))
    secret = ensure_password(Path(env["AIRFLOW_HOME"]))
    host, port = settings.airflow_host, settings.airflow_port
    env = {**env, "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "PYTHONUNBUFFERED": "1",
           "PATH": os.pathsep.join([str(BIN), *os.get_exec_path()])}
    if host in ("127.0.0.1", "localhost"):
        env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = f"{__name__}.loopback_hostname"
    print(f"Airflow home: {env['AIRFLOW_HOME']}; UI on http://{host}:{port} "
          f"(set BRECHA_AIRFLOW_HOST=0.0.0.0 to listen on every interface). User 'admin', password in {secret} "
          "(readable by you only; it is not printed). Ctrl-C stops every component.", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    adopt_orphans()
    me = os.getpid()
    commands = {name: [str(BIN / "airflow"), *args] for name, args in COMPONENTS.items()}
    commands["serve-logs"] = [sys.executable, "-c", f"from {__name__} import serve_logs; serve_logs({host!r})"]
    procs = {name: subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, preexec_fn=lambda: exit_with_parent(parent=me))
             for name, cmd in commands.items()}

    def relay(name: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(f"{name:13} | {line.decode(errors='replace').rstrip()}\n")
            sys.stdout.flush()

    for name, proc in procs.items():
        threading.Thread(target=relay, args=(name, proc), daemon=True).start()
    failed = None
    while not stop.wait(0.5):
        failed = next((name for name, proc in procs.items() if proc.poll() is not None), None)
        if failed:
            break
    print("stopping every Airflow component ...", file=sys.stderr, flush=True)
    left = stop_tree(me)
    if left:
        print(f"processes still running after SIGKILL: {left}", file=sys.stderr)
    if failed:
        raise BrechaError(f"Airflow's {failed} stopped (exit code {procs[failed].returncode}; its output is above), "
                          "so every other component was stopped too. Fix what it reports and run `brecha airflow` "
                          "again.")
