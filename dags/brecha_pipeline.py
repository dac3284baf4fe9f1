"""The brecha pipeline as one Airflow DAG: the steps of ``brecha.orchestrate.plan.PIPELINE`` in their order (the list
`brecha run` follows), each dbt step a Cosmos task group, between the setup ``claim`` and the teardown ``release`` of
the home (brecha/core/runlock.py; on the lake, of the lake: a row in its catalog database, seen from every machine).

With the lake's settings (BRECHA_LAKE, BRECHA_LAKE_DATA in the environment of every Airflow process, as a shell that
sourced lake.env hands them on) the whole DAG runs on the lake: the dbt groups take the profile's ``lake`` target, the
attach string in a ``DBT_ENV_SECRET_`` variable (``brecha.warehouse.dbt.dbt_env``), and every Python task's steps
write the lake.

Every other task calls ``brecha.orchestrate.plan.run`` for its step, as `brecha run` does. After a dbt group that
stands for a gate (``brecha.warehouse.gates``), a ``<gate>_passed`` task records it for the batch: it runs only when
every task of the group succeeded. Tasks that write the warehouse run in the one-slot pool ``brecha_warehouse``
(DuckDB has one writer) and ``max_active_runs=1``; transient errors (a DuckDB lock) are retried with back-off,
user-fixable ones (bad input, a failed gate) fail at once. Start it with ``make airflow`` (brecha/orchestrate/
airflow_local.py sets the environment, Cosmos's telemetry off included).
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import Param, dag, setup, task, teardown
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

from brecha.core.settings import DBT_PROJECT_DIR, DEFAULT_SEED, Settings
from brecha.orchestrate import cosmos_workarounds, plan, steps
from brecha.orchestrate.airflow_local import POOL, dag_run_owner, run_step, task_retries
from brecha.warehouse.dbt import dbt_env, parse_project, release_warehouse
from brecha.warehouse.gates import dbt_gates

# The entry point's settings (BRECHA_HOME, ... as `brecha airflow` hands them to every Airflow process); each task adds
# its run's seed and the DAG run that claimed the home.
SETTINGS = Settings.from_env(os.environ)
# The parsed project (dbt_project/target/manifest.json): parsed here once when the project changed, so parsing this
# file never runs dbt otherwise (brecha.warehouse.dbt.parse_project).
MANIFEST = parse_project()
RETRIES = task_retries()  # transient errors (a DuckDB lock): the project's one back-off

project_config = ProjectConfig(
    dbt_project_path=DBT_PROJECT_DIR,
    manifest_path=MANIFEST,
    install_dbt_deps=False,  # the project has no packages
    # BRECHA_HOME, ... as the CLI's dbt runs with, but a dbt target folder of the DAG's own, and no partial parsing:
    # Cosmos runs dbt in a temporary copy of the project, and dbt's partial parse file keeps the project's folder of the
    # run that wrote it (a seed is loaded from there: "No files found" once that copy is gone). So the DAG's runs
    # neither read one nor leave one where `brecha build` would read it.
    env_vars={**dbt_env(settings=SETTINGS), "DBT_TARGET_PATH": str(SETTINGS.paths.airflow / "dbt_target")},
    partial_parse=False,
)
profile_config = ProfileConfig(profile_name="brecha", target_name="lake" if SETTINGS.storage == "lake" else "local",
                               profiles_yml_filepath=DBT_PROJECT_DIR / "profiles.yml")
execution_config = ExecutionConfig(
    execution_mode=ExecutionMode.WATCHER,  # one `dbt build` per group; a sensor per model reports its result
    invocation_mode=InvocationMode.DBT_RUNNER,  # dbt in the task's process, as `brecha build` runs it
    # the producer: a failed build fails the run (Cosmos skips a retried producer); then it lets go of the warehouse
    setup_operator_args={"retries": 0, "callback": release_warehouse},
)


def dbt_group(step: plan.Step) -> DbtTaskGroup:
    group = DbtTaskGroup(
        group_id=step.name,
        project_config=project_config,
        profile_config=profile_config,
        execution_config=execution_config,
        render_config=RenderConfig(load_method=LoadMode.DBT_MANIFEST, select=list(step.select),
                                   exclude=list(step.exclude), test_behavior=TestBehavior.AFTER_EACH),
        operator_args={"pool": POOL, "append_env": True, "install_deps": False, **RETRIES},
    )
    return cosmos_workarounds.apply(group, select=list(step.select), exclude=list(step.exclude),
                                    project_dir=DBT_PROJECT_DIR)


def settings(params: dict) -> Settings:
    return SETTINGS.replace(seed=int(params["seed"]), run_owner=dag_run_owner())


def step_task(step: plan.Step):
    @task(task_id=step.name, doc_md=f"`{step.title}` (brecha.orchestrate.plan.run)")
    def run(params: dict | None = None, ti=None) -> str:
        inputs = plan.Inputs(input_dir=Path(params["input_dir"]) if params["input_dir"] else None,
                             scale=float(params["scale"]),
                             run_id=ti.xcom_pull(task_ids=step.run_id_from) if step.run_id_from else None)
        if step.skipped(inputs):
            return f"skipped ({inputs.input_dir} given)"
        return plan.handed_on(step, run_step(plan.run, step, settings(params), inputs))

    return run()


def gate_task(gate: str):
    @task(task_id=f"{gate}_passed", doc_md=f"Every task of the `{gate}` group succeeded: record it (publish requires it).")
    def passed(params: dict | None = None) -> str:
        return run_step(steps.record_build, settings(params), gate)

    return passed()


@dag(
    dag_id="brecha_pipeline",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args={"pool": POOL, **RETRIES},
    params={
        "input_dir": Param("", type="string", description="Folder of real extracts; empty: generate synthetic ones"),
        "seed": Param(DEFAULT_SEED, type="integer", description="Random seed (synthetic extracts and models)"),
        "scale": Param(1.0, type="number", exclusiveMinimum=0, description="Size of the large synthetic tables"),
    },
    tags=["brecha"],
    doc_md=__doc__,
)
def brecha_pipeline() -> None:
    @setup
    def claim(params: dict | None = None) -> str:
        """Claim the home for this DAG run: a CLI run, or another DAG run, cannot interleave."""
        return str(run_step(steps.claim, settings(params)))

    @teardown
    def release(params: dict | None = None) -> bool:
        """Give the home back, whatever happened upstream (a teardown: it does not decide the run's state)."""
        return steps.release(settings(params))

    claimed, released = claim(), release()
    previous = claimed
    for step in plan.PIPELINE:  # the order `brecha run` follows
        current = dbt_group(step) if step.is_dbt else step_task(step)
        previous >> current
        previous = current
        for gate in dbt_gates(step.selector, step.excluded) if step.is_dbt else ():
            previous = previous >> gate_task(gate)
    previous >> released
    claimed >> released


brecha_pipeline()
