"""The Great Expectations gates: both suites pass on the synthetic warehouse and fail, with a message naming
the suite, the expectation and the offending values, on doctored copies of it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import duckdb
import pytest

from brecha.core.errors import GateFailed
from brecha.core.layouts import LAYOUTS
from brecha.warehouse import gates
from brecha.warehouse.gx import suites
from brecha.warehouse.validate import validate

LATEST_ROWS = (
    "_source_sha256 in (select sha256 from raw._batch_files where batch_id = "
    "(select batch_id from raw._latest_ok_batch) and entity = '{entity}')"
)
DISTRICTS = "ubigeo-aumentado/ubigeo_distrito.csv"
CENSUS = "qhaway/indicadores-distrito.json"


@pytest.fixture
def doctored(session_home: Path, tmp_path: Path, use_home):
    """A copy of the synthetic warehouse in a fresh BRECHA_HOME, changed by the given SQL statements."""

    def _doctor(*statements: str) -> Path:
        home = tmp_path / "doctored"
        home.mkdir()
        for f in session_home.glob("brecha.duckdb*"):
            shutil.copy2(f, home / f.name)
        with duckdb.connect(str(home / "brecha.duckdb")) as con:
            for sql in statements:
                con.execute(sql)
        return use_home(home)

    return _doctor


def _results(home: Path, run_id: str | None = None) -> list[tuple]:
    """Rows of ops.validation_results (of one validation run when ``run_id`` is given: the table keeps every run,
    those of the session's `brecha run` included)."""
    with duckdb.connect(str(home / "brecha.duckdb"), read_only=True) as con:
        return con.execute(
            "select gate, suite, expectation, column_name, success, observed_value, unexpected_sample "
            "from ops.validation_results where ? is null or run_id = ?",
            [run_id, run_id],
        ).fetchall()


# What a gate between runs can say and the other layers cannot: volumes and distributions. A row rule (type,
# range, key) belongs to landing, a model invariant (key, relationship, range of a derived column) to dbt.
AGGREGATE_EXPECTATIONS = {
    "expect_table_row_count_to_be_between",
    "expect_column_mean_to_be_between",
    "expect_column_stdev_to_be_between",
    "expect_column_sum_to_be_between",
    "expect_column_unique_value_count_to_be_between",
}


def test_suites_hold_only_volume_and_distribution_checks() -> None:
    landed = {s.table: s for s in suites.load("landed")}
    assert set(landed) == {layout.entity for layout in LAYOUTS}
    for suite in [*landed.values(), *suites.load("marts")]:
        for e in suite.expectations:
            share_of_nulls = e["type"] == "expect_column_values_to_not_be_null" and "mostly" in e["kwargs"]
            assert e["type"] in AGGREGATE_EXPECTATIONS or share_of_nulls, (suite.name, e["type"], e["kwargs"])
    for suite in landed.values():  # every landed table is compared with its previous batch
        assert any(suite.parameters(e) == {"previous_rows"} for e in suite.expectations), suite.name


def test_suites_pass_on_the_synthetic_warehouse(session_home: Path, tmp_path: Path, use_home) -> None:
    home = tmp_path / "copy"
    home.mkdir()
    for f in session_home.glob("brecha.duckdb*"):
        shutil.copy2(f, home / f.name)
    use_home(home)

    summary = validate("all")

    assert summary.failed == []
    checked = {c.suite for c in summary.checks}
    assert {
        "landed.inei__census_indicators",
        "landed.inei__enaho_households",
        "landed.osiptel__mobile_coverage",
        "marts.dim_districts",
        "marts.fct_district_connectivity",
        "marts.mart_digital_divide_index",
    } <= checked
    # a single landing batch: nothing to compare the row counts with, so those expectations are left out
    left_out = [c for c in summary.checks if c.success is None]
    assert left_out and all("previous_" in c.observed for c in left_out)
    assert f"{len(left_out)} left out ({len(left_out)}: no earlier ok batch" in str(summary)  # says why
    assert summary.docs is not None and summary.docs.is_file()
    _data_docs_read_offline(summary.docs, tmp_path)
    (run_id,) = {c.run_id for c in summary.checks}
    rows = _results(home, run_id)
    assert len(rows) == len(summary.checks)
    assert {r[0] for r in rows} == {"landed", "marts"} and not any(r[4] is False for r in rows)


def _data_docs_read_offline(index: Path, tmp_path: Path) -> None:
    """The page errors point to, opened from disk by Chromium with no network: styled by the site's own Bootstrap,
    and its table of validation results filled by the site's own bootstrap-table (both come from CDNs in GX)."""
    from browser import dump_dom, visible_text

    from brecha.warehouse.gx.offline import remote_links

    site = index.parent
    assert remote_links(site) == {}
    dom = dump_dom(index.as_uri(), tmp_path)
    assert 'class="bootstrap-table' in dom  # built by bootstrap-table's script at load time
    rows = re.findall(r'<tr[^>]*data-index="\d+"', dom)
    assert len(rows) >= 16, f"{len(rows)} rows in the Data Docs index"  # one per suite validated (16 suites)
    assert "marts.dim_districts" in visible_text(dom)
    for ref in re.findall(r'<(?:link|script)[^>]*?(?:href|src)="([^"#?]+\.(?:css|js))"', index.read_text()):
        assert (site / ref).is_file(), f"{ref} linked by the index is not in the site"
    page = next(site.glob("validations/**/*.html"))
    text = visible_text(dump_dom(page.as_uri(), tmp_path))
    assert "Overview" in text and "Expectation" in text


def test_census_shares_as_fractions_fail_the_landed_gate(doctored) -> None:
    """Shares written as 0-1 fractions pass landing (they are within 0-100) but not the plausibility band."""
    home = doctored(
        "update raw.inei__census_indicators set internet = internet / 100 where "
        + LATEST_ROWS.format(entity="inei__census_indicators")
    )

    with pytest.raises(GateFailed) as err:
        validate("landed")

    msg = str(err.value)
    assert "landed.inei__census_indicators" in msg and "expect_column_mean_to_be_between(column=internet" in msg
    failed = [r for r in _results(home) if r[4] is False]
    assert [(r[1], r[2], r[3]) for r in failed] == [
        ("landed.inei__census_indicators", "expect_column_mean_to_be_between", "internet")
    ]
    assert float(failed[0][5]) < 1 and failed[0][5] in msg


def _ingest_census(folder: Path, census: list[dict]) -> None:
    from brecha.landing.ingest import ingest

    (folder / CENSUS).write_text(json.dumps(census), encoding="utf-8")
    ingest(folder)


def test_a_drift_from_the_previous_batch_fails_the_landed_gate(
    synthetic_dir: Path, brecha_home: Path, tmp_path: Path
) -> None:
    """Three landings of the same folder: the census as published; then its internet shares half as large again
    (every row still valid, the mean still within its plausibility band); then a third of its districts."""
    folder = tmp_path / "extracts"
    (folder / CENSUS).parent.mkdir(parents=True)
    (folder / DISTRICTS).parent.mkdir(parents=True)
    shutil.copyfile(synthetic_dir / DISTRICTS, folder / DISTRICTS)
    census = json.loads((synthetic_dir / CENSUS).read_text(encoding="utf-8"))
    _ingest_census(folder, census)
    with duckdb.connect(str(brecha_home / "brecha.duckdb"), read_only=True) as con:
        first_mean = con.execute("select avg(internet) from raw.inei__census_indicators").fetchone()[0]

    def more(v: object) -> object:
        return min(100.0, v * 1.5) if isinstance(v, int | float) else v

    shifted = [{**r, "internet": more(r["internet"])} for r in census]
    _ingest_census(folder, shifted)
    with pytest.raises(GateFailed) as err:
        validate("landed")
    failed = [(r[1], r[2], r[3]) for r in _results(brecha_home) if r[4] is False]
    assert failed == [("landed.inei__census_indicators", "expect_column_mean_to_be_between", "internet")]
    assert "expect_column_mean_to_be_between(column=internet, min_value=" in str(err.value)
    with duckdb.connect(str(brecha_home / "brecha.duckdb"), read_only=True) as con:
        low, high = con.execute(
            "select (kwargs->>'min_value')::double, (kwargs->>'max_value')::double "
            "from ops.validation_results where success = false"
        ).fetchone()
    assert low == pytest.approx(first_mean * 0.8, rel=1e-6) and high == pytest.approx(first_mean * 1.2, rel=1e-6)

    third = shifted[::3]
    _ingest_census(folder, third)
    with pytest.raises(GateFailed) as err:
        validate("landed")
    msg = str(err.value)
    with duckdb.connect(str(brecha_home / "brecha.duckdb"), read_only=True) as con:
        ((previous, now),) = con.execute(  # rows landed (the extracts' quirks are rejected) by batches 2 and 3
            "select list(rows_landed order by batch_id) from raw._batch_files "
            "where entity = 'inei__census_indicators' and batch_id >= 2"
        ).fetchone()
        bounds = con.execute(
            "select (kwargs->>'min_value')::double, (kwargs->>'max_value')::double "
            "from ops.validation_results where not success "
            "and expectation = 'expect_table_row_count_to_be_between'"
        ).fetchall()
        gate = gates.outcomes(con, gates.latest_ok_batch(con))["landed"]
    assert "suite landed.inei__census_indicators" in msg and "expect_table_row_count_to_be_between" in msg
    assert now < 0.5 * previous and f"observed {now}" in msg
    # against the previous batch (GX rounds row-count bounds to whole rows); the census must also cover the
    # district reference, which fails too, with other bounds
    assert any(abs(lo - previous * 0.5) < 1 and abs(hi - previous * 1.5) < 1 for lo, hi in bounds)
    assert gate[0] is False and "expect_table_row_count_to_be_between" in gate[2]  # publish will refuse it


def test_districts_without_an_internet_share_fail_the_marts_gate_only_when_most_are_missing(doctored) -> None:
    """Districts without a census internet share are predicted, so some are normal; 95 % of them is a broken input."""
    home = doctored("update marts.fct_district_connectivity set internet_pct = null where hash(ubigeo) % 20 <> 0")
    with duckdb.connect(str(home / "brecha.duckdb"), read_only=True) as con:
        missing = con.execute(
            "select count(*) filter (internet_pct is null) / count(*) from marts.fct_district_connectivity"
        ).fetchone()[0]
    assert missing > 0.9

    with pytest.raises(GateFailed) as err:
        validate("marts")

    failed = [(r[1], r[2], r[3]) for r in _results(home) if r[4] is False]
    assert failed == [("marts.fct_district_connectivity", "expect_column_values_to_not_be_null", "internet_pct")]
    assert "mostly=0.1" in str(err.value)


def test_missing_mart_is_a_gate_failure(doctored) -> None:
    doctored("drop table marts.fct_district_connectivity")
    with pytest.raises(GateFailed, match="marts.fct_district_connectivity missing"):
        validate("marts")


def test_an_invalid_suite_file_is_reported_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "marts").mkdir()
    (tmp_path / "marts" / "broken.json").write_text(json.dumps({"name": "marts.broken", "expectations": []}))
    with pytest.raises(Exception, match="broken.json: not a valid expectation suite"):
        suites.load("marts", root=tmp_path)
