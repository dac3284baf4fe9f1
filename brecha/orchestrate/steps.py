"""One function per pipeline step. The CLI (``brecha <step>``) and the Airflow DAG both call these, in the order of
``brecha.orchestrate.plan.PIPELINE``.

Each step takes the run's ``Settings`` (built once by the entry point: the CLI, the DAG file) and plain arguments,
puts the settings in effect for the libraries it calls (``brecha.core.settings.using``), returns a typed summary of
what it did (a dataclass whose ``str()`` is the line the CLI prints), and raises ``brecha.core.errors.BrechaError``
with a message meant for the user when its input is wrong. Every step holds the home's run lock while it runs
(``brecha.core.runlock``: one run at a time per home), and the gates and builds record their outcome per batch
(``brecha.warehouse.gates``), which ``publish`` checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from brecha.core.runlock import hold
from brecha.core.settings import Settings, using

if TYPE_CHECKING:  # the steps import their libraries when they run: `brecha --help` stays fast
    from brecha.extract.fetch import FetchResult
    from brecha.extract.synthetic import ExtractResult
    from brecha.landing.result import IngestResult
    from brecha.serve.atlas import AtlasResult
    from brecha.warehouse.dbt import DbtSummary
    from brecha.warehouse.lake_publish import LakePublishResult
    from brecha.warehouse.publish import PublishResult
    from brecha.warehouse.validate import ValidationSummary
    from brecha_ml.clusters import ClusterResult
    from brecha_ml.multiseed import SeedsResult
    from brecha_ml.predict import PredictResult
    from brecha_ml.train import TrainResult


def extract(settings: Settings, out: Path | None = None, scale: float = 1.0) -> ExtractResult:
    """Write synthetic extracts in the real layouts to ``out`` (default ``<home>/extracts``)."""
    with using(settings), hold():
        from brecha.extract.synthetic import generate

        return generate(out or settings.paths.ensure().extracts, seed=settings.seed, scale=scale)


FETCHED = "fetched"  # $BRECHA_HOME/fetched: what `brecha fetch` downloads, ready to ingest


def fetch(settings: Settings, years: list[int], out: Path | None = None, flavour: str = "STATA", punku_url: str | None = None,
          mirror: str | None = None) -> FetchResult:
    """Download ENAHO module 01 for ``years``, PUNKU's dataset (when its address is given) and the other public
    extracts into ``out`` (default ``<home>/fetched``), resumable and checksummed (``brecha.extract.fetch``)."""
    from brecha.extract.fetch import fetch as _fetch

    with using(settings):
        return _fetch(out or settings.paths.ensure().home / FETCHED, years, flavour, punku_url, mirror)


def ingest(settings: Settings, input_dir: Path) -> IngestResult:
    """Land every extract under ``input_dir`` into ``raw.*`` (one batch), archiving the originals."""
    with using(settings), hold():
        from brecha.landing.ingest import ingest as _ingest

        return _ingest(Path(input_dir))


def rebuild_raw(settings: Settings) -> IngestResult:
    """Rebuild the raw layer from the archive alone."""
    with using(settings), hold():
        from brecha.landing.ingest import rebuild_from_archive

        return rebuild_from_archive()


def dbt_build(settings: Settings, select: str | None = None, exclude: str | None = None) -> DbtSummary:
    """``dbt build`` (run + test) over the project, optionally restricted with dbt selectors."""
    with using(settings), hold():
        from brecha.core.errors import GateFailed
        from brecha.warehouse import gates
        from brecha.warehouse.dbt import build

        covers = gates.dbt_gates(select, exclude)
        try:
            result = build(select=select, exclude=exclude)
        except GateFailed as err:
            gates.record(covers, False, str(err))
            raise
        gates.record(covers, True, str(result))
        return result


def record_build(settings: Settings, gate: str) -> str:
    """Record that the dbt build ``gate`` (``dbt_core`` or ``dbt_predictions``) passed for the latest batch. The
    Airflow DAG calls it in the task after each Cosmos dbt group, which runs only when every dbt task in the
    group succeeded (``brecha build`` records its own outcome)."""
    with using(settings), hold():
        from brecha.warehouse import gates

        if gate not in gates.REQUIRED:
            raise ValueError(f"unknown gate {gate!r}")
        batch = gates.record(gate, True, "every dbt task of the Airflow task group succeeded")
        return f"{gate} passed for batch {batch}"


def validate(settings: Settings, suite: str = "all") -> ValidationSummary:
    """Run the Great Expectations suites (``landed``, ``marts`` or ``all``); raise when one fails."""
    with using(settings), hold():
        from brecha.warehouse.validate import validate as _validate

        return _validate(suite)


def train(settings: Settings) -> TrainResult:
    """Train, cross-validate and compare the models on the marts; write ``ml.*`` tables and artifacts."""
    with using(settings), hold():
        from brecha_ml.train import train as _train

        return _train(seed=settings.seed)


def predict(settings: Settings, run_id: str) -> PredictResult:
    """Reload the artifact of ``run_id`` and rescore the current marts."""
    with using(settings), hold():
        from brecha_ml.predict import predict as _predict

        return _predict(run_id)


def seeds(settings: Settings, chosen: tuple[int, ...]) -> SeedsResult:
    """The spatial CV of every candidate repeated for each seed; append to ``ml.seed_metrics``."""
    with using(settings), hold():
        from brecha_ml.multiseed import run as _run

        return _run(chosen)


def clusters(settings: Settings) -> ClusterResult:
    """Global and local Moran's I (LISA) of the prediction mart's measures; write ``ml.district_clusters``."""
    with using(settings), hold():
        from brecha_ml.clusters import run as _run

        return _run(seed=settings.seed)


def publish(settings: Settings, run_id: str | None = None) -> PublishResult | LakePublishResult:
    """Copy the checked warehouse to ``$BRECHA_HOME/serving/brecha.duckdb`` atomically."""
    with using(settings), hold():
        if settings.storage == "lake":  # a lake snapshot, recorded in ops.lake_publications
            from brecha.warehouse.lake_publish import publish as _publish
        else:
            from brecha.warehouse.publish import publish as _publish

        return _publish(run_id=run_id)


def rollback(settings: Settings) -> PublishResult | LakePublishResult:
    """Restore the previous serving snapshot."""
    with using(settings), hold():
        if settings.storage == "lake":
            from brecha.warehouse.lake_publish import rollback as _rollback
        else:
            from brecha.warehouse.publish import rollback as _rollback

        return _rollback()


def atlas(settings: Settings, out: Path | None = None, lang: str = "es") -> AtlasResult:
    """Write the offline HTML atlas (``$BRECHA_HOME/atlas/index.html``) from the serving copy, read-only, in ``lang``
    (``es`` by default, or ``en``)."""
    with using(settings), hold():
        from brecha.serve.atlas import write_atlas

        return write_atlas(out, lang=lang)


def serve_snapshot(settings: Settings, snapshot_id: str) -> PublishResult | LakePublishResult:
    """Serve the kept snapshot ``snapshot_id`` (older or newer than the one served now)."""
    with using(settings), hold():
        if settings.storage == "lake":  # a published lake snapshot's number
            from brecha.core.errors import BrechaError
            from brecha.warehouse.lake_publish import serve

            if not snapshot_id.isdigit():
                raise BrechaError(f"{snapshot_id!r}: on the lake a snapshot is a number (`brecha publish --list`)")
            return serve(int(snapshot_id))
        from brecha.warehouse.publish import serve_snapshot as _serve

        return _serve(snapshot_id)


def claim(settings: Settings) -> dict:
    """Claim the home for the multi-process run ``settings.run_owner`` (an Airflow DAG run): a CLI run, or another DAG
    run, cannot interleave with its tasks (``brecha.core.runlock``)."""
    from brecha.core import runlock

    if not settings.run_owner:
        raise ValueError("claim needs settings.run_owner (the DAG run claiming the home)")
    with using(settings):
        return runlock.claim(settings.run_owner)


def release(settings: Settings) -> bool:
    """Give the home claimed by ``settings.run_owner`` back (True when it held a claim)."""
    from brecha.core import runlock

    with using(settings):
        return bool(settings.run_owner) and runlock.release(settings.run_owner)
