"""Gate and build outcomes per batch (ops.batch_gates), written by the step functions the CLI and the DAG share."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from brecha.core.errors import BrechaError, GateFailed
from brecha.core.settings import current
from brecha.orchestrate import steps
from brecha.warehouse import gates
from brecha.warehouse.selectors import PREDICTION_MARTS


def test_dbt_selections_map_to_gates() -> None:
    assert gates.dbt_gates(None, None) == ("dbt_core", "dbt_predictions")
    assert gates.dbt_gates(None, PREDICTION_MARTS) == ("dbt_core",)
    assert gates.dbt_gates(PREDICTION_MARTS, None) == ("dbt_predictions",)
    assert gates.dbt_gates("dim_districts", None) == ()  # a partial build stands for no gate


def test_the_dbt_build_step_recorded_its_outcome_for_the_batch(session_home: Path) -> None:
    with duckdb.connect(str(session_home / "brecha.duckdb"), read_only=True) as con:
        batch = gates.latest_ok_batch(con)
        found = gates.outcomes(con, batch)
    assert found["dbt_core"][0] is True and "models" in found["dbt_core"][2]


def test_a_failed_landed_gate_is_recorded_and_publish_refuses(session_home: Path, tmp_path: Path, use_home) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy2(session_home / "brecha.duckdb", home / "brecha.duckdb")
    use_home(home)
    with duckdb.connect(str(home / "brecha.duckdb")) as con:  # census shares delivered as 0-1 fractions
        con.execute("UPDATE raw.inei__census_indicators SET internet = internet / 100")
        gates.record(("marts", "dbt_predictions"), True, "as if they had passed", con)
    with pytest.raises(GateFailed):
        steps.validate(current(), "landed")
    with duckdb.connect(str(home / "brecha.duckdb"), read_only=True) as con:
        found = gates.outcomes(con, gates.latest_ok_batch(con))
    assert found["landed"][0] is False and "expect_column_mean_to_be_between" in found["landed"][2]
    with pytest.raises(BrechaError, match=r"landed failed \(1 expectation"):
        steps.publish(current())
    assert not (home / "serving" / "brecha.duckdb").exists()


def test_the_latest_ok_batch_skips_a_newer_failed_batch(synthetic_dir: Path, brecha_home: Path, tmp_path: Path) -> None:
    """raw._latest_ok_batch, the one definition every reader uses (dbt staging, the gates, the GX batches): a
    newer batch that failed (an unusable file stopped it) is not the latest ok batch; an empty ledger has none."""
    from brecha.core.db import session
    from brecha.landing.ingest import ensure_tables, ingest
    from brecha.warehouse.gx.batches import latest_batch

    with session() as con:
        ensure_tables(con)
        assert gates.latest_ok_batch(con) is None
    good = tmp_path / "good"
    (good / "ref").mkdir(parents=True)
    shutil.copyfile(synthetic_dir / "ubigeo-aumentado" / "ubigeo_distrito.csv", good / "ref" / "ubigeo_distrito.csv")
    first = ingest(good).batch_id
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    (bad / "extra.csv").write_bytes(b"foo,bar\n1,2\n")
    with pytest.raises(BrechaError, match="unknown layout"):
        ingest(bad)

    with session(read_only=True) as con:
        statuses = con.execute("SELECT batch_id, status FROM raw._batches ORDER BY 1").fetchall()
        assert statuses == [(first, "ok"), (first + 1, "failed")]
        assert con.execute("SELECT batch_id, input_dir FROM raw._latest_ok_batch").fetchall() == [
            (first, str(good.resolve()))
        ]
        assert gates.latest_ok_batch(con) == first
        assert latest_batch(con) == (first, str(good.resolve()))
