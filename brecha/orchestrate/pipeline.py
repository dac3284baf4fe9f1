"""`brecha run`: every step in order, with progress and a closing summary. Exits non-zero on any failure."""

from __future__ import annotations

import dataclasses
import functools
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, TypeVar

from rich import box
from rich.console import Console
from rich.table import Table

from brecha.core.runlock import hold
from brecha.core.settings import Settings, using
from brecha.orchestrate import plan
from brecha.orchestrate.plan import PIPELINE, Inputs

if TYPE_CHECKING:
    import duckdb

    from brecha.extract.synthetic import ExtractResult
    from brecha.landing.result import IngestResult
    from brecha.serve.atlas import AtlasResult
    from brecha.warehouse.dbt import DbtSummary
    from brecha.warehouse.publish import PublishResult
    from brecha.warehouse.validate import ValidationSummary
    from brecha_ml.clusters import ClusterResult
    from brecha_ml.train import TrainResult


# Not a terminal (a log file, a pipe, Airflow): no line is wrapped at 80 columns and no colour code is written.
console = (Console(stderr=True) if sys.stderr.isatty()
           else Console(stderr=True, width=240, soft_wrap=True, no_color=True, highlight=False))


class RunResults(TypedDict, total=False):
    """What each step of ``brecha run`` returned (``extract`` only when no input folder was given)."""

    extract: ExtractResult
    ingest: IngestResult
    validate_landed: ValidationSummary
    dbt_core: DbtSummary
    validate_marts: ValidationSummary
    train: TrainResult
    dbt_predictions: DbtSummary
    clusters: ClusterResult
    dbt_clusters: DbtSummary
    publish: PublishResult
    atlas: AtlasResult


T = TypeVar("T")


def _step(name: str, fn: Callable[[], T]) -> T:
    started = time.perf_counter()
    with console.status(f"[bold]{name}[/bold] …"):
        result = fn()
    text = result.brief() if hasattr(result, "brief") else str(result)  # the extracts and files: counts, not lists
    console.print(f"[green]✓[/green] {name} ({time.perf_counter() - started:.1f} s): {text}")
    return result


def run_all(settings: Settings, input_dir: Path | None = None, scale: float = 1.0) -> RunResults:
    """Run the whole pipeline with ``settings`` (home, seed, ...); on synthetic extracts unless ``input_dir`` is given.
    The run holds the home's run lock from start to end (``brecha.core.runlock``): a second run on the same home stops
    at once, naming this one."""
    with using(settings), hold():
        return _run_all(settings, input_dir, scale)


def _warm_imports() -> None:
    """Import the later steps' libraries (Great Expectations, dbt, scikit-learn, PyTorch, PySAL: seconds of a run) in
    the background while the extracts are landed; the steps then find them imported (the run is shorter on two cores).
    A failure here is ignored: the step that needs the library imports it again and reports the error."""
    import importlib

    for name in ("great_expectations", "dbt.cli.main", "brecha_ml.train", "brecha_ml.clusters"):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001
            return


def _run_all(s: Settings, input_dir: Path | None, scale: float) -> RunResults:
    s.paths.ensure()
    results: RunResults = {}
    inputs = Inputs(input_dir=input_dir, scale=scale)
    for step in PIPELINE:
        if step.skipped(inputs):
            continue  # e.g. the synthetic extracts, when a folder of real ones was given
        if step.name == "ingest":
            # landing works in DuckDB, mostly without the GIL: meanwhile the later steps' libraries are imported
            threading.Thread(target=_warm_imports, name="brecha-warm-imports", daemon=True).start()
        if step.run_id_from:
            inputs = dataclasses.replace(inputs, run_id=results[step.run_id_from].run_id)  # type: ignore[literal-required]
        results[step.name] = _step(step.title, functools.partial(plan.run, step, s, inputs))  # type: ignore[literal-required]
    print_summary(results)
    return results


def print_summary(results: RunResults) -> None:
    from brecha.core.db import session, table_exists

    ingest = results.get("ingest")
    if ingest is not None:
        t = Table(title="Rows landed and rejected per source", **COMPACT)
        t.add_column("source")
        t.add_column("files", justify="right")
        t.add_column("landed", justify="right")
        t.add_column("rejected", justify="right")
        for entity, (files, landed, rejected) in sorted(ingest.per_entity().items()):
            t.add_row(entity, str(files), f"{landed:,}", f"{rejected:,}")
        console.print(t)
    tests = sum(r.tests_passed for step in PIPELINE if step.is_dbt and (r := results.get(step.name)) is not None)
    console.print(f"dbt tests passed: {tests}")
    from brecha.warehouse.coverage import gaps, map_counts

    with session(read_only=True) as con:
        counts = map_counts(con)
        lenses = table_exists(con, "marts", "mart_district_priorities")
        tables = _lens_tables(con) if lenses else [_divide_index_table(con)]
        empty = gaps(con)
        survey = survey_summary(con)
    if survey:
        console.print(survey, markup=False)
    for t in tables:
        console.print(t)
    if counts is not None:
        console.print(str(counts), markup=False)
    if empty:
        console.print(f"Left empty by this input ({len(empty)}): the input had no file of the layout that fills them "
                      "(add one to the folder and run again)", markup=False)
        for gap in empty:
            console.print(f"  - {gap}", markup=False)


# The closing tables: "where first?" through the divide lens, then the households-offline lens
# (marts.mart_district_priorities, scores in brecha_ml.priority); the divide index alone when no model has run.
LENS_ROWS = 5
COMPACT = {"box": box.SIMPLE_HEAD, "show_edge": False, "title_justify": "left"}  # no frame lines: the run stays short
LENS_COLUMNS = ("rank", "ubigeo", "district", "department", "internet %", "expected %", "divide index",
                "households offline")


def _lens_tables(con) -> list[Table]:
    out = []
    for rank, title in (
            ("priority_rank", "Where first, divide lens (priority_rank): widest divide, far below what the profile "
                              "predicts; for universal-service and rural programmes"),
            ("offline_priority_rank", "Where first, households-offline lens (offline_priority_rank): most households "
                                      "offline; for urban programmes")):
        rows = con.sql(f"""
            select {rank}, ubigeo, district, department, round(internet_pct, 1), round(predicted_internet_pct, 1),
                   round(divide_index, 1), round(households_offline)::bigint
            from marts.mart_district_priorities where {rank} is not null order by {rank} limit {LENS_ROWS}""").fetchall()
        t = Table(title=title, **COMPACT)
        for col in LENS_COLUMNS:
            t.add_column(col)
        for r in rows:
            *head, households = ("–" if v is None else str(v) for v in r)
            t.add_row(*head, "–" if r[-1] is None else f"{r[-1]:,}")
        out.append(t)
    return out


def _divide_index_table(con) -> Table:
    rows = con.sql("select national_rank, ubigeo, district, department, round(divide_index, 1) "
                   f"from marts.mart_digital_divide_index order by national_rank limit {LENS_ROWS}").fetchall()
    t = Table(title=f"The {LENS_ROWS} districts with the widest digital divide (divide index)", **COMPACT)
    for col in ("rank", "ubigeo", "district", "department", "divide index"):
        t.add_column(col)
    for r in rows:
        t.add_row(*(str(v) for v in r))
    return t


def survey_summary(con: duckdb.DuckDBPyConnection) -> str:
    """ENAHO's interviews left out (RESULT other than 1: blank ICT answers) and the 2023 questionnaire break, from
    fct_department_adoption_yearly; '' when it is empty."""
    row = con.execute(
        "SELECT sum(households_sampled), sum(households_incomplete), min(year), max(year), "
        "min(year) FILTER (WHERE is_series_break) FROM marts.fct_department_adoption_yearly").fetchone()
    complete, incomplete, first, last, brk = row
    if not complete:
        return ""
    total = complete + incomplete
    years = f"{first}" if first == last else f"{first}-{last}"
    text = (f"ENAHO {years}: {complete:,} complete interviews in the survey shares; {incomplete:,} not "
            f"completed (RESULT other than 1, {100 * incomplete / total:.1f} %) left out of numerator and denominator")
    if brk is not None:
        text += (f"; from {brk} P1144 counts any internet access (members' mobile data included): internet_pct "
                 f"and fixed_internet_pct are not comparable across {brk} (is_series_break)")
    return text
