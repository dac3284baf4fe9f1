"""The Airflow DAG: it parses without errors from the committed project's manifest, renders the dbt models as
Cosmos tasks in the right order and pool, stops at the landed gate on a bad extract, and runs green end to end with
``dag.test()`` on the synthetic default.

The two DAG runs happen one after the other in ONE subprocess (one Airflow start-up, one DAG parse) with its own
AIRFLOW_HOME and BRECHA_HOME (brecha.orchestrate.airflow_local), started with the session (``dag_runs`` in
tests/conftest.py) so that it runs while the other tests do."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DAG_TEST_TIMEOUT, DagRuns

from brecha.core.settings import DAGS_DIR, DBT_PROJECT_DIR, Settings
from brecha.orchestrate.airflow_local import POOL, airflow_env, prepare

INSPECT = r"""
import json, time
started = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=%r)
seconds = time.perf_counter() - started
dag = bag.dags["brecha_pipeline"]
tasks = {t.task_id: {"pool": t.pool, "retries": t.retries, "backoff": t.retry_exponential_backoff,
                     "type": type(t).__name__,
                     "upstream": sorted(x.task_id for x in t.get_flat_relatives(upstream=True))} for t in dag.tasks}
print("BRECHA_DAGBAG " + json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dag_ids": bag.dag_ids,
      "seconds": seconds, "max_active_runs": dag.max_active_runs, "params": sorted(dag.params), "tasks": tasks}))
"""


def _env(settings: Settings, airflow_db: Path) -> dict[str, str]:
    """The environment of a DAG test's process: its settings, and a copy of the module's migrated metadata database in
    its own AIRFLOW_HOME."""
    env = airflow_env(settings)
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(airflow_db, Path(env["AIRFLOW_HOME"]) / airflow_db.name)
    return {**os.environ, **env}


@pytest.fixture(scope="module")
def airflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Airflow's metadata database, migrated once for the module with the warehouse pool (brecha.orchestrate.
    airflow_local.prepare: `airflow db migrate` costs ~13 s); every DAG test runs on a copy of it."""
    env = prepare(airflow_env(Settings(home=tmp_path_factory.mktemp("airflow_template"))))
    return Path(env["AIRFLOW_HOME"]) / "airflow.db"


def _tagged(line_tag: str, stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.startswith(line_tag + " ")]
    assert lines, f"no {line_tag} line in the output:\n{stdout[-3000:]}"
    return json.loads(lines[-1][len(line_tag) + 1 :])


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("dag_parse")
    # a fresh home, no metadata database: parsing the DAG folder needs neither (nor dbt: the manifest is current)
    proc = subprocess.run(
        [sys.executable, "-c", INSPECT % str(DAGS_DIR)],
        env={**os.environ, **airflow_env(Settings(home=home))},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _tagged("BRECHA_DAGBAG", proc.stdout)


def test_dag_folder_imports_without_errors(parsed: dict) -> None:
    print(f"DAG folder parsed in {parsed['seconds']:.1f} s from a fresh home (Cosmos LoadMode.DBT_MANIFEST)")
    assert parsed["errors"] == {}
    assert parsed["dag_ids"] == ["brecha_pipeline"]
    assert parsed["max_active_runs"] == 1
    assert parsed["params"] == ["input_dir", "scale", "seed"]


def test_dbt_models_are_cosmos_tasks_in_order_in_the_warehouse_pool(parsed: dict) -> None:
    tasks = parsed["tasks"]
    models = sorted(p.stem for p in (DBT_PROJECT_DIR / "models").rglob("*.sql"))
    run_tasks = {t for t in tasks if t.endswith("run")}
    missing = [m for m in models if not any(f".{m}" in t for t in run_tasks)]
    assert missing == [], f"dbt models without a Cosmos run task: {missing}"
    assert any(t.startswith("dbt_core.dim_districts") for t in run_tasks)
    assert any(t.startswith("dbt_predictions.mart_district_priorities") for t in run_tasks)
    assert not any(t.startswith("dbt_predictions.dim_districts") for t in tasks)
    # tests on the prediction marts (e.g. a relationship to dim_districts) run after them, never in the core group
    assert not any(t.startswith("dbt_core.") and "mart_district_priorities" in t for t in tasks)
    assert any(t.startswith("dbt_core.") and t.endswith("test") for t in tasks), "no dbt test tasks (AFTER_EACH)"

    # one `dbt build` per group (Cosmos WATCHER): the producer writes, in the warehouse pool; the sensors only
    # report its per-node results, after it, outside the pool (they would hold the one slot while it waits)
    producers = {t for t, v in tasks.items() if v["type"] == "DbtProducerWatcherOperator"}
    assert producers == {f"{g}.dbt_producer_watcher" for g in ("dbt_core", "dbt_predictions", "dbt_clusters")}
    sensors = {
        t
        for t, v in tasks.items()
        if v["type"] in ("DbtRunWatcherOperator", "DbtTestWatcherOperator", "DbtSeedWatcherOperator")
    }
    assert "dbt_core.district_boundary_crosswalk.seed" in sensors  # the seed is loaded by the core producer's build
    assert sensors and all(t.split(".")[0] + ".dbt_producer_watcher" in tasks[t]["upstream"] for t in sensors)
    assert {t: v["pool"] for t, v in tasks.items() if v["pool"] != POOL and t not in sensors} == {}
    assert all(tasks[t]["pool"] != POOL and tasks[t]["retries"] == 0 for t in sensors)
    # a retried producer is skipped by Cosmos (it never builds twice): a failed build fails the run at once
    assert all(tasks[t]["retries"] == 0 for t in producers)
    others = {t: v for t, v in tasks.items() if t not in sensors | producers}
    assert all(v["retries"] >= 1 and v["backoff"] for v in others.values())

    def upstream(task: str) -> set[str]:
        return set(tasks[task]["upstream"])

    core = {t for t in tasks if t.startswith("dbt_core.")}
    predictions = {t for t in tasks if t.startswith("dbt_predictions.")}
    assert {"extract", "ingest"} <= upstream("validate_landed")
    assert all("validate_landed" in upstream(t) for t in core)
    assert core | {"validate_landed"} <= upstream("validate_marts")
    assert "validate_marts" in upstream("train")
    assert all("train" in upstream(t) for t in predictions)
    assert predictions | core | {"train", "validate_marts"} <= upstream("publish")
    # the Cosmos groups' success is recorded per batch before what depends on it; the run claims the home
    assert core <= upstream("dbt_core_passed") and "dbt_core_passed" in upstream("validate_marts")
    assert predictions <= upstream("dbt_predictions_passed") and "dbt_predictions_passed" in upstream("publish")
    assert "claim" in upstream("extract") and {"claim", "publish"} <= upstream("release")


def test_the_dag_follows_the_step_list_that_brecha_run_follows(parsed: dict, pipeline_run) -> None:
    """One step list (brecha.orchestrate.plan.PIPELINE): `brecha run` ran its steps in its order, and in the DAG every
    task of a step runs after every task of the step before it; no step is left out, and nothing else is in between
    but the gate records after dbt groups."""
    from brecha.orchestrate.plan import PIPELINE

    assert list(pipeline_run.results) == [s.name for s in PIPELINE]  # the synthetic default: extract too
    tasks = parsed["tasks"]

    def members(name: str) -> set[str]:
        return {t for t in tasks if t == name or t.startswith(name + ".")}

    for earlier, later in zip(PIPELINE, PIPELINE[1:], strict=False):
        assert members(earlier.name) and members(later.name), (earlier.name, later.name)
        for t in members(later.name):
            assert members(earlier.name) <= set(tasks[t]["upstream"]), f"{t} may start before {earlier.name} ended"
    top = {t.split(".")[0] for t in tasks}
    assert top == {s.name for s in PIPELINE} | {"claim", "release", "dbt_core_passed", "dbt_predictions_passed"}


def test_bad_extract_stops_at_the_landed_gate_then_the_default_runs_green(dag_runs: DagRuns) -> None:
    """Census shares delivered as 0-1 fractions: every row passes landing (0 <= x <= 100), the gate stops the run.
    Then, in the same home and process, the synthetic default runs green end to end (both runs: ``dag_runs`` in
    tests/conftest.py, started with the session)."""
    home = dag_runs.home
    stopped, green = dag_runs.results

    states = stopped["tasks"]
    assert stopped["dag_run_state"] == "failed"
    assert (states["extract"], states["ingest"], states["validate_landed"]) == ("success", "success", "failed")
    # the claim on the home is taken first and given back at the end whatever happened (setup / teardown)
    assert (states["claim"], states["release"]) == ("success", "success")
    downstream = {
        t: s for t, s in states.items() if t not in ("claim", "extract", "ingest", "validate_landed", "release")
    }
    assert downstream and set(downstream.values()) == {"upstream_failed"}, downstream
    assert stopped["warehouse"]["marts"] == []
    assert stopped["warehouse"]["failed_expectations"] == [
        ["landed.inei__census_indicators", "expect_column_mean_to_be_between", "internet"]
    ]

    print(
        f"dag.test() of brecha_pipeline on synthetic scale 0.25: {green['seconds']:.0f} s "
        f"(the stopped run: {stopped['seconds']:.0f} s)"
    )
    not_green = {t: s for t, s in green["tasks"].items() if s != "success"}
    assert not_green == {} and green["dag_run_state"] == "success"
    assert "mart_district_priorities" in green["warehouse"]["marts"]
    # every dbt test sensor saw its model's tests reported by its group's `dbt build` (none passes having checked
    # nothing, as one did when Cosmos counted a test that the group's exclusion leaves out)
    sensors = [t.split(".") for t in green["tasks"] if t.endswith(".test")]
    unreported = [
        ".".join(t) for t in sensors if t[1] not in green["tests_reported"].get(f"{t[0]}.dbt_producer_watcher", [])
    ]
    assert sensors and unreported == [], unreported
    assert (home / "serving" / "brecha.duckdb").is_file()
    assert not (home / ".run.claim").exists()


# the part of the DAG a lake DAG test runs: the claim on the lake, the prediction marts' dbt group (a Cosmos producer
# and its sensors), its gate record and the release (the session's lake run built what they read)
LAKE_PART = r"claim|dbt_predictions(\..*)?|dbt_predictions_passed|release"


def test_the_dag_on_the_lake_builds_and_records_into_the_lake(
    lake_home: Path, lake_run: dict, airflow_db: Path
) -> None:
    """With the lake's settings (a shell that sourced lake.env), the DAG's Cosmos groups take the profile's `lake`
    target, with the attach string in a DBT_ENV_SECRET_ variable (as `brecha build`), and its Python tasks write the
    lake: its claim is in the catalog, the prediction marts' group rebuilds them in the lake, its gate is recorded
    there, and no embedded file appears. Only that part of the DAG runs (the session's lake run did the rest)."""
    from lake_fixtures import lake_settings

    from brecha.core import lake

    settings = lake_settings(lake_home)
    env = _env(settings, airflow_db)
    proc = subprocess.run(
        [
            sys.executable,
            str(DAGS_DIR / "run_dag_test.py"),
            json.dumps({"input_dir": "", "_only": LAKE_PART}),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=DAG_TEST_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = _tagged("BRECHA_DAG_TEST", proc.stdout)
    print(f"dag.test() of the prediction marts' group on the lake: {run['seconds']:.0f} s")
    assert run["dag_run_state"] == "success", run["tasks"]
    ran = set(run["tasks"])
    assert {"claim", "dbt_predictions.dbt_producer_watcher", "dbt_predictions_passed", "release"} <= ran
    assert all(re.fullmatch(LAKE_PART, t) for t in ran) and len(ran) > 10
    assert all(state == "success" for state in run["tasks"].values()), run["tasks"]
    # every dbt group's producer: the lake target, the attach string as a secret variable (dbt scrubs it from logs)
    assert run["dbt_producers"] and all(p["target"] == "lake" for p in run["dbt_producers"].values())
    assert all("DBT_ENV_SECRET_BRECHA_LAKE_ATTACH" in p["env"] for p in run["dbt_producers"].values())
    assert not any("BRECHA_LAKE" == k for p in run["dbt_producers"].values() for k in p["env"])
    # written into the lake: new snapshots past the lake run's publish, the gate recorded by this DAG run
    warehouse = run["warehouse"]
    assert warehouse["snapshot"] > lake_run["publish"].snapshot_version
    assert "mart_district_priorities" in warehouse["marts"] and not warehouse["embedded_file"]
    assert warehouse["gates"][-1][:3] == ["dbt_predictions", True, "every dbt task of the Airflow task group succeeded"]
    password = lake.Catalog.parse(settings.lake).password
    dbt_log = (lake_home / "dbt_logs" / "dbt.log").read_text(errors="replace")
    assert password not in dbt_log and password not in proc.stdout + proc.stderr
