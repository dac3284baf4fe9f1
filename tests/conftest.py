"""Shared fixtures. The expensive ones (a synthetic warehouse built end to end) are session-scoped.

Every test runs with its own ``BRECHA_HOME`` so nothing touches ./warehouse or another test's lock.
"""

from __future__ import annotations

import os
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
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
    yield home
    if old is None:
        os.environ.pop("BRECHA_HOME", None)
    else:
        os.environ["BRECHA_HOME"] = old


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory, _session_env: Path) -> Path:
    """Synthetic extracts in the real layouts (seed 42, reduced scale), generated once per session."""
    from brecha.synthetic import generate

    out = tmp_path_factory.mktemp("synthetic")
    generate(out, seed=TEST_SEED, scale=TEST_SCALE)
    return out


@pytest.fixture(scope="session")
def landed_home(_session_env: Path, synthetic_dir: Path) -> Path:
    """BRECHA_HOME whose warehouse has the synthetic extracts landed in raw.* and the landed gate passed."""
    from brecha import steps

    os.environ["BRECHA_HOME"] = str(_session_env)
    steps.ingest(synthetic_dir)
    steps.validate("landed")  # the landed gate, recorded for the batch as `brecha run` does (publish checks it)
    return _session_env


@pytest.fixture(scope="session")
def built_home(landed_home: Path) -> Path:
    """BRECHA_HOME whose warehouse has the core marts built by dbt (models and tests green) and the marts gate passed."""
    from brecha import steps
    from brecha.pipeline import PREDICTION_MARTS

    os.environ["BRECHA_HOME"] = str(landed_home)
    steps.dbt_build(exclude=PREDICTION_MARTS)
    steps.validate("marts")
    return landed_home


@pytest.fixture(scope="session")
def trained_home(built_home: Path):
    """BRECHA_HOME after `brecha train` and the prediction marts: (home, train result)."""
    from brecha import steps
    from brecha.pipeline import PREDICTION_MARTS

    os.environ["BRECHA_HOME"] = str(built_home)
    result = steps.train(seed=TEST_SEED)
    steps.dbt_build(select=PREDICTION_MARTS)
    return built_home, result


@pytest.fixture(scope="session")
def clustered_home(trained_home) -> Path:
    """BRECHA_HOME after the spatial cluster step and the cluster marts (what `brecha run` does after training)."""
    from brecha import steps
    from brecha.pipeline import CLUSTER_MARTS

    home, _ = trained_home
    os.environ["BRECHA_HOME"] = str(home)
    steps.clusters(seed=TEST_SEED)
    steps.dbt_build(select=CLUSTER_MARTS)
    return home


@pytest.fixture
def use_home(monkeypatch: pytest.MonkeyPatch):
    """Point BRECHA_HOME at a session home for the duration of one test: ``use_home(built_home)``."""

    def _use(home: Path) -> Path:
        monkeypatch.setenv("BRECHA_HOME", str(home))
        return home

    return _use
