"""The Great Expectations gates: both suites pass on the synthetic warehouse and fail, with a message naming
the suite, the expectation and the offending values, on doctored copies of it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import duckdb
import pytest

from brecha.errors import GateFailed
from brecha.gx import suites
from brecha.layouts import LAYOUTS
from brecha.validate import validate

LATEST_ROWS = ("_source_sha256 in (select sha256 from raw._batch_files where batch_id = "
               "(select max(batch_id) from raw._batches where status = 'ok') and entity = '{entity}')")


@pytest.fixture
def doctored(built_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A copy of the synthetic warehouse in a fresh BRECHA_HOME, changed by the given SQL statements."""

    def _doctor(*statements: str) -> Path:
        home = tmp_path / "doctored"
        home.mkdir()
        for f in built_home.glob("brecha.duckdb*"):
            shutil.copy2(f, home / f.name)
        with duckdb.connect(str(home / "brecha.duckdb")) as con:
            for sql in statements:
                con.execute(sql)
        monkeypatch.setenv("BRECHA_HOME", str(home))
        return home

    return _doctor


def _results(home: Path, run_id: str | None = None) -> list[tuple]:
    """Rows of ops.validation_results (of one validation run when ``run_id`` is given: the table keeps every run,
    those of the session's `brecha run` included)."""
    with duckdb.connect(str(home / "brecha.duckdb"), read_only=True) as con:
        return con.execute("select gate, suite, expectation, column_name, success, observed_value, unexpected_sample "
                           "from ops.validation_results where ? is null or run_id = ?", [run_id, run_id]).fetchall()


def test_every_layout_has_a_landed_suite_requiring_its_columns() -> None:
    landed = {s.table: s for s in suites.load("landed")}
    for layout in LAYOUTS:
        assert layout.entity in landed, f"no expectations/landed/{layout.entity}.json"
        column_sets = [e["kwargs"]["column_set"] for e in landed[layout.entity].expectations
                       if e["type"] == "expect_table_columns_to_match_set"]
        required = {c.name for c in layout.columns if c.required}
        assert column_sets and required <= set(column_sets[0]), layout.entity


def test_suites_pass_on_the_synthetic_warehouse(built_home: Path, tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "copy"
    home.mkdir()
    for f in built_home.glob("brecha.duckdb*"):
        shutil.copy2(f, home / f.name)
    monkeypatch.setenv("BRECHA_HOME", str(home))

    summary = validate("all")

    assert summary.failed == []
    checked = {c.suite for c in summary.checks}
    assert {"landed.inei__census_indicators", "landed.inei__enaho_households", "landed.osiptel__mobile_coverage",
            "marts.dim_districts", "marts.fct_district_connectivity", "marts.mart_digital_divide_index"} <= checked
    # a single landing batch: nothing to compare the row counts with, so those expectations are left out
    left_out = [c for c in summary.checks if c.success is None]
    assert left_out and all("previous_rows" in c.observed for c in left_out)
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

    from brecha.gx.offline import remote_links

    site = index.parent
    assert remote_links(site) == {}
    dom = dump_dom(index.as_uri(), tmp_path)
    assert 'class="bootstrap-table' in dom  # built by bootstrap-table's script at load time
    rows = re.findall(r'<tr[^>]*data-index="\d+"', dom)
    assert len(rows) >= 15, f"{len(rows)} rows in the Data Docs index"  # one per suite validated (15 suites)
    assert "marts.dim_districts" in visible_text(dom)
    for ref in re.findall(r'<(?:link|script)[^>]*?(?:href|src)="([^"#?]+\.(?:css|js))"', index.read_text()):
        assert (site / ref).is_file(), f"{ref} linked by the index is not in the site"
    page = next(site.glob("validations/**/*.html"))
    text = visible_text(dump_dom(page.as_uri(), tmp_path))
    assert "Overview" in text and "Expectation" in text


def test_census_shares_as_fractions_fail_the_landed_gate(doctored) -> None:
    """Shares written as 0-1 fractions pass landing (they are within 0-100) but not the plausibility band."""
    home = doctored("update raw.inei__census_indicators set internet = internet / 100 where "
                    + LATEST_ROWS.format(entity="inei__census_indicators"))

    with pytest.raises(GateFailed) as err:
        validate("landed")

    msg = str(err.value)
    assert "landed.inei__census_indicators" in msg and "expect_column_mean_to_be_between(column=internet" in msg
    failed = [r for r in _results(home) if r[4] is False]
    assert [(r[1], r[2], r[3]) for r in failed] == [
        ("landed.inei__census_indicators", "expect_column_mean_to_be_between", "internet")]
    assert float(failed[0][5]) < 1 and failed[0][5] in msg


def test_negative_survey_weight_is_named_with_its_file_and_row(doctored) -> None:
    home = doctored("update raw.inei__enaho_households set factor07 = -factor07 where _row_number = 7 and "
                    + LATEST_ROWS.format(entity="inei__enaho_households"))
    with duckdb.connect(str(home / "brecha.duckdb"), read_only=True) as con:
        file, weight = con.execute("select _source_file, factor07 from raw.inei__enaho_households where factor07 < 0 "
                                   "order by _source_file limit 1").fetchone()

    with pytest.raises(GateFailed) as err:
        validate("landed")

    msg = str(err.value)
    assert "landed.inei__enaho_households" in msg and "column=factor07" in msg
    assert f"{weight!r} ({file} row 7)" in msg


def test_row_count_collapse_against_the_previous_load_fails(doctored) -> None:
    """The previous batch from the same folder landed every census row; this one only a third of them."""
    entity = "inei__census_indicators"
    home = doctored(
        "insert into raw._batches select 0, started_at - interval 1 day, finished_at - interval 1 day, input_dir, 'ok' "
        "from raw._batches where batch_id = (select max(batch_id) from raw._batches where status = 'ok')",
        f"insert into raw._batch_files select 0, entity, source_file, 'previous-' || sha256, size_bytes, rows_landed, "
        f"rows_rejected, true, archived_as from raw._batch_files where entity = '{entity}' and batch_id = "
        f"(select max(batch_id) from raw._batches where status = 'ok')",
        f"insert into raw.{entity} select * replace ('previous-' || _source_sha256 as _source_sha256) "
        f"from raw.{entity} where " + LATEST_ROWS.format(entity=entity),
        f"delete from raw.{entity} where _row_number % 3 <> 0 and " + LATEST_ROWS.format(entity=entity),
    )
    with duckdb.connect(str(home / "brecha.duckdb"), read_only=True) as con:
        previous, now = con.execute(
            f"select count(*) filter (_source_sha256 like 'previous-%'), count(*) filter (_source_sha256 not like "
            f"'previous-%') from raw.{entity}").fetchone()

    with pytest.raises(GateFailed) as err:
        validate("landed")

    msg = str(err.value)
    assert f"suite landed.{entity}" in msg and "expect_table_row_count_to_be_between" in msg and f"observed {now}" in msg
    with duckdb.connect(str(home / "brecha.duckdb"), read_only=True) as con:
        bounds = con.execute("select kwargs->>'min_value', kwargs->>'max_value' from ops.validation_results "
                             "where suite = ? and expectation = 'expect_table_row_count_to_be_between' "
                             "and not success", [f"landed.{entity}"]).fetchall()
    # the census must also cover the district reference: that expectation fails too, with other bounds
    # (GX rounds row-count bounds to whole rows)
    assert any(abs(float(lo) - previous * 0.5) < 1 and abs(float(hi) - previous * 1.5) < 1 for lo, hi in bounds)


def test_duplicated_district_and_out_of_range_index_fail_the_marts_gate(doctored) -> None:
    home = doctored(
        "insert into marts.mart_digital_divide_index select * from marts.mart_digital_divide_index "
        "order by ubigeo limit 1",
        "update marts.mart_digital_divide_index set divide_index = 140 where national_rank = 1",
    )
    with duckdb.connect(str(home / "brecha.duckdb"), read_only=True) as con:
        dup = con.execute("select min(ubigeo) from marts.mart_digital_divide_index").fetchone()[0]

    with pytest.raises(GateFailed) as err:
        validate("marts")

    msg = str(err.value)
    failed = {(r[1], r[2], r[3]) for r in _results(home) if r[4] is False}
    assert {("marts.mart_digital_divide_index", "expect_column_values_to_be_unique", "ubigeo"),
            ("marts.mart_digital_divide_index", "expect_table_row_count_to_be_between", None),
            ("marts.mart_digital_divide_index", "expect_column_values_to_be_between", "divide_index")} <= failed
    assert all(f[0] == "marts.mart_digital_divide_index" for f in failed)
    assert dup in msg and "140" in msg


def test_missing_mart_is_a_gate_failure(doctored) -> None:
    doctored("drop table marts.fct_district_connectivity")
    with pytest.raises(GateFailed, match="marts.fct_district_connectivity missing"):
        validate("marts")


def test_an_invalid_suite_file_is_reported_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "marts").mkdir()
    (tmp_path / "marts" / "broken.json").write_text(json.dumps({"name": "marts.broken", "expectations": []}))
    with pytest.raises(Exception, match="broken.json: not a valid expectation suite"):
        suites.load("marts", root=tmp_path)
