"""What dags/brecha_pipeline.py still does to a Cosmos task group beyond Cosmos's public configuration (astronomer-cosmos
1.15.1, ``ExecutionMode.WATCHER``): each workaround names the Cosmos issue it works around; drop it when a release
fixes that issue."""

from __future__ import annotations

from cosmos import DbtTaskGroup
from cosmos.constants import PRODUCER_WATCHER_DONE_TASK_ID, PRODUCER_WATCHER_TASK_ID


def apply(group: DbtTaskGroup, *, select: list[str], exclude: list[str], project_dir) -> DbtTaskGroup:
    producer = group.children[f"{group.group_id}.{PRODUCER_WATCHER_TASK_ID}"]
    producer.tests_per_model = tests_dbt_runs(group, select=select, exclude=exclude, project_dir=project_dir)
    sensors_wait_for_the_producer(group, producer)
    return group


def sensors_wait_for_the_producer(group: DbtTaskGroup, producer) -> None:
    """The sensors only read the producer's results (XCom): each waits for the producer to end, takes no warehouse slot
    and never retries.

    Cosmos starts every consumer sensor with a synchronous poke on a worker before it defers
    (https://github.com/astronomer/astronomer-cosmos/issues/2811), so on a 2-core machine dozens of sensors took the
    executor's slots while the producer waited for one; and a retried sensor runs dbt itself, outside the warehouse
    pool (the fallback of https://github.com/astronomer/astronomer-cosmos/pull/2658), a second writer of DuckDB's
    one-writer file."""
    for sensor in group.iter_tasks():
        if sensor is producer or sensor.task_id.endswith(PRODUCER_WATCHER_DONE_TASK_ID):
            continue
        producer >> sensor
        sensor.pool = "default_pool"
        sensor.retries = 0


def tests_dbt_runs(group: DbtTaskGroup, *, select: list[str], exclude: list[str], project_dir) -> dict[str, list[str]]:
    """Each model's tests that the producer's ``dbt build`` runs, for its test sensor to wait on.

    Cosmos lists under a model every test that touches it, including a test whose other parent the group's ``exclude``
    leaves out with its children (``tag:needs_predictions+`` takes the relationship test of the priorities mart with
    it): dbt never runs that test, so the model's test sensor never got a status and passed having checked nothing
    (https://github.com/astronomer/astronomer-cosmos/issues/2981). dbt's own rule is kept: a test runs when one of its
    parents is selected (eager indirect selection) and none is excluded."""
    from cosmos.dbt.selector import select_nodes

    graph = group.dbt_graph
    is_model = {uid for uid, n in graph.nodes.items() if n.resource_type.value != "test"}
    models = is_model & set(graph.filtered_nodes)
    # what the exclusion takes away from what the selection (or the whole project) holds
    chosen = is_model & set(select_nodes(project_dir, graph.nodes, select=select)) if select else is_model
    excluded = chosen - models
    runs = {model: [t for t in tests if not excluded.intersection(graph.nodes[t].depends_on)]
            for model, tests in graph.tests_per_model.items()}
    empty = sorted(m for m, tests in runs.items() if m in models and not tests)
    if empty:  # a test sensor would check nothing: fail the parse rather than show a green task that did nothing
        raise ValueError(f"dbt group {group.group_id}: models whose every test dbt leaves out: {empty}")
    return {m: tests for m, tests in runs.items() if tests}
