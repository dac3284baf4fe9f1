"""The lake's session fixtures (a PostgreSQL the project starts, and one pipeline run into it), shared by every
test module that reads or writes the lake. Registered as a pytest plugin in conftest.py."""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TEST_SEED

from brecha.core import lake
from brecha.core.errors import BrechaError
from brecha.core.settings import Settings


def _require_postgresql() -> Path:
    try:
        return lake.install_postgresql(say=lambda _msg: None)
    except BrechaError as err:
        pytest.skip(f"PostgreSQL cannot be installed here, so the lake cannot be tested: {err}")


@pytest.fixture(scope="session")
def lake_home() -> Iterator[Path]:
    """A home whose lake is up (`make lake-up`'s code), taken down (`make lake-down`'s) after the session. Not under
    pytest's temporary folder: that is closed to other users (0700), and the server runs as 'postgres' under root."""
    _require_postgresql()
    home = Path(tempfile.mkdtemp(prefix="brecha-lake-test-"))
    home.chmod(0o755)
    try:
        lake.up(home, say=lambda _msg: None)
        yield home
    finally:
        lake.down(home, say=lambda _msg: None)
        shutil.rmtree(home, ignore_errors=True)


def lake_settings(home: Path) -> Settings:
    """The settings an entry point builds in a shell that sourced the home's lake.env."""
    return Settings.from_env({"BRECHA_HOME": str(home), **lake.read_env(home / "lake.env")})


@pytest.fixture(scope="session")
def lake_run(lake_home: Path, pipeline_run) -> dict:
    """`brecha run --input` of the session's synthetic extracts (the embedded session run's) into the lake: landed,
    gated, built, trained, clustered, published as a lake snapshot, the atlas drawn from it."""
    from brecha.orchestrate import pipeline

    out = io.StringIO()
    settings = lake_settings(lake_home).replace(seed=TEST_SEED)  # the session run's seed
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        return pipeline.run_all(settings, pipeline_run.home / "extracts")
