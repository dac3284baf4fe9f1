"""Run the brecha_pipeline DAG once in-process with Airflow's ``dag.test()`` and print the task states as JSON.

Used by tests/test_dag.py (in a subprocess with its own AIRFLOW_HOME and BRECHA_HOME). It lives in the DAGs
folder because Airflow 3.3 serialises that folder before ``dag.test()``. Importing it does nothing.

usage: python dags/run_dag_test.py '{"input_dir": "", "seed": 42, "scale": 0.25}'
"""

from __future__ import annotations

import json
import sys


def main(conf: dict) -> dict[str, str]:
    from airflow.dag_processing.dagbag import DagBag

    from brecha.config import DAGS_DIR

    bag = DagBag(dag_folder=str(DAGS_DIR))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    run = bag.get_dag("brecha_pipeline").test(run_conf=conf)
    states = {ti.task_id: getattr(ti.state, "value", ti.state) for ti in run.get_task_instances()}
    return {"dag_run_state": getattr(run.state, "value", run.state), "tasks": states}


if __name__ == "__main__":
    print("BRECHA_DAG_TEST " + json.dumps(main(json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}"))))
