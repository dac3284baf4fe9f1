"""The one step list: `brecha run` follows it in order, and the Airflow DAG (dags/brecha_pipeline.py) builds its tasks
from it in the same order. A dbt step is one ``dbt build`` of a selection (in the DAG, one Cosmos task group); the gate
it stands for (``brecha.warehouse.gates.dbt_gates``), which publish requires, is recorded for the batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from brecha.core.settings import Settings
from brecha.orchestrate import steps
from brecha.warehouse.selectors import CLUSTER_MARTS, PREDICTION_MARTS


@dataclass(frozen=True)
class Inputs:
    """What a run gives its steps besides the settings."""

    input_dir: Path | None = None  # a folder of real extracts; None: the synthetic extracts under the home
    scale: float = 1.0  # size of the synthetic large tables
    run_id: str | None = None  # the model run a step takes from an earlier one (``Step.run_id_from``)


@dataclass(frozen=True)
class Step:
    """One step of the list. How it runs is said here, once, for `brecha run` and the DAG alike: its function, whether
    a folder of real extracts makes it unnecessary, and which earlier step's model run it takes."""

    name: str  # the key of its result in `brecha run`, the task (or task group) id in the DAG
    title: str  # what `brecha run` shows while it runs
    call: Callable[[Settings, Inputs], object] | None = None  # a Python step: the step function (brecha.orchestrate.steps)
    select: tuple[str, ...] = ()  # a dbt step's selection (dbt selectors) ...
    exclude: tuple[str, ...] = ()  # ... and what it leaves out
    skipped_with_input: bool = False  # not run when a folder of real extracts is given
    run_id_from: str | None = None  # takes the model run that step returned (``Inputs.run_id``)

    @property
    def is_dbt(self) -> bool:
        return self.call is None

    @property
    def selector(self) -> str | None:
        return " ".join(self.select) or None

    @property
    def excluded(self) -> str | None:
        return " ".join(self.exclude) or None

    def skipped(self, inputs: Inputs) -> bool:
        """Whether a run with ``inputs`` leaves this step out (the synthetic extracts, when real ones are given)."""
        return self.skipped_with_input and inputs.input_dir is not None


PIPELINE: tuple[Step, ...] = (
    Step("extract", "extract", lambda s, i: steps.extract(s, s.paths.extracts, scale=i.scale), skipped_with_input=True),
    Step("ingest", "ingest", lambda s, i: steps.ingest(s, i.input_dir or s.paths.extracts)),
    Step("validate_landed", "validate landed extracts", lambda s, i: steps.validate(s, "landed")),
    # the "+" leaves out the tests on the prediction marts too (e.g. their relationships to dim_districts)
    Step("dbt_core", "dbt build (core marts)", exclude=(f"{PREDICTION_MARTS}+",)),
    Step("validate_marts", "validate marts", lambda s, i: steps.validate(s, "marts")),
    Step("train", "train", lambda s, i: steps.train(s)),
    # the cluster marts (tagged needs_predictions too) are built once, after the cluster step
    Step("dbt_predictions", "dbt build (prediction marts)", select=(PREDICTION_MARTS,), exclude=(CLUSTER_MARTS,)),
    Step("clusters", "spatial clusters", lambda s, i: steps.clusters(s)),
    Step("dbt_clusters", "dbt build (cluster marts)", select=(CLUSTER_MARTS,)),
    Step("publish", "publish", lambda s, i: steps.publish(s, run_id=i.run_id), run_id_from="train"),
    Step("atlas", "atlas", lambda s, i: steps.atlas(s)),
)
STEPS = {s.name: s for s in PIPELINE}
RUN_ID_SOURCES = {s.run_id_from for s in PIPELINE if s.run_id_from}  # steps whose model run a later step takes


def run(step: Step, settings: Settings, inputs: Inputs) -> object:
    """Run ``step`` of the list, as `brecha run` and the DAG's task for it both do (one ``brecha.orchestrate.steps``
    function each; a dbt step is one ``dbt build`` of its selection)."""
    if step.call is None:
        return steps.dbt_build(settings, select=step.selector, exclude=step.excluded)
    return step.call(settings, inputs)


def handed_on(step: Step, result: object) -> str:
    """What a step's result hands to the steps after it (the DAG's XCom): the model run's id where a later step takes
    it (``Step.run_id_from``), else the result's summary."""
    return result.run_id if step.name in RUN_ID_SOURCES else str(result)  # type: ignore[attr-defined]
