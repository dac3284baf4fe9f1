"""`brecha publish`: atomic swap, snapshots, rollback, refusals, readers never blocked, kill safety."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from brecha.core.errors import BrechaError
from brecha.core.layouts import BOOKKEEPING_DDL
from brecha.core.settings import paths
from brecha.warehouse import gates
from brecha.warehouse import publish as pub

REPO = Path(__file__).resolve().parents[1]


def make_warehouse(
    db: Path,
    *,
    districts: int = 30,
    batch_status: str = "ok",
    with_marts: bool = True,
    sha: str = "abc",
    gates_passed: bool | None = True,
) -> None:
    """A small warehouse shaped like the contract: bookkeeping, a raw bulk table, marts, ml; one more landing batch
    of one file (checksum ``sha``: its two rejects are stored once per checksum, as landing does), and the
    outcome of every gate for it (``gates_passed``; None: no gate ran)."""
    with duckdb.connect(str(db)) as con:
        for ddl in BOOKKEEPING_DDL:
            con.execute(ddl)
        con.execute("CREATE TABLE IF NOT EXISTS raw.inei__districts AS SELECT range AS id FROM range(500)")
        batch = con.execute("SELECT coalesce(max(batch_id), 0) + 1 FROM raw._batches").fetchone()[0]
        con.execute(
            "INSERT INTO raw._batches VALUES (?, now()::TIMESTAMP, now()::TIMESTAMP, '/in', ?)", [batch, batch_status]
        )
        con.execute(
            "INSERT INTO raw._batch_files VALUES (?, 'inei__districts', 'd.csv', ?, 10, 500, 2, true, 'a/abc')",
            [batch, sha],
        )
        if not con.execute("SELECT count(*) FROM raw._rejects WHERE _source_sha256 = ?", [sha]).fetchone()[0]:
            con.execute(
                """INSERT INTO raw._rejects VALUES ('d.csv', $1, now()::TIMESTAMP, 7, 'inei__districts', 'ubigeo',
                           '999999', 'unknown ubigeo', '{}'), ('d.csv', $1, now()::TIMESTAMP, 9, 'inei__districts',
                           'ubigeo', '999998', 'unknown ubigeo', '{}')""",
                [sha],
            )
        if gates_passed is not None:
            gates.record(gates.REQUIRED, gates_passed, "test warehouse", con)
        if with_marts:
            con.execute("CREATE SCHEMA IF NOT EXISTS marts")
            con.execute("CREATE SCHEMA IF NOT EXISTS staging")
            con.execute(f"""CREATE OR REPLACE TABLE marts.dim_districts AS
                SELECT lpad((10101 + range)::VARCHAR, 6, '0') AS ubigeo, 'D' || range AS district,
                       -9.0 - range / 100 AS latitude, -75.0 AS longitude FROM range({districts})""")
            con.execute(
                "CREATE OR REPLACE TABLE marts.fct_district_connectivity AS SELECT ubigeo, 10.0 AS internet_pct FROM marts.dim_districts"
            )
            con.execute("""CREATE OR REPLACE TABLE marts.mart_digital_divide_index AS
                SELECT ubigeo, 50.0 AS divide_index, row_number() OVER () AS national_rank FROM marts.dim_districts""")
            con.execute("CREATE OR REPLACE VIEW marts.v_ranked AS SELECT * FROM marts.mart_digital_divide_index")
            con.execute("CREATE OR REPLACE VIEW staging.stg_x AS SELECT 1 AS x")
            con.execute("CREATE SCHEMA IF NOT EXISTS ml")
            con.execute("""CREATE OR REPLACE TABLE ml.model_runs AS SELECT * FROM (VALUES
                ('run-a', TIMESTAMP '2024-01-01 00:00:00', 'ridge', true),
                ('run-b', TIMESTAMP '2024-02-01 00:00:00', 'ridge', true)) AS t(run_id, run_at, model_name, selected)""")


def count(db: Path, table: str) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def count_elsewhere(db: Path, table: str) -> int:
    """Count from another process, as Grafana does (within one process DuckDB reuses an open file's instance)."""
    code = f"import duckdb; print(duckdb.connect({str(db)!r}, read_only=True).execute('SELECT count(*) FROM {table}').fetchone()[0])"
    return int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


@pytest.fixture
def home(brecha_home: Path) -> Path:
    make_warehouse(paths().db)
    return brecha_home


def test_publish_copies_reader_tables_only_and_records_itself(home: Path) -> None:
    result = pub.publish()
    p = paths()
    assert result.serving_db == p.serving_db and p.serving_db.exists()
    with duckdb.connect(str(p.serving_db), read_only=True) as con:
        tables = {f"{s}.{t}" for s, t in con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()}
        assert {
            "marts.dim_districts",
            "marts.fct_district_connectivity",
            "marts.mart_digital_divide_index",
            "marts.v_ranked",
            "ml.model_runs",
            "raw._batches",
            "raw._batch_files",
            "ops.snapshots",
            "ops.rejects_summary",
            "ops.validation_results",
        } <= tables
        assert "raw.inei__districts" not in tables and "raw._rejects" not in tables
        assert not any(t.startswith("staging.") for t in tables)
        assert con.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchone()[0] == 0
        inner = con.execute("SELECT snapshot_id, run_id, batch_id, row_counts::VARCHAR FROM ops.snapshots").fetchall()
        reasons = con.execute("SELECT reason, rows_rejected FROM ops.rejects_summary").fetchall()
    assert reasons == [("unknown ubigeo", 2)]
    assert len(inner) == 1 and inner[0][:3] == (result.snapshot_id, "run-b", 1)  # latest run by run_at
    assert '"marts.dim_districts": 30' in inner[0][3]
    assert result.row_counts["marts.dim_districts"] == count(p.db, "marts.dim_districts") == 30
    with duckdb.connect(str(p.db), read_only=True) as con:
        logged = con.execute("SELECT snapshot_id, action, sha256, size_bytes FROM ops.snapshots").fetchall()
    assert logged == [(result.snapshot_id, "publish", pub.sha256_of(p.serving_db), p.serving_db.stat().st_size)]
    assert result.snapshot.exists() and pub.sha256_of(result.snapshot) == result.sha256
    assert not (p.serving_db.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    assert [f.name for f in p.serving.iterdir() if f.name.endswith(pub.TMP_SUFFIX)] == []


def test_reader_connection_is_read_only_and_never_blocks_publish(home: Path) -> None:
    pub.publish()
    p = paths()
    reader = duckdb.connect(str(p.serving_db), read_only=True)
    try:
        with pytest.raises(duckdb.Error):
            reader.execute("CREATE TABLE marts.hack AS SELECT 1")
        with pytest.raises(duckdb.Error):
            reader.execute("DELETE FROM marts.dim_districts")
        make_warehouse(p.db, districts=45)  # the warehouse changes; the reader stays open
        pub.publish()
        # the open reader keeps its (old) file; a new reader in another process sees the new one
        assert reader.execute("SELECT count(*) FROM marts.dim_districts").fetchone()[0] == 30
        assert count_elsewhere(p.serving_db, "marts.dim_districts") == 45
    finally:
        reader.close()


def test_refuses_without_marts_and_leaves_serving_copy_untouched(home: Path) -> None:
    pub.publish()
    p = paths()
    before = pub.sha256_of(p.serving_db)
    with duckdb.connect(str(p.db)) as con:
        con.execute("DROP VIEW marts.v_ranked")
        con.execute("DROP TABLE marts.mart_digital_divide_index")
    with pytest.raises(BrechaError, match=r"lacks marts\.mart_digital_divide_index.*brecha build"):
        pub.publish()
    assert pub.sha256_of(p.serving_db) == before
    assert len(pub.list_snapshots()) == 1


def test_refuses_when_latest_batch_failed(home: Path) -> None:
    pub.publish()
    p = paths()
    before = pub.sha256_of(p.serving_db)
    make_warehouse(p.db, batch_status="failed")
    with pytest.raises(BrechaError, match=r"batch 2 .* status 'failed'"):
        pub.publish()
    assert pub.sha256_of(p.serving_db) == before


def test_refuses_unless_the_latest_batch_passed_every_gate_and_build(home: Path) -> None:
    from brecha.orchestrate.cli import cli

    pub.publish()
    p = paths()
    before = pub.sha256_of(p.serving_db)
    make_warehouse(p.db, districts=20, gates_passed=None)  # a new batch landed; no gate ran on it
    with pytest.raises(BrechaError, match=r"refusing to publish batch 2.*landed has no recorded result"):
        pub.publish()
    with duckdb.connect(str(p.db)) as con:  # the landed gate passed, then the dbt build failed
        gates.record("landed", True, "ok", con)
        gates.record(("dbt_core", "dbt_predictions"), False, "dbt build failed: not_null_dim_districts_ubigeo", con)
        gates.record("marts", True, "ok", con)
    out = CliRunner().invoke(cli, ["publish"])  # `brecha publish` on its own refuses too
    assert out.exit_code != 0 and "dbt_core failed (dbt build failed: not_null_dim_districts_ubigeo)" in str(
        out.exception
    )
    assert pub.sha256_of(p.serving_db) == before and count(p.serving_db, "marts.dim_districts") == 30
    with duckdb.connect(str(p.db)) as con:  # a later pass of the build undoes the failure
        gates.record(("dbt_core", "dbt_predictions"), True, "ok", con)
    assert pub.publish().row_counts["marts.dim_districts"] == 20


def test_publish_records_what_it_checked_and_the_served_batch_rejects(home: Path) -> None:
    first = pub.publish()
    p = paths()
    make_warehouse(p.db, districts=31, sha="def")  # batch 2: another file, with its own two rejects
    with duckdb.connect(str(p.db)) as con:
        con.execute("DELETE FROM raw._rejects WHERE _source_sha256 = 'def' AND _row_number = 9")
    second = pub.publish()
    for db in (p.db, p.serving_db):
        with duckdb.connect(str(db), read_only=True) as con:
            checked = con.execute(
                "SELECT snapshot_id, batch_id, gate, passed FROM ops.publish_checks ORDER BY batch_id, gate"
            ).fetchall()
        assert checked == [(first.snapshot_id, 1, g, True) for g in sorted(gates.REQUIRED)] + [
            (second.snapshot_id, 2, g, True) for g in sorted(gates.REQUIRED)
        ]
    with duckdb.connect(str(p.serving_db), read_only=True) as con:
        summary = con.execute("SELECT batch_id, reason, rows_rejected FROM ops.rejects_summary").fetchall()
    assert summary == [(2, "unknown ubigeo", 1)]  # not the two of batch 1's file


def test_refuses_an_empty_home(brecha_home: Path) -> None:
    with pytest.raises(BrechaError, match="no warehouse"):
        pub.publish()
    assert not paths().serving_db.exists()


def test_copy_step_raising_leaves_old_copy_whole(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pub.publish()
    p = paths()
    before = pub.sha256_of(p.serving_db)
    real = pub.build_serving_file

    def broken(con, src, target, snapshot_row=None):
        real(con, src, target, snapshot_row)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(pub, "build_serving_file", broken)
    make_warehouse(p.db, districts=50)
    with pytest.raises(OSError, match="simulated"):
        pub.publish()
    assert pub.sha256_of(p.serving_db) == before
    assert count(p.serving_db, "marts.dim_districts") == 30
    assert [f.name for f in p.serving.iterdir() if pub.TMP_SUFFIX in f.name] == []


KILLED_PUBLISH = textwrap.dedent("""
    import sys, time
    from brecha.warehouse import publish as pub

    real = pub.build_serving_file

    class SlowCon:
        '''Delegates to the warehouse connection; stalls after the first table has been copied.'''
        def __init__(self, con):
            self.con, self.tables = con, 0
        def execute(self, sql, *args):
            if sql.startswith("CREATE TABLE serving."):
                self.tables += 1
                if self.tables == 2:
                    print("MIDWAY", flush=True)
                    time.sleep(120)
            return self.con.execute(sql, *args)
        def __getattr__(self, name):
            return getattr(self.con, name)

    pub.build_serving_file = lambda con, src, target, snapshot_row=None: real(SlowCon(con), src, target, snapshot_row)
    import os
    from brecha.core.settings import Settings, using
    with using(Settings.from_env(os.environ)):  # a script: an entry point of its own
        pub.publish()
""")


def test_publish_killed_midway_leaves_old_copy_whole(home: Path) -> None:
    pub.publish()
    p = paths()
    before = pub.sha256_of(p.serving_db)
    make_warehouse(p.db, districts=60)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_PUBLISH],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "BRECHA_HOME": str(home)},
        cwd=REPO,
    )
    try:
        assert proc.stdout.readline().strip() == "MIDWAY"
        leftovers = [f for f in p.serving.iterdir() if pub.TMP_SUFFIX in f.name]
        assert leftovers, "the killed publish should have been writing a temporary file"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert pub.sha256_of(p.serving_db) == before
    assert count(p.serving_db, "marts.dim_districts") == 30
    orphan = p.serving / "snapshots" / "20000101T000000000000Z.duckdb"  # a snapshot copy cut short
    orphan.write_bytes(b"partial")
    result = pub.publish()  # the next publish works and sweeps the leftovers
    assert result.row_counts["marts.dim_districts"] == 60
    assert [f.name for f in p.serving.iterdir() if pub.TMP_SUFFIX in f.name] == []
    assert not orphan.exists() and [m["snapshot_id"] for m in pub.list_snapshots()][-1] == result.snapshot_id


def test_rollback_restores_previous_snapshot(home: Path) -> None:
    p = paths()
    first = pub.publish()
    make_warehouse(p.db, districts=40)
    second = pub.publish()
    assert count(p.serving_db, "marts.dim_districts") == 40
    reader = duckdb.connect(str(p.serving_db), read_only=True)  # readers don't block a rollback either
    try:
        back = pub.rollback()
        assert count_elsewhere(p.serving_db, "marts.dim_districts") == 30
    finally:
        reader.close()
    assert back.action == "rollback" and back.snapshot_id == first.snapshot_id
    assert pub.sha256_of(p.serving_db) == first.sha256 != second.sha256
    assert count(p.serving_db, "marts.dim_districts") == 30
    with duckdb.connect(str(p.db), read_only=True) as con:
        actions = con.execute("SELECT action, snapshot_id FROM ops.snapshots ORDER BY published_at").fetchall()
    assert actions == [("publish", first.snapshot_id), ("publish", second.snapshot_id), ("rollback", first.snapshot_id)]
    with pytest.raises(BrechaError, match="oldest kept snapshot"):
        pub.rollback()
    assert pub.sha256_of(p.serving_db) == first.sha256


def test_keeps_the_newest_snapshots_only(home: Path) -> None:
    ids = [pub.publish().snapshot_id for _ in range(pub.KEEP_SNAPSHOTS + 2)]
    kept = [m["snapshot_id"] for m in pub.list_snapshots()]
    assert kept == ids[-pub.KEEP_SNAPSHOTS :]
    assert len(list((paths().serving / "snapshots").glob("*.duckdb"))) == pub.KEEP_SNAPSHOTS


def test_cli_publish_and_rollback(home: Path) -> None:
    from brecha.orchestrate.cli import cli

    runner = CliRunner()
    out = runner.invoke(cli, ["publish"])
    assert out.exit_code == 0, out.output
    assert "published snapshot" in out.output and "marts.dim_districts 30" in out.output
    make_warehouse(paths().db, districts=31)
    assert runner.invoke(cli, ["publish"]).exit_code == 0
    out = runner.invoke(cli, ["publish", "--rollback"])
    assert out.exit_code == 0, out.output
    assert "rolled back to snapshot" in out.output
    assert count(paths().serving_db, "marts.dim_districts") == 30


def test_every_publish_and_rollback_gives_the_serving_file_a_newer_mtime(home: Path) -> None:
    """Grafana's plugin reloads the file only when its mtime is newer than the last it saw."""
    p = paths()
    pub.publish()
    future = p.serving_db.stat().st_mtime_ns + 3600 * 10**9  # e.g. a clock set back since, or a copied mtime
    os.utime(p.serving_db, ns=(future, future))
    make_warehouse(p.db, districts=40)
    pub.publish()
    after_publish = p.serving_db.stat().st_mtime_ns
    assert after_publish > future
    pub.rollback()
    assert p.serving_db.stat().st_mtime_ns > after_publish
    assert count(p.serving_db, "marts.dim_districts") == 30


def test_grafana_plugin_file_watch_sees_every_publish_and_rollback(home: Path) -> None:
    """The plugin checks for a new file with Go's ``os.Stat(path)`` on the provisioned path string itself, DSN
    options included (pkg/plugin/datasource.go); the same stat here must see each new file's mtime."""
    p = paths()
    watched = pub.grafana_watch_name()
    assert watched.startswith(p.serving_db.name + "?") and "access_mode=read_only" in watched

    def plugin_stat() -> int:
        return os.stat(str(p.serving / watched)).st_mtime_ns  # follows symlinks, as Go's os.Stat does

    pub.publish()
    first = plugin_stat()
    assert first == p.serving_db.stat().st_mtime_ns
    make_warehouse(p.db, districts=40)
    pub.publish()
    second = plugin_stat()
    assert second > first and count(p.serving / watched, "marts.dim_districts") == 40
    pub.rollback()
    assert plugin_stat() > second and count(p.serving / watched, "marts.dim_districts") == 30


def test_serve_any_kept_snapshot_by_id_back_and_forward(home: Path) -> None:
    """Two rollbacks go back twice; `serve` goes forward again by id (a prefix is enough), with the same swap:
    a newer mtime the Grafana plugin's watched path sees, and a row in ops.snapshots."""
    p = paths()
    ids = []
    for districts in (30, 40, 50):
        make_warehouse(p.db, districts=districts)
        ids.append(pub.publish().snapshot_id)
    watched = p.serving / pub.grafana_watch_name()
    assert pub.rollback().snapshot_id == ids[1] and pub.rollback().snapshot_id == ids[0]
    assert count(p.serving_db, "marts.dim_districts") == 30
    before = os.stat(watched).st_mtime_ns
    newest = pub.serve_snapshot(ids[2][:22])  # a unique prefix of the id
    assert newest.action == "serve" and newest.snapshot_id == ids[2]
    assert count_elsewhere(watched, "marts.dim_districts") == 50 and os.stat(watched).st_mtime_ns > before
    assert pub.serve_snapshot(ids[1]).snapshot_id == ids[1] and count(p.serving_db, "marts.dim_districts") == 40
    assert stat.S_IMODE(p.serving_db.stat().st_mode) == 0o444
    with duckdb.connect(str(p.db), read_only=True) as con:
        actions = con.execute("SELECT action, snapshot_id FROM ops.snapshots ORDER BY published_at").fetchall()
    assert actions[-2:] == [("serve", ids[2]), ("serve", ids[1])]
    listing = pub.snapshot_listing().splitlines()
    assert [line.split()[1] if line.startswith("*") else line.split()[0] for line in listing[1:4]] == ids
    assert [line.startswith("*") for line in listing[1:4]] == [False, True, False]
    with pytest.raises(BrechaError, match="is not one of the kept snapshots"):
        pub.serve_snapshot("19990101")
    assert count(p.serving_db, "marts.dim_districts") == 40  # a refused serve changes nothing


def test_cli_publish_list_and_serve(home: Path) -> None:
    from brecha.orchestrate.cli import cli

    runner = CliRunner()
    first = pub.publish().snapshot_id
    make_warehouse(paths().db, districts=31)
    second = pub.publish().snapshot_id
    out = runner.invoke(cli, ["publish", "--list"])
    assert out.exit_code == 0 and first in out.output and f"*  {second}" in out.output, out.output
    out = runner.invoke(cli, ["publish", "--serve", first])
    assert out.exit_code == 0 and f"now serving snapshot {first}" in out.output, out.output
    assert count(paths().serving_db, "marts.dim_districts") == 30
    assert runner.invoke(cli, ["publish", "--list", "--rollback"]).exit_code == 2  # one action at a time


HOLD_WAREHOUSE = textwrap.dedent("""
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])  # a writer (a run in progress) holds the warehouse
    print("HOLDING", flush=True)
    time.sleep(120)
""")


def test_one_ledger_carried_by_every_copy_and_read_while_a_run_holds_the_warehouse(home: Path) -> None:
    """ops.snapshots is written once, in the warehouse; the serving copy and each kept snapshot carry it up to
    themselves (their own row without the checksum no file can hold of itself), and `--list` reads the snapshots
    alone, so it works while another process writes the warehouse."""
    p = paths()
    first = pub.publish()
    make_warehouse(p.db, districts=40)
    second = pub.publish()
    ledger = (
        "SELECT snapshot_id, action, published_at, run_id, batch_id, sha256, row_counts::VARCHAR FROM ops.snapshots"
    )
    with duckdb.connect(str(p.db), read_only=True) as con:
        warehouse = con.execute(f"{ledger} ORDER BY published_at").fetchall()
    with duckdb.connect(str(p.serving_db), read_only=True) as con:
        served = con.execute(f"{ledger} ORDER BY published_at").fetchall()
    assert [r[0] for r in warehouse] == [first.snapshot_id, second.snapshot_id]
    assert served[0] == warehouse[0] and served[1][:5] == warehouse[1][:5] and served[1][6] == warehouse[1][6]
    assert served[1][5] is None and warehouse[1][5] == second.sha256 == pub.sha256_of(p.serving_db)
    assert not list(p.snapshots.glob("*.json"))  # no second ledger beside the snapshots
    proc = subprocess.Popen([sys.executable, "-c", HOLD_WAREHOUSE, str(p.db)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "HOLDING"
        kept = pub.list_snapshots()
        assert [(m["snapshot_id"], m["sha256"]) for m in kept] == [
            (first.snapshot_id, first.sha256),
            (second.snapshot_id, second.sha256),
        ]
        assert kept[0]["row_counts"]["marts.dim_districts"] == 30 and kept[1]["run_id"] == "run-b"
        assert "*  " + second.snapshot_id in pub.snapshot_listing()
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_publish_killed_after_writing_its_ledger_row_leaves_no_trace_in_the_ledger(home: Path) -> None:
    p = paths()
    first = pub.publish()
    with duckdb.connect(str(p.db)) as con:  # what a publish killed between its ledger row and the swap leaves
        con.execute(
            "INSERT INTO ops.snapshots VALUES ('20990101T000000000000Z', 'publish', now()::TIMESTAMP, NULL, 1, "
            "NULL, NULL, 's', 't', '{}')"
        )
    second = pub.publish()
    with duckdb.connect(str(p.serving_db), read_only=True) as con:
        ids = [r[0] for r in con.execute("SELECT snapshot_id FROM ops.snapshots ORDER BY published_at").fetchall()]
    assert ids == [first.snapshot_id, second.snapshot_id]


# --- kill -9 at every step of a publish or a rollback: ledger, `--list` and the served file agree ------------------
KILL_AT = textwrap.dedent("""
    # For each line "action before|after function n" on stdin: fork a process that runs the publish (or rollback)
    # and kills itself with SIGKILL just before or after the n-th call of the function; print how it ended. The
    # modules are imported once, before the forks (importing scikit-learn, which publish reads the run id with,
    # takes seconds).
    import os, signal, sys
    from brecha.core.settings import Settings, using
    from brecha.warehouse import publish as pub
    import brecha_ml.store

    def run(action, where, name, nth):
        owner = os if name == "replace" else pub
        real, calls = getattr(owner, name), [0]

        def hooked(*args, **kwargs):
            calls[0] += 1
            if where == "before" and calls[0] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
            out = real(*args, **kwargs)
            if where == "after" and calls[0] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
            return out

        setattr(owner, name, hooked)
        with using(Settings.from_env(os.environ)):  # a script: an entry point of its own
            pub.publish() if action == "publish" else pub.rollback()

    for line in sys.stdin:
        action, where, name, nth = line.split()
        pid = os.fork()
        if pid == 0:
            try:
                run(action, where, name, int(nth))
            finally:
                os._exit(0)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
""")
# (action, before/after, function, which call): every step between the ledger row and the end of the swap. In a
# publish, os.replace is called for the pending record (1), the snapshot file (2) and the serving copy (3); in a
# rollback for the pending record (1) and the serving copy (2). _repair_ledger runs at the start and after the swap.
KILL_POINTS = [
    ("publish", "after", "build_serving_file", 1),  # the ledger row written, nothing else
    ("publish", "after", "_write_pending", 1),
    ("publish", "after", "replace", 2),  # the snapshot kept, not yet served
    ("publish", "after", "replace", 3),  # served, the ledger row still without its checksum (the reported case)
    ("publish", "before", "_repair_ledger", 2),
    ("publish", "after", "_prune", 1),  # done
    ("rollback", "after", "_write_pending", 1),
    ("rollback", "after", "replace", 2),  # the older snapshot served, the ledger not yet told
]


def _ledger_agrees(p) -> None:
    """Every kept snapshot `--list` shows has its publish row with its checksum; the ledger's newest row is the
    file served, and the served file is one of the kept snapshots."""
    kept = pub.list_snapshots()
    served = pub.sha256_of(p.serving_db) if p.serving_db.exists() else None
    with duckdb.connect(str(p.db), read_only=True) as con:
        rows = con.execute("SELECT snapshot_id, action, sha256 FROM ops.snapshots ORDER BY published_at").fetchall()
    published = {sid: sha for sid, action, sha in rows if action == "publish"}
    assert None not in published.values(), rows
    assert {m["snapshot_id"]: m["sha256"] for m in kept}.items() <= published.items(), (kept, rows)
    if served is not None:
        assert rows[-1][2] == served, (rows, served)
        assert served in {m["sha256"] for m in kept}


def test_kill_9_at_any_step_leaves_ledger_list_and_served_file_in_agreement(home: Path) -> None:
    """One home, killed at each point in turn (each kill on top of what the one before left)."""
    from brecha.orchestrate.cli import cli

    p = paths()
    pub.publish()
    killer = subprocess.Popen(
        [sys.executable, "-c", KILL_AT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "BRECHA_HOME": str(home)},
        cwd=REPO,
    )
    try:
        for n, point in enumerate(KILL_POINTS):
            make_warehouse(p.db, districts=40 + n)
            killer.stdin.write(" ".join(map(str, point)) + "\n")
            killer.stdin.flush()
            assert killer.stdout.readline().strip() == str(-signal.SIGKILL), point
            listed = [(m["snapshot_id"], m["sha256"]) for m in pub.list_snapshots()]  # a reader, before any repair
            served = pub.sha256_of(p.serving_db)
            # `--list` applies what the kill left (as the next publish, rollback or serve would first)
            assert CliRunner().invoke(cli, ["publish", "--list"]).output.count("*") == 2  # "* = served now", one row
            assert [(m["snapshot_id"], m["sha256"]) for m in pub.list_snapshots()] == listed, point
            assert pub.sha256_of(p.serving_db) == served
            _ledger_agrees(p)
    finally:
        killer.stdin.close()
        killer.wait(timeout=60)
    make_warehouse(p.db, districts=99)
    pub.publish()  # the next publish works on top of whatever the kills left
    _ledger_agrees(p)
    assert [f.name for f in p.serving.iterdir() if pub.TMP_SUFFIX in f.name or "pending" in f.name] == []
