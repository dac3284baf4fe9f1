"""Shared fixtures. The expensive ones (a synthetic warehouse built end to end) are session-scoped.

Every test runs with its own ``BRECHA_HOME`` so nothing touches ./warehouse or another test's lock.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DIR = (REPO / ".." / "shared" / "data" / "real").resolve()
TEST_SEED = 42
TEST_SCALE = 0.25  # smaller large tables (households, connections, populated centres) keep CI fast


@pytest.fixture
def real_dir() -> Path:
    """The real extracts in ../shared/data/real; tests that need them skip with a reason when absent."""
    if not REAL_DIR.is_dir():
        pytest.skip(f"real extracts not found at {REAL_DIR} (the ../shared folder is absent on this machine)")
    return REAL_DIR


@pytest.fixture
def brecha_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty BRECHA_HOME for one test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("BRECHA_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def _session_env(tmp_path_factory: pytest.TempPathFactory):
    """Session-wide BRECHA_HOME for the shared synthetic warehouse (restored afterwards)."""
    home = tmp_path_factory.mktemp("pipeline_home")
    old = os.environ.get("BRECHA_HOME")
    os.environ["BRECHA_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("BRECHA_HOME", None)
    else:
        os.environ["BRECHA_HOME"] = old


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory, _session_env: Path) -> Path:
    """Synthetic extracts in the real layouts (seed 42, reduced scale), generated once per session."""
    from brecha.extract.synthetic import generate

    out = tmp_path_factory.mktemp("synthetic")
    generate(out, seed=TEST_SEED, scale=TEST_SCALE)
    return out


@dataclass
class PipelineRun:
    """The session's `brecha run` (extract, ingest, validate, dbt, train, dbt, clusters, dbt, publish, atlas): its
    home, its step results and everything it printed (progress, dbt's output, the closing summary)."""

    home: Path
    results: dict
    output: str


@pytest.fixture(scope="session")
def pipeline_run(_session_env: Path) -> PipelineRun:
    """The whole pipeline once per session, as `brecha run --seed 42 --scale 0.25` runs it (``run_all``, which the
    command calls; its output captured as a pipe would, without a terminal), in the session home. Every test that
    reads a landed, built, trained or clustered warehouse reads this one (tests/test_cli.py checks its summary,
    serving copy and atlas); tests that change a warehouse copy it first."""
    from brecha.orchestrate import pipeline

    os.environ["BRECHA_HOME"] = str(_session_env)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        results = pipeline.run_all(None, seed=TEST_SEED, scale=TEST_SCALE)
    return PipelineRun(_session_env, results, out.getvalue())


@pytest.fixture(scope="session")
def real_run_home(real_run: PipelineRun) -> Path:
    """The home of the session's one real run (``real_run``): tests read its serving copy (Grafana's queries, the
    priority lenses, the what-if) and never change it."""
    return real_run.home


@pytest.fixture(scope="session")
def built_home(pipeline_run: PipelineRun) -> Path:
    """BRECHA_HOME whose warehouse has the core marts built by dbt (models and tests green) and the marts gate passed."""
    return pipeline_run.home


@pytest.fixture(scope="session")
def trained_home(pipeline_run: PipelineRun):
    """BRECHA_HOME after `brecha train` and the prediction marts: (home, train result)."""
    return pipeline_run.home, pipeline_run.results["train"]


@pytest.fixture(scope="session")
def clustered_home(pipeline_run: PipelineRun) -> Path:
    """BRECHA_HOME after the spatial cluster step and the cluster marts (what `brecha run` does after training)."""
    return pipeline_run.home


@pytest.fixture
def use_home(monkeypatch: pytest.MonkeyPatch):
    """Point BRECHA_HOME at a session home for the duration of one test: ``use_home(built_home)``."""

    def _use(home: Path) -> Path:
        monkeypatch.setenv("BRECHA_HOME", str(home))
        return home

    return _use


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
    """BRECHA_HOME points at ``home`` inside the block and is restored afterwards."""
    old = os.environ.get("BRECHA_HOME")
    os.environ["BRECHA_HOME"] = str(home)
    try:
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
    with home_env(home), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        results = pipeline.run_all(REAL_DIR)  # every step and gate, as `brecha run --input` does
    return PipelineRun(home, results, out.getvalue())
