"""Run the brecha_pipeline DAG in-process with Airflow's ``dag.test()`` and print each run's task states as JSON.

Used by tests/test_dag.py (in a subprocess with its own AIRFLOW_HOME and BRECHA_HOME). Several configurations
run one after the other in the same process (one Airflow start-up, one DAG parse); after each run the line also
says what the warehouse holds (the mart tables built, the failed expectations), since the next run changes it.
It lives in the DAGs folder because Airflow 3.3 serialises that folder before ``dag.test()``. Importing it does
nothing.

usage: python dags/run_dag_test.py '{"input_dir": "", "seed": 42, "scale": 0.25}' ['{...}' ...]

A configuration's keys ``_only`` and ``_mark_success`` (regexes of task ids) are not passed to the run: the run has
only the tasks ``_only`` matches (``dag.partial_subset``, nothing upstream added), and those ``_mark_success`` matches
are marked successful without running (``dag.test(mark_success_pattern=...)``), so a test can run a part of the DAG. With the
lake's settings (BRECHA_LAKE, ...) the line says what the lake holds instead, and its gate records.
"""

from __future__ import annotations

import json
import re
import sys
import time


def warehouse() -> dict:
    """The mart tables in the warehouse and the failed expectations of the latest validation, if any."""
    import os

    import duckdb

    from brecha.core.settings import Settings

    settings = Settings.from_env(os.environ)  # a script: an entry point of its own
    if settings.storage == "lake":
        return lake(settings)
    db = settings.paths.db
    if not db.exists():
        return {"marts": [], "failed_expectations": []}
    with duckdb.connect(str(db), read_only=True) as con:
        marts = [t for (t,) in con.execute("select table_name from information_schema.tables "
                                           "where table_schema = 'marts' order by 1").fetchall()]
        try:
            failed = con.execute("select suite, expectation, column_name from ops.validation_results "
                                 "where not success order by 1, 2, 3").fetchall()
        except duckdb.CatalogException:
            failed = []
    return {"marts": marts, "failed_expectations": [list(r) for r in failed]}


def lake(settings) -> dict:
    """The lake's marts, its snapshots and its gate records (``ops.batch_gates``)."""
    from brecha.core.db import connect_lake
    from brecha.core.settings import using

    with using(settings), connect_lake(read_only=True) as con:
        marts = [t for (t,) in con.execute("select table_name from duckdb_tables() where database_name = 'lake' "
                                           "and schema_name = 'marts' order by 1").fetchall()]
        gates = con.execute("select gate, passed, detail, checked_at::varchar from ops.batch_gates "
                            "order by checked_at").fetchall()
        snapshot = con.execute("select id from lake.current_snapshot()").fetchone()[0]
    return {"marts": marts, "gates": [list(g) for g in gates], "snapshot": snapshot,
            "embedded_file": settings.paths.db.exists()}


def test_statuses(run) -> dict[str, list[str]]:
    """Per Cosmos producer task, the models whose aggregated test status it pushed (the XCom its test sensors read):
    a test sensor whose model is not listed checked nothing."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel.task_id, XComModel.key).filter(
            XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id,
            XComModel.key.like("%\\_tests\\_status", escape="\\")).all()
    out: dict[str, list[str]] = {}
    for task_id, key in rows:
        out.setdefault(task_id, []).append(key.removesuffix("_tests_status").split("__", 2)[-1])
    return {k: sorted(v) for k, v in out.items()}


def load_dag():
    """Parse the DAGs folder once for every configuration of this process."""
    from airflow.dag_processing.dagbag import DagBag

    from brecha.core.settings import DAGS_DIR

    bag = DagBag(dag_folder=str(DAGS_DIR))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    return bag.get_dag("brecha_pipeline")


def main(dag, conf: dict) -> dict:
    started = time.perf_counter()
    conf = dict(conf)
    mark_success = conf.pop("_mark_success", None)
    if only := conf.pop("_only", None):  # a part of the DAG: those tasks alone, without what is upstream
        dag = dag.partial_subset(task_ids=[t for t in dag.task_ids if re.fullmatch(only, t)], include_upstream=False)
    run = dag.test(run_conf=conf, mark_success_pattern=mark_success)
    states = {ti.task_id: getattr(ti.state, "value", ti.state) for ti in run.get_task_instances()}
    return {"dag_run_state": getattr(run.state, "value", run.state), "tasks": states,
            "seconds": time.perf_counter() - started, "warehouse": warehouse(), "tests_reported": test_statuses(run),
            "dbt_producers": producers(dag)}


def producers(dag) -> dict[str, dict]:
    """Each Cosmos producer task's dbt profile target and the names of the environment it gives dbt."""
    return {t.task_id: {"target": t.profile_config.target_name, "env": sorted(t.env or {})}
            for t in dag.tasks if type(t).__name__ == "DbtProducerWatcherOperator"}


if __name__ == "__main__":
    pipeline = load_dag()
    for arg in sys.argv[1:] or ["{}"]:
        print("BRECHA_DAG_TEST " + json.dumps(main(pipeline, json.loads(arg))), flush=True)
