"""The one step list: `brecha run` follows it in order, and the Airflow DAG (dags/brecha_pipeline.py) builds its tasks
from it in the same order. A dbt step is one ``dbt build`` of a selection (in the DAG, one Cosmos task group); the gate
it stands for (``brecha.warehouse.gates.dbt_gates``), which publish requires, is recorded for the batch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from brecha.core.settings import Settings
from brecha.warehouse.selectors import CLUSTER_MARTS, PREDICTION_MARTS


@dataclass(frozen=True)
class Step:
    name: str  # the key of its result in `brecha run`, the task (or task group) id in the DAG
    title: str  # what `brecha run` shows while it runs
    select: tuple[str, ...] = ()  # a dbt step's selection (dbt selectors) ...
    exclude: tuple[str, ...] = ()  # ... and what it leaves out

    @property
    def is_dbt(self) -> bool:
        return self.name.startswith("dbt_")

    @property
    def selector(self) -> str | None:
        return " ".join(self.select) or None

    @property
    def excluded(self) -> str | None:
        return " ".join(self.exclude) or None


PIPELINE: tuple[Step, ...] = (
    Step("extract", "extract"),  # synthetic extracts; skipped when a folder of real files is given
    Step("ingest", "ingest"),
    Step("validate_landed", "validate landed extracts"),
    # the "+" leaves out the tests on the prediction marts too (e.g. their relationships to dim_districts)
    Step("dbt_core", "dbt build (core marts)", exclude=(f"{PREDICTION_MARTS}+",)),
    Step("validate_marts", "validate marts"),
    Step("train", "train"),
    # the cluster marts (tagged needs_predictions too) are built once, after the cluster step
    Step("dbt_predictions", "dbt build (prediction marts)", select=(PREDICTION_MARTS,), exclude=(CLUSTER_MARTS,)),
    Step("clusters", "spatial clusters"),
    Step("dbt_clusters", "dbt build (cluster marts)", select=(CLUSTER_MARTS,)),
    Step("publish", "publish"),
    Step("atlas", "atlas"),
)
STEPS = {s.name: s for s in PIPELINE}


@dataclass(frozen=True)
class Inputs:
    """What a run gives its steps besides the settings."""

    input_dir: Path | None = None  # a folder of real extracts; None: the synthetic extracts under the home
    scale: float = 1.0  # size of the synthetic large tables
    run_id: str | None = None  # the model run `train` returned, which `publish` serves


def run(step: Step, settings: Settings, inputs: Inputs) -> object:
    """Run ``step`` of the list, as `brecha run` and the DAG's task for it both do (one ``brecha.orchestrate.steps``
    function each)."""
    from brecha.orchestrate import steps

    if step.is_dbt:
        return steps.dbt_build(settings, select=step.selector, exclude=step.excluded)
    match step.name:
        case "extract":
            return steps.extract(settings, settings.paths.extracts, scale=inputs.scale)
        case "ingest":
            return steps.ingest(settings, inputs.input_dir or settings.paths.extracts)
        case "validate_landed":
            return steps.validate(settings, "landed")
        case "validate_marts":
            return steps.validate(settings, "marts")
        case "train":
            return steps.train(settings)
        case "clusters":
            return steps.clusters(settings)
        case "publish":
            return steps.publish(settings, run_id=inputs.run_id)
        case "atlas":
            return steps.atlas(settings)
    raise ValueError(f"no step {step.name!r}")
