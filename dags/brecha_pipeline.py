"""The brecha pipeline as one Airflow DAG; Cosmos renders the dbt graph as tasks.

claim → extract (no-op when ``input_dir`` is given) → ingest → validate landed → dbt core marts (Cosmos) →
dbt_core_passed → validate marts → train → dbt prediction marts (Cosmos, ``tag:needs_predictions``) →
dbt_predictions_passed → spatial clusters → dbt cluster marts (Cosmos, ``tag:needs_clusters``) → publish → atlas
(from the serving copy) → release. ``claim``/``release`` (setup/teardown) hold the home for the DAG
run (brecha/runlock.py); the ``*_passed`` tasks record the Cosmos groups' success per batch (brecha/gates.py).

Every task calls one function of ``brecha.steps`` (the same ones ``brecha run`` calls). Every task that writes
the warehouse runs in the one-slot pool ``brecha_warehouse`` (DuckDB has one writer) and ``max_active_runs=1``;
transient errors (a DuckDB lock) are retried with exponential back-off, user-fixable ones (bad input, a failed
gate) fail at once. Start it with ``make airflow``; see brecha/airflow_local.py for the environment.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import yaml
from airflow.sdk import Param, dag, setup, task, teardown
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior, TestIndirectSelection

from brecha.airflow_local import POOL, dag_run_owner, dbt_task_env, run_step
from brecha.config import DBT_PROJECT_DIR, DEFAULT_SEED, paths
from brecha.pipeline import CLUSTER_MARTS, PREDICTION_MARTS

DBT_EXECUTABLE = Path(sys.executable).parent / "dbt"
MANIFEST = paths().home / "dbt_target" / "manifest.json"
USE_MANIFEST = MANIFEST.exists()  # decided once per parse, so both task groups load the project the same way

RETRIES = {
    "retries": 3,
    "retry_delay": timedelta(seconds=5),
    "retry_exponential_backoff": 2.0,  # 5 s, 10 s, 20 s
    "max_retry_delay": timedelta(minutes=2),
}


def _profile() -> ProfileConfig:
    """The committed dbt_project/profiles.yml (its profile and default target), which reads BRECHA_HOME."""
    profiles = DBT_PROJECT_DIR / "profiles.yml"
    name = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["profile"]
    target = yaml.safe_load(profiles.read_text())[name]["target"]
    return ProfileConfig(profile_name=name, target_name=target, profiles_yml_filepath=profiles)


def _dbt_group(group_id: str, *, select: list[str] | None = None, exclude: list[str] | None = None) -> DbtTaskGroup:
    return DbtTaskGroup(
        group_id=group_id,
        project_config=ProjectConfig(
            dbt_project_path=DBT_PROJECT_DIR,
            manifest_path=MANIFEST if USE_MANIFEST else None,
            install_dbt_deps=False,  # dbt's package hub is unreachable here; the project has no packages
            env_vars=dbt_task_env(),  # dbt ls and every dbt task: BRECHA_HOME, DBT_TARGET_PATH, ...
        ),
        profile_config=_profile(),
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.LOCAL,
            # one dbt process per task: it releases the DuckDB file when it ends (in-process dbtRunner keeps a
            # read-write handle open, and `dag.test()` runs every task in one process)
            invocation_mode=InvocationMode.SUBPROCESS,
            dbt_executable_path=DBT_EXECUTABLE,
            # a model's test task runs only the tests whose parents are all built by then ...
            test_indirect_selection=TestIndirectSelection.CAUTIOUS,
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST if USE_MANIFEST else LoadMode.DBT_LS,
            select=select or [],
            exclude=exclude or [],
            test_behavior=TestBehavior.AFTER_EACH,  # a failed test stops the models that depend on it
            should_detach_multiple_parents_tests=True,  # ... a test on several models runs after all of them
        ),
        operator_args={"pool": POOL, "append_env": True, "install_deps": False, **RETRIES},
    )


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
    from brecha import steps

    @setup
    def claim() -> str:
        """Claim the home for this DAG run (brecha.runlock): a CLI run, or another DAG run, cannot interleave."""
        from brecha import runlock

        return str(run_step(runlock.claim, dag_run_owner()))

    @teardown
    def release() -> bool:
        """Give the home back, whatever happened upstream (a teardown: it does not decide the run's state)."""
        from brecha import runlock

        return runlock.release(dag_run_owner())

    @task
    def dbt_core_passed() -> str:
        """Runs only when every task of the dbt_core group succeeded: record it (publish requires it)."""
        return str(run_step(steps.record_build, "dbt_core"))

    @task
    def dbt_predictions_passed() -> str:
        return str(run_step(steps.record_build, "dbt_predictions"))

    @task
    def extract(params: dict | None = None) -> str:
        """The folder to ingest: ``input_dir`` as given, else freshly generated synthetic extracts."""
        if params["input_dir"]:
            return str(params["input_dir"])
        run_step(steps.extract, paths().ensure().extracts, seed=int(params["seed"]), scale=float(params["scale"]))
        return str(paths().extracts)

    @task
    def ingest(input_dir: str) -> str:
        return str(run_step(steps.ingest, Path(input_dir)))

    @task
    def validate_landed() -> str:
        return str(run_step(steps.validate, "landed"))

    @task
    def validate_marts() -> str:
        return str(run_step(steps.validate, "marts"))

    @task
    def train(params: dict | None = None) -> str | None:
        """Train and compare the models; the run id is the XCom (publish records it)."""
        return getattr(run_step(steps.train, seed=int(params["seed"])), "run_id", None)

    @task
    def clusters(params: dict | None = None) -> str:
        return str(run_step(steps.clusters, seed=int(params["seed"])))

    @task
    def atlas() -> str:
        """The offline HTML atlas, from the serving copy just published (read-only)."""
        return str(run_step(steps.atlas))

    @task
    def publish(model_run_id: str | None) -> str:  # ("run_id" is a reserved name in an Airflow task's context)
        return str(run_step(steps.publish, run_id=model_run_id))

    # the "+" also leaves out the tests on the prediction marts (e.g. relationships to dim_districts)
    core = _dbt_group("dbt_core", exclude=[f"{PREDICTION_MARTS}+"])
    # the cluster marts (also tagged needs_predictions) are built once, by dbt_clusters after the cluster step
    with_predictions = _dbt_group("dbt_predictions", select=[PREDICTION_MARTS], exclude=[CLUSTER_MARTS])
    landed = validate_landed()
    claimed, released = claim(), release()
    extracted = extract()
    claimed >> extracted
    ingest(extracted) >> landed >> core
    trained = train()
    core >> dbt_core_passed() >> validate_marts() >> trained >> with_predictions
    with_clusters = _dbt_group("dbt_clusters", select=[CLUSTER_MARTS])
    published = publish(trained)
    with_predictions >> dbt_predictions_passed() >> clusters() >> with_clusters >> published
    drawn = atlas()
    published >> drawn >> released
    claimed >> released


brecha_pipeline()
