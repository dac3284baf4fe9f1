"""Shared fixtures. The expensive ones (a synthetic warehouse built end to end) are session-scoped.

Tests build settings (``brecha.core.settings.Settings``) and pass them to the steps, as the entry points do; the
fixtures that hand a test a home also put its settings in effect for the library code the test calls
(``brecha.core.settings.using``), and set ``BRECHA_HOME`` only for the ``brecha`` processes a test starts (an entry
point reads its environment). Nothing touches ./warehouse or another test's lock.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
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
def real_run(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """The real extracts (../shared/data/real) through the whole pipeline once per session, as `brecha run --input`
    runs it, in a home of its own (skips when ../shared is absent): its serving copy, atlas and report."""
    from brecha.orchestrate import pipeline

    if not REAL_DIR.is_dir():
        pytest.skip(f"real extracts not found at {REAL_DIR} (the ../shared folder is absent on this machine)")
    home = tmp_path_factory.mktemp("real_home")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        results = pipeline.run_all(settings_for(home), REAL_DIR)  # every step and gate, as `brecha run --input` does
    return PipelineRun(home, results, out.getvalue())
