"""The brecha pipeline as one Airflow DAG; Cosmos renders the dbt graph as tasks.

claim → extract (no-op when ``input_dir`` is given) → ingest → validate landed → dbt core marts (Cosmos) →
dbt_core_passed → validate marts → train → dbt prediction marts (Cosmos, ``tag:needs_predictions``) →
dbt_predictions_passed → spatial clusters → dbt cluster marts (Cosmos, ``tag:needs_clusters``) → publish → atlas
(from the serving copy) → release. ``claim``/``release`` (setup/teardown) hold the home for the DAG
run (brecha/core/runlock.py); the ``*_passed`` tasks record the Cosmos groups' success per batch (brecha/warehouse/gates.py).

Every task calls one function of ``brecha.orchestrate.steps`` (the same ones ``brecha run`` calls). Every task that writes
the warehouse runs in the one-slot pool ``brecha_warehouse`` (DuckDB has one writer) and ``max_active_runs=1``;
transient errors (a DuckDB lock) are retried with exponential back-off, user-fixable ones (bad input, a failed
gate) fail at once. Start it with ``make airflow``; see brecha/orchestrate/airflow_local.py for the environment.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import cosmos.settings
import yaml
from airflow.sdk import Param, dag, setup, task, teardown
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import (
    PRODUCER_WATCHER_DONE_TASK_ID,
    PRODUCER_WATCHER_TASK_ID,
    ExecutionMode,
    InvocationMode,
    LoadMode,
    TestBehavior,
)

from brecha.core.settings import DBT_PROJECT_DIR, DEFAULT_SEED, Settings
from brecha.orchestrate.airflow_local import POOL, dag_run_owner, run_step
from brecha.warehouse.dbt import dbt_env, parse_project, release_warehouse
from brecha.warehouse.selectors import CLUSTER_MARTS, PREDICTION_MARTS

# Cosmos's usage telemetry (an HTTP call per task and run) stays off however Airflow is started (`brecha airflow` also
# sets AIRFLOW__COSMOS__ENABLE_TELEMETRY=False): with no route out it cost ~13 s of a `airflow dags test` here. The DAG
# file is parsed again by every task process, so this holds in the tasks too.
cosmos.settings.enable_telemetry = False
# Cosmos's "reliable retry" of a watcher producer: after EVERY XCom the producer pushes (~600 per core build, a few per
# dbt node), it compresses the whole growing set of them into an Airflow Variable, so a retried producer can restore
# them. Our producers never retry (`producer.retries = 0`, sensors too: see _dbt_group), so that copy is never read,
# and writing it cost the core build 13 s of its 35 s (`airflow dags test` here: core producer 34.8 s -> 21.9 s, the
# whole run 81 s -> 69 s). Cosmos still writes the Variable once if a producer fails (its on-failure callback).
cosmos.settings.enable_watcher_reliable_retry = False

# The parsed project (dbt_project/target/manifest.json, written by `make install` / `brecha airflow`): the DAG always
# loads from it, so parsing this file never runs dbt. When the project changed since (or no manifest exists yet),
# dbt parses it here once, in a subprocess, and every later parse is fast again (brecha.warehouse.dbt.parse_project).
MANIFEST = parse_project()

# The entry point's settings (BRECHA_HOME, ... as `brecha airflow` hands them to every Airflow process); each task adds
# its run's seed and the DAG run that claimed the home (``_settings``) and passes them to its step.
SETTINGS = Settings.from_env(os.environ)

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
    """The dbt models of one selection as a Cosmos group in WATCHER mode: ONE ``dbt build`` (the producer task, in the
    warehouse pool), then one sensor per model and per model's tests that reports that node's result from the
    producer's events. The producer runs dbt as ``brecha build`` does: dbt's ``dbtRunner`` in the task's process, with
    the environment of ``brecha.warehouse.dbt.dbt_env``, then lets go of the warehouse (``brecha.warehouse.dbt.release_warehouse``)."""
    group = DbtTaskGroup(
        group_id=group_id,
        project_config=ProjectConfig(
            dbt_project_path=DBT_PROJECT_DIR,
            manifest_path=MANIFEST,
            install_dbt_deps=False,  # dbt's package hub is unreachable here; the project has no packages
            env_vars=dbt_env(SETTINGS.home),  # BRECHA_HOME, DBT_TARGET_PATH, ... (the CLI's dbt runs with the same)
        ),
        profile_config=_profile(),
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.WATCHER,
            invocation_mode=InvocationMode.DBT_RUNNER,  # as brecha.warehouse.dbt.invoke: no dbt process start-up per group
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            select=select or [],
            exclude=exclude or [],
            # dbt build itself stops the models downstream of a failed test
            test_behavior=TestBehavior.AFTER_EACH,
        ),
        operator_args={"pool": POOL, "append_env": True, "install_deps": False, **RETRIES},
    )
    producer = group.children[f"{group_id}.{PRODUCER_WATCHER_TASK_ID}"]
    producer.tests_per_model = _tests_dbt_runs(group, select=select, exclude=exclude)
    # Cosmos skips a retried producer rather than build twice: a failed build fails the run, it is not retried
    producer.retries = 0
    # called after dbt, failed or not: the next task of this process (`dag.test()` runs them all in one) may open the
    # warehouse read-only
    producer.callback = release_warehouse
    for sensor in group.iter_tasks():
        if sensor is producer or sensor.task_id.endswith(PRODUCER_WATCHER_DONE_TASK_ID):
            continue
        # The sensors only read the producer's results (XCom): they wait for it to end, and take no warehouse
        # slot. They never retry: a retried Cosmos sensor runs dbt itself, outside the warehouse pool.
        producer >> sensor
        sensor.pool = "default_pool"
        sensor.retries = 0
    return group


def _tests_dbt_runs(group: DbtTaskGroup, *, select: list[str] | None, exclude: list[str] | None) -> dict[str, list[str]]:
    """Each model's tests that the producer's ``dbt build`` runs, for its test sensor to wait on.

    Cosmos lists under a model every test that touches it, including a test whose other parent this group's
    ``exclude`` leaves out with its children (``tag:needs_predictions+`` takes the relationship test of the priorities
    mart with it): dbt never runs that test, so the model's test sensor never got a status and passed having
    checked nothing. dbt's own rule is kept: a test runs when one of its parents is selected (eager indirect
    selection) and none is excluded."""
    from cosmos.dbt.selector import select_nodes

    graph = group.dbt_graph
    is_model = {uid for uid, n in graph.nodes.items() if n.resource_type.value != "test"}
    models = is_model & set(graph.filtered_nodes)
    # what the exclusion takes away from what the selection (or the whole project) holds
    excluded = (is_model & set(select_nodes(DBT_PROJECT_DIR, graph.nodes, select=select)) if select else is_model) - models
    runs = {model: [t for t in tests if not excluded.intersection(graph.nodes[t].depends_on)]
            for model, tests in graph.tests_per_model.items()}
    empty = sorted(m for m, tests in runs.items() if m in models and not tests)
    if empty:  # a test sensor would check nothing: fail the parse rather than show a green task that did nothing
        raise ValueError(f"dbt group {group.group_id}: models whose every test dbt leaves out: {empty}")
    return {m: tests for m, tests in runs.items() if tests}


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
    from brecha.orchestrate import steps

    def _settings(params: dict | None = None) -> Settings:
        seed = int(params["seed"]) if params else SETTINGS.seed
        return SETTINGS.replace(seed=seed, run_owner=dag_run_owner())

    @setup
    def claim() -> str:
        """Claim the home for this DAG run (brecha.core.runlock): a CLI run, or another DAG run, cannot interleave."""
        return str(run_step(steps.claim, _settings()))

    @teardown
    def release() -> bool:
        """Give the home back, whatever happened upstream (a teardown: it does not decide the run's state)."""
        return steps.release(_settings())

    @task
    def dbt_core_passed() -> str:
        """Runs only when every task of the dbt_core group succeeded: record it (publish requires it)."""
        return run_step(steps.record_build, _settings(), "dbt_core")

    @task
    def dbt_predictions_passed() -> str:
        return run_step(steps.record_build, _settings(), "dbt_predictions")

    @task
    def extract(params: dict | None = None) -> str:
        """The folder to ingest: ``input_dir`` as given, else freshly generated synthetic extracts."""
        if params["input_dir"]:
            return str(params["input_dir"])
        settings = _settings(params)
        run_step(steps.extract, settings, settings.paths.extracts, scale=float(params["scale"]))
        return str(settings.paths.extracts)

    @task
    def ingest(input_dir: str) -> str:
        return str(run_step(steps.ingest, _settings(), Path(input_dir)))

    @task
    def validate_landed() -> str:
        return str(run_step(steps.validate, _settings(), "landed"))

    @task
    def validate_marts() -> str:
        return str(run_step(steps.validate, _settings(), "marts"))

    @task
    def train(params: dict | None = None) -> str:
        """Train and compare the models; the run id is the XCom (publish records it)."""
        return run_step(steps.train, _settings(params)).run_id

    @task
    def clusters(params: dict | None = None) -> str:
        return str(run_step(steps.clusters, _settings(params)))

    @task
    def atlas() -> str:
        """The offline HTML atlas, from the serving copy just published (read-only)."""
        return str(run_step(steps.atlas, _settings()))

    @task
    def publish(model_run_id: str | None) -> str:  # ("run_id" is a reserved name in an Airflow task's context)
        return str(run_step(steps.publish, _settings(), run_id=model_run_id))

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
