"""Shared fixtures. The expensive ones (a synthetic warehouse built end to end) are session-scoped.

Tests build settings (``brecha.core.settings.Settings``) and pass them to the steps, as the entry points do; the
fixtures that hand a test a home also put its settings in effect for the library code the test calls
(``brecha.core.settings.using``), and set ``BRECHA_HOME`` only for the ``brecha`` processes a test starts (an entry
point reads its environment). Nothing touches ./warehouse or another test's lock.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from brecha.core.settings import Settings, using

REPO = Path(__file__).resolve().parents[1]
REAL_DIR = (REPO / ".." / "shared" / "data" / "real").resolve()
TEST_SEED = 42
TEST_SCALE = 0.25  # smaller large tables (households, connections, populated centres) keep CI fast

# the lake's session fixtures (lake_home, lake_run), for every module that tests the lake
pytest_plugins = ["lake_fixtures"]


@pytest.fixture
def real_dir() -> Path:
    """The real extracts in ../shared/data/real; tests that need them skip with a reason when absent."""
    if not REAL_DIR.is_dir():
        pytest.skip(f"real extracts not found at {REAL_DIR} (the ../shared folder is absent on this machine)")
    return REAL_DIR


def free_port() -> int:
    """A TCP port free on the loopback interface now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings_for(home: Path, **options: object) -> Settings:
    """The settings a test passes to the steps for ``home`` (as an entry point builds them)."""
    return Settings(home=home, **options)


@pytest.fixture
def brecha_home(tmp_path: Path) -> Iterator[Path]:
    """A fresh, empty home for one test, its settings in effect."""
    home = tmp_path / "home"
    home.mkdir()
    with home_env(home):
        yield home


@pytest.fixture
def settings(brecha_home: Path) -> Settings:
    """The settings of ``brecha_home``."""
    return settings_for(brecha_home)


@pytest.fixture(scope="session")
def _session_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The home of the session's shared synthetic warehouse."""
    return tmp_path_factory.mktemp("pipeline_home")


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic extracts in the real layouts (seed 42, reduced scale), generated once per session."""
    from brecha.extract.synthetic import generate

    out = tmp_path_factory.mktemp("synthetic")
    with using(settings_for(tmp_path_factory.mktemp("synthetic_home"))):  # DuckDB's extensions (xlsx) live in a home
        generate(out, seed=TEST_SEED, scale=TEST_SCALE)
    return out


@dataclass
class PipelineRun:
    """The session's `brecha run` (extract, ingest, validate, dbt, train, dbt, clusters, dbt, publish, atlas): its
    home, its step results and everything it printed (progress, dbt's output, the closing summary)."""

    home: Path
    results: dict
    output: str

    @property
    def train(self):
        """What its `brecha train` step returned (the run id, the selected model, ...)."""
        return self.results["train"]


@pytest.fixture(scope="session")
def pipeline_run(_session_env: Path) -> PipelineRun:
    """The whole pipeline once per session, as `brecha run --seed 42 --scale 0.25` runs it (``run_all``, which the
    command calls; its output captured as a pipe would, without a terminal), in the session home. Every test that
    reads a landed, built, trained or clustered warehouse reads this one (tests/test_cli.py checks its summary,
    serving copy and atlas); tests that change a warehouse copy it first."""
    from brecha.orchestrate import pipeline

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        results = pipeline.run_all(settings_for(_session_env, seed=TEST_SEED), None, scale=TEST_SCALE)
    return PipelineRun(_session_env, results, out.getvalue())


@pytest.fixture(scope="session")
def real_run_home(real_run: PipelineRun) -> Path:
    """The home of the session's one real run (``real_run``): tests read its serving copy (Grafana's queries, the
    priority lenses, the what-if) and never change it."""
    return real_run.home


@pytest.fixture(scope="session")
def session_home(pipeline_run: PipelineRun) -> Path:
    """The home of the session's `brecha run` (``pipeline_run``): landed, built and gated, trained, clustered,
    published, the atlas drawn. Tests read it; a test that changes a warehouse copies it first (``own_home``)."""
    return pipeline_run.home


SESSION_HOMES = ("session_home", "pipeline_run")


@pytest.fixture(autouse=True)
def _session_home_in_effect(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that asks for the session's warehouse (``session_home``, ``pipeline_run``) runs with its settings in
    effect."""
    if not any(name in request.fixturenames for name in SESSION_HOMES):
        yield
        return
    with home_env(request.getfixturevalue("pipeline_run").home):
        yield


@pytest.fixture
def use_home() -> Iterator:
    """Put a home's settings in effect for the rest of one test: ``use_home(session_home)``."""
    with contextlib.ExitStack() as stack:

        def _use(home: Path) -> Path:
            stack.enter_context(home_env(home))
            return home

        yield _use


@contextlib.contextmanager
def own_home(src: Path, own: Path, artifacts: str | None = None) -> Iterator[Path]:
    """A home of a test's own made from the session home ``src``: a copy of its warehouse (its gates recorded, so it
    can be published) and, with ``artifacts`` "link" or "copy", its model artifacts; BRECHA_HOME points at it
    inside the block and is restored afterwards."""
    shutil.copyfile(src / "brecha.duckdb", own / "brecha.duckdb")
    if artifacts == "link":
        (own / "artifacts").symlink_to(src / "artifacts", target_is_directory=True)
    elif artifacts == "copy":
        shutil.copytree(src / "artifacts", own / "artifacts")
    with home_env(own):
        yield own


@contextlib.contextmanager
def home_env(home: Path) -> Iterator[Path]:
    """``home``'s settings in effect inside the block (and BRECHA_HOME set for the ``brecha`` processes started in it,
    which read their environment as every entry point does); both restored afterwards."""
    old = os.environ.get("BRECHA_HOME")
    os.environ["BRECHA_HOME"] = str(home)
    try:
        with using(settings_for(home)):
            yield home
    finally:
        if old is None:
            os.environ.pop("BRECHA_HOME", None)
        else:
            os.environ["BRECHA_HOME"] = old


@pytest.fixture(scope="session")
def real_run(_started_early: dict[str, Background], tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """The real extracts (../shared/data/real) through the whole pipeline once per session, `brecha run --input` in a
    home of its own (skips when ../shared is absent): its serving copy, atlas and report (``output``: what it printed,
    as a pipe or log file gets it; ``results`` stays empty, the run being another process). Started when the session
    starts (``_started_early``) when a collected test needs it, so it runs while other tests do."""
    if not REAL_DIR.is_dir():
        pytest.skip(f"real extracts not found at {REAL_DIR} (the ../shared folder is absent on this machine)")
    started = _started_early.get("real_run") or _start_real_run(tmp_path_factory)
    returncode, output, _ = started.wait()
    assert returncode == 0, f"`brecha run --input {REAL_DIR}` failed:\n{output[-5000:]}"
    return PipelineRun(started.home, {}, output)


# --- long runs started when the session starts ---------------------------------------------------------------------


@dataclass
class Background:
    """A command started in the background for a home: its exit status and output when a test first needs them.
    The session's long runs in processes of their own (the real extracts' `brecha run`, the DAG's two ``dag.test()``
    runs) are started before the first test, so they use the machine's second core while the other tests run; a
    run that no test ended up waiting for is stopped at the session's end."""

    home: Path
    proc: subprocess.Popen
    stdout: Path
    stderr: Path | None  # None: stderr went to the stdout file (one stream, in the order written)
    timeout: float

    def wait(self) -> tuple[int, str, str]:
        """Wait for the command (at most ``timeout`` seconds from now); its exit status, stdout and stderr."""
        try:
            returncode = self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        err = self.stderr.read_text(encoding="utf-8", errors="replace") if self.stderr else ""
        return returncode, self.stdout.read_text(encoding="utf-8", errors="replace"), err

    def stop(self) -> None:
        """Stop the command and every process it started (its own process group), if it still runs."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start(home: Path, args: list[str], env: dict[str, str], timeout: float, stderr_apart: bool = False) -> Background:
    """Start ``args`` in the background (a process group of its own, output to files beside ``home``)."""
    logs = home.parent
    out = logs / f"{home.name}.stdout.log"
    err = logs / f"{home.name}.stderr.log" if stderr_apart else None
    with out.open("wb") as stdout, err.open("wb") if err else contextlib.nullcontext() as stderr:
        proc = subprocess.Popen(
            args,
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr if err else subprocess.STDOUT,
            start_new_session=True,
        )
    return Background(home, proc, out, err, timeout)


def entry_point_env(settings: Settings) -> dict[str, str]:
    """The environment of a ``brecha`` process started for ``settings``: this one's, without any other BRECHA_*
    setting a developer's shell may hold (a sourced lake.env), unbuffered so that its output keeps its order."""
    own = {k: v for k, v in os.environ.items() if not k.startswith("BRECHA_")}
    return {**own, **settings.env(), "PYTHONUNBUFFERED": "1"}


def _start_real_run(tmp_path_factory: pytest.TempPathFactory) -> Background:
    home = tmp_path_factory.mktemp("real_run") / "home"
    home.mkdir()
    brecha = str(Path(sys.executable).with_name("brecha"))
    return start(home, [brecha, "run", "--input", str(REAL_DIR)], entry_point_env(settings_for(home)), timeout=1800)


@dataclass
class DagRuns:
    """The DAG test's two ``dag.test()`` runs (tests/test_dag.py), in one process (one Airflow start-up, one DAG
    parse) with its own AIRFLOW_HOME and BRECHA_HOME: first on a bad extract (the synthetic extracts with the census
    shares as 0-1 fractions), then, in the same home, on the synthetic default. ``results``: each run's result line
    (dags/run_dag_test.py)."""

    home: Path
    results: list[dict]


DAG_TEST_TIMEOUT = 1800
DAG_CONFS = ({"seed": TEST_SEED, "scale": TEST_SCALE}, {"input_dir": "", "seed": TEST_SEED, "scale": TEST_SCALE})


def census_file(folder: Path) -> Path:
    """The census indicators JSON among the extracts in ``folder``."""
    for path in folder.rglob("*.json"):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(doc, list) and doc and isinstance(doc[0], dict) and "internet" in doc[0]:
            return path
    raise AssertionError(f"no census indicators JSON under {folder}")


def _start_dag_runs(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Background:
    from brecha.core.settings import DAGS_DIR
    from brecha.orchestrate.airflow_local import airflow_env

    base = tmp_path_factory.mktemp("dag_runs")
    bad = base / "bad_extracts"
    shutil.copytree(synthetic_dir, bad)
    census = census_file(bad)
    rows = json.loads(census.read_text(encoding="utf-8"))
    for row in rows:
        if row.get("internet") is not None:
            row["internet"] = row["internet"] / 100  # shares as 0-1 fractions: every row still lands (0 <= x <= 100)
    census.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    home = base / "home"
    confs = [{"input_dir": str(bad), **DAG_CONFS[0]}, DAG_CONFS[1]]
    # airflow_local.prepare (the manifest, `airflow db migrate`, the pool), then the runs, in the same process
    driver = (
        "import os, sys; from brecha.orchestrate.airflow_local import prepare; prepare(dict(os.environ)); "
        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
    )
    env = {**os.environ, **airflow_env(Settings(home=home))}
    args = [sys.executable, "-c", driver, str(DAGS_DIR / "run_dag_test.py"), *map(json.dumps, confs)]
    return start(home, args, env, timeout=DAG_TEST_TIMEOUT, stderr_apart=True)


@pytest.fixture(scope="session")
def dag_runs(_started_early: dict[str, Background], synthetic_dir: Path, tmp_path_factory) -> DagRuns:
    """The DAG test's two runs (``DagRuns``), started when the session starts when a collected test needs them."""
    started = _started_early.get("dag_runs") or _start_dag_runs(synthetic_dir, tmp_path_factory)
    returncode, out, err = started.wait()
    assert returncode == 0, out[-3000:] + err[-3000:]
    results = [
        json.loads(ln[len("BRECHA_DAG_TEST ") :]) for ln in out.splitlines() if ln.startswith("BRECHA_DAG_TEST ")
    ]
    assert len(results) == len(DAG_CONFS), out[-3000:] + err[-3000:]
    return DagRuns(started.home, results)


@pytest.fixture(scope="session", autouse=True)
def _started_early(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The session's long runs in processes of their own (``real_run``, ``dag_runs``), started before the first test
    when a collected test uses them, the longest first; stopped at the session's end if still running."""
    wanted = set().union(*(item.fixturenames for item in request.session.items))
    started: dict[str, Background] = {}
    try:
        if "dag_runs" in wanted:
            started["dag_runs"] = _start_dag_runs(request.getfixturevalue("synthetic_dir"), tmp_path_factory)
        if "real_run" in wanted and REAL_DIR.is_dir():
            started["real_run"] = _start_real_run(tmp_path_factory)
        yield started
    finally:
        for run in started.values():
            run.stop()
