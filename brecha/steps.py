"""One function per pipeline step. The CLI (``brecha <step>``) and the Airflow DAG both call these.

Each step takes plain arguments, reads its paths from ``brecha.config.paths()`` (``$BRECHA_HOME``),
returns a small summary object, and raises ``brecha.errors.BrechaError`` with a message meant for the
user when its input is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from brecha.config import DEFAULT_SEED, paths


def extract(out: Path | None = None, seed: int = DEFAULT_SEED, scale: float = 1.0) -> Any:
    """Write synthetic extracts in the real layouts to ``out`` (default ``$BRECHA_HOME/extracts``)."""
    from brecha.synthetic import generate

    return generate(out or paths().ensure().extracts, seed=seed, scale=scale)


def ingest(input_dir: Path) -> Any:
    """Land every extract under ``input_dir`` into ``raw.*`` (one batch), archiving the originals."""
    from brecha.landing.ingest import ingest as _ingest

    return _ingest(Path(input_dir))


def rebuild_raw() -> Any:
    """Rebuild the raw layer from the archive alone."""
    from brecha.landing.ingest import rebuild_from_archive

    return rebuild_from_archive()


def dbt_build(select: str | None = None, exclude: str | None = None) -> Any:
    """``dbt build`` (run + test) over the project, optionally restricted with dbt selectors."""
    from brecha.dbt import build

    return build(select=select, exclude=exclude)


def validate(suite: str = "all") -> Any:
    """Run the Great Expectations suites (``landed``, ``marts`` or ``all``); raise when one fails."""
    from brecha.validate import validate as _validate

    return _validate(suite)


def train(seed: int = DEFAULT_SEED) -> Any:
    """Train, cross-validate and compare the models on the marts; write ``ml.*`` tables and artifacts."""
    from ml.train import train as _train

    return _train(seed=seed)


def predict(run_id: str) -> Any:
    """Reload the artifact of ``run_id`` and rescore the current marts."""
    from ml.predict import predict as _predict

    return _predict(run_id)


def publish(run_id: str | None = None) -> Any:
    """Copy the checked warehouse to ``$BRECHA_HOME/serving/brecha.duckdb`` atomically."""
    from brecha.publish import publish as _publish

    return _publish(run_id=run_id)


def rollback() -> Any:
    """Restore the previous serving snapshot."""
    from brecha.publish import rollback as _rollback

    return _rollback()
