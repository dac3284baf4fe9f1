"""The lake (DuckLake on PostgreSQL) against a real PostgreSQL that the project starts itself (``brecha.core.lake``):
one server per session in a temporary home (``lake_up``), stopped at the end. Skips only when PostgreSQL cannot be
installed here (not root on a machine without it, or no apt-get)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import pytest
from lake_fixtures import lake_settings

from brecha.core import lake
from brecha.core.db import EXTENSIONS, OFFLINE, connect
from brecha.core.errors import BrechaError
from brecha.core.settings import Settings, using
from tools.lake_compare import compare, open_both


def test_lake_up_writes_private_settings_and_listens_on_localhost_with_a_password(lake_home: Path):
    env_file = lake_home / "lake.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = lake.read_env(env_file)
    catalog = lake.Catalog.parse(values["BRECHA_LAKE"])
    assert (catalog.host, catalog.user, catalog.database) == ("127.0.0.1", "brecha", "brecha_lake")
    assert len(catalog.password) >= 24 and values["BRECHA_LAKE_DATA"] == str(lake_home / "lake" / "data")
    # a shell that sources lake.env gets both settings exported
    shown = subprocess.run(
        ["bash", "-c", f". {env_file} && env"], capture_output=True, text=True, env={}, check=True
    ).stdout
    assert f"BRECHA_LAKE={values['BRECHA_LAKE']}" in shown and "BRECHA_LAKE_DATA=" in shown
    conf = (lake_home / "lake" / "pg" / "postgresql.conf").read_text()
    assert "listen_addresses = '127.0.0.1'" in conf and f"port = {catalog.port}" in conf
    with socket.create_connection(("127.0.0.1", catalog.port), timeout=5):
        pass
    # scram-sha-256: the right password gets in, a wrong one does not
    psql = [
        str(lake.pg_bindir() / "psql"),
        "-X",
        "-tAc",
        "SELECT current_database()",
        "-h",
        "127.0.0.1",
        "-p",
        str(catalog.port),
        "-U",
        "brecha",
        "-d",
        "brecha_lake",
    ]
    ok = subprocess.run(psql, env={**os.environ, "PGPASSWORD": catalog.password}, capture_output=True, text=True)
    assert ok.stdout.strip() == "brecha_lake", ok.stderr
    bad = subprocess.run(psql, env={**os.environ, "PGPASSWORD": "wrong"}, capture_output=True, text=True)
    assert bad.returncode != 0 and "password authentication failed" in bad.stderr
    # no password of the lake in the repository's files or a settings repr
    assert catalog.password not in repr(lake_settings(lake_home))


def test_lake_up_again_is_a_no_op_and_down_stops_the_server(lake_home: Path):
    values = lake.read_env(lake_home / "lake.env")
    lake.up(lake_home, say=lambda _msg: None)  # already running: same port, same password
    assert lake.read_env(lake_home / "lake.env") == values
    port = lake.Catalog.parse(values["BRECHA_LAKE"]).port
    assert lake.down(lake_home, say=lambda _msg: None)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    lake.up(lake_home, say=lambda _msg: None)  # started again from its data folder
    assert lake.read_env(lake_home / "lake.env") == values
    socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_extensions_load_offline_from_the_installed_folder(lake_home: Path):
    """A fresh DuckDB with the project's config loads ducklake and postgres and attaches the lake, with every way to
    download an extension shut (no auto-install, an unreachable repository)."""
    con = duckdb.connect(config={**OFFLINE, "custom_extension_repository": "http://127.0.0.1:9/unreachable"})
    settings = lake_settings(lake_home)
    con.execute(lake.attach_sql(settings.lake, settings.lake_data))  # autoloads both from the folder
    loaded = {
        r[0]: r[1]
        for r in con.execute("SELECT extension_name, install_path FROM duckdb_extensions() WHERE loaded").fetchall()
    }
    assert {"ducklake", "postgres_scanner"} <= loaded.keys()
    assert loaded["ducklake"].startswith(OFFLINE["extension_directory"])
    # the catalog's password is in a temporary secret, shown redacted, and in no attached database's path
    password = lake.Catalog.parse(settings.lake).password
    shown = (
        con.execute("SELECT string_agg(coalesce(path, ''), ' ') FROM duckdb_databases()").fetchone()[0]
        + con.execute("SELECT string_agg(secret_string, ' ') FROM duckdb_secrets()").fetchone()[0]
    )
    assert password not in shown and "password=redacted" in shown
    assert "excel" in EXTENSIONS
    con.execute("CREATE OR REPLACE TABLE lake.main.probe AS SELECT 42 AS answer, range AS i FROM range(1000)")
    assert con.execute("SELECT answer FROM lake.main.probe WHERE i = 0").fetchone() == (42,)
    con.close()
    assert list(Path(settings.lake_data).rglob("*.parquet"))  # the data are Parquet files under the data path
    # the project's own connection on the lake: the lake is the current database
    with using(settings):
        con = connect()
        try:
            assert con.execute("SELECT current_database()").fetchone() == ("lake",)
            assert con.execute("SELECT sum(answer) FROM main.probe").fetchone() == (42_000,)
            con.execute("DROP TABLE main.probe")
        finally:
            con.close()


def test_lake_settings_need_both_the_catalog_and_the_data_path(tmp_path: Path):
    with pytest.raises(ValueError, match="BRECHA_LAKE_DATA"):
        Settings.from_env({"BRECHA_HOME": str(tmp_path), "BRECHA_LAKE": "postgresql://u:p@127.0.0.1:5/db"})
    with pytest.raises(BrechaError, match="no PostgreSQL address"):
        lake.ducklake_path("sqlite:///x.db")
    s = Settings.from_env(
        {
            "BRECHA_HOME": str(tmp_path),
            "BRECHA_LAKE": "postgresql://u:p%27q@127.0.0.1:5/db",
            "BRECHA_LAKE_DATA": str(tmp_path / "data"),
        }
    )
    assert s.storage == "lake" and s.env()["BRECHA_LAKE_DATA"] == str(tmp_path / "data")
    assert lake.ducklake_path(s.lake) == "ducklake:postgres:dbname=db host=127.0.0.1 port=5 user=u password='p\\'q'"
    assert lake.redact(s.lake) == "postgresql://u:***@127.0.0.1:5/db"


def test_the_lake_run_builds_the_embedded_runs_marts(lake_home: Path, lake_run: dict, pipeline_run):
    assert lake_run["ingest"].batch_id >= 1 and lake_run["publish"].action == "publish"
    con = open_both(
        pipeline_run.home / "brecha.duckdb",
        *(lake.read_env(lake_home / "lake.env")[k] for k in ("BRECHA_LAKE", "BRECHA_LAKE_DATA")),
    )
    try:
        diffs = compare(con)
    finally:
        con.close()
    assert len(diffs) >= 15 and {"dim_districts", "mart_district_priorities"} <= {d.table for d in diffs}
    assert [str(d) for d in diffs if d.problems] == []
    assert all(d.rows > 0 for d in diffs)
    assert (lake_home / "atlas" / "index.html").stat().st_size > 100_000  # drawn from the published snapshot


def test_readers_are_pinned_locked_down_and_never_wait_through_a_build_a_publish_and_a_rollback(
    lake_home: Path, lake_run: dict
):
    from brecha.orchestrate import steps
    from brecha.warehouse.lake_publish import current_snapshot, open_published

    settings = lake_settings(lake_home)
    first = lake_run["publish"].snapshot_version
    assert settings.lake_reader and "brecha_reader" in settings.lake_reader  # lake-up's read-only role
    with using(settings):
        reader, version = open_published()
        with reader:
            assert version == first and reader.execute("SELECT count(*) FROM marts.dim_districts").fetchone()[0] > 0
            for statement, error in (
                ("CREATE TABLE marts.intruder AS SELECT 1", "read-only|read only"),
                ("SELECT * FROM read_csv('/etc/passwd')", "disabled"),
                ("ATTACH '/tmp/brecha-intruder.duckdb' AS x", "disabled"),
                ("SET memory_limit = '1GB'", "locked"),
                # the catalog as the read-only role: no superuser's view of the server, no writes
                (
                    "SELECT * FROM postgres_query('__ducklake_metadata_lake', 'SELECT rolpassword FROM pg_authid')",
                    "permission denied",
                ),
                (
                    "SELECT * FROM postgres_execute('__ducklake_metadata_lake', 'CREATE TABLE x (i int)')",
                    "read-only transaction",
                ),
            ):
                with pytest.raises(duckdb.Error, match=error):
                    reader.execute(statement)

    # a reader loop runs through a dbt build, a change, a publish and a rollback on the lake
    seen: list[tuple[int, int, int]] = []
    errors: list[str] = []
    stop = threading.Event()

    def read_loop() -> None:
        with using(settings):
            while not stop.is_set():
                try:
                    con, pinned = open_published()
                    with con:
                        seen.append(
                            (
                                pinned,
                                *con.execute(
                                    "SELECT (SELECT count(*) FROM marts.mart_district_clusters), (SELECT count(*) FROM "
                                    "duckdb_tables() WHERE table_name = 'unpublished')"
                                ).fetchone(),
                            )
                        )
                except Exception as err:  # noqa: BLE001 - every failure is a finding
                    errors.append(repr(err))

    loop = threading.Thread(target=read_loop, name="lake-reader")
    loop.start()
    try:
        steps.dbt_build(settings, select="tag:needs_clusters")
        with using(settings), connect() as writer:
            writer.execute("CREATE TABLE marts.unpublished AS SELECT 1 AS x")  # not seen until published
        second = steps.publish(settings)
        _wait_for(lambda: any(pinned == second.snapshot_version for pinned, _, _ in seen))
        back = steps.rollback(settings)
        after = len(seen)
        _wait_for(lambda: len(seen) > after + 1)  # reads begun after the rollback
    finally:
        stop.set()
        loop.join()
    print(f"lake reader loop: {len(seen)} reads through a build, a publish and a rollback, {len(errors)} errors")
    assert errors == []
    assert second.snapshot_version > first and (back.action, back.snapshot_version) == ("rollback", first)
    assert {pinned for pinned, _, _ in seen} == {first, second.snapshot_version}, seen[:3]
    assert all(
        clusters > 0 and unpublished == (pinned == second.snapshot_version) for pinned, clusters, unpublished in seen
    )
    assert seen[-1][0] == first  # after the rollback, readers are back on the first snapshot
    with using(settings), connect() as writer:
        ledger = writer.execute(
            "SELECT action, snapshot_version FROM ops.lake_publications ORDER BY published_at"
        ).fetchall()
        assert ledger[-3:] == [("publish", first), ("publish", second.snapshot_version), ("rollback", first)]
        assert current_snapshot(writer) > second.snapshot_version
        writer.execute("DROP TABLE marts.unpublished")


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the reader loop did not get there in time"
        time.sleep(0.1)


def test_brecha_sql_on_the_lake_reads_the_published_snapshot_read_only(lake_home: Path, lake_run: dict):
    env = {**os.environ, "BRECHA_HOME": str(lake_home), **lake.read_env(lake_home / "lake.env")}
    brecha = str(Path(sys.executable).with_name("brecha"))
    out = subprocess.run(
        [brecha, "sql", "-csv", "-c", "SELECT count(*) FROM marts.dim_districts"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip().splitlines()[-1]) > 0
    assert "Loading resources" not in out.stderr, out.stderr  # the init script is read with -cmd ".read", no banner
    for statement, error in (
        ("SELECT * FROM read_csv('/etc/passwd')", "disabled"),
        ("CREATE TABLE marts.intruder AS SELECT 1", "read-only|read only"),
    ):
        bad = subprocess.run([brecha, "sql", "-c", statement], env=env, capture_output=True, text=True, timeout=120)
        assert bad.returncode != 0 and re.search(error, bad.stdout + bad.stderr), bad.stdout + bad.stderr
    assert not list(Path(tempfile.gettempdir()).glob("brecha-sql-*"))  # the init script (a password) is gone


def test_brecha_runs_on_the_lake_lists_the_lakes_model_runs(lake_home: Path, lake_run: dict):
    """`brecha runs` in a lake home reads the lake's ml.model_runs (not an embedded file of the home)."""
    from brecha.orchestrate.runs import list_runs

    settings = lake_settings(lake_home)
    with using(settings), connect(read_only=True) as con:
        run_ids = [r[0] for r in con.execute("SELECT DISTINCT run_id FROM ml.model_runs").fetchall()]
    with using(settings):
        shown = list_runs()
    assert run_ids and all(run_id in shown for run_id in run_ids), shown
    assert f"{len(run_ids)} run(s) from the lake postgresql://" in shown and ":***@" in shown


def test_publish_list_and_serve_on_the_lake_and_publish_compacts_it(lake_home: Path, lake_run: dict):
    """`--list` and `--serve` on the lake; and a publish compacts it: every snapshot that is neither published nor
    the latest is expired and the files only those held are deleted, while every published snapshot still reads all
    its marts with the counts published."""
    from brecha.orchestrate import steps
    from brecha.warehouse.lake_publish import LEDGER, listing, open_published, published_snapshot

    settings = lake_settings(lake_home)
    with using(settings):
        before = published_snapshot()
    with using(settings), connect() as con:
        con.execute("CREATE TABLE marts.scratch AS SELECT range AS i FROM range(10)")  # snapshots no one publishes
        con.execute("INSERT INTO marts.scratch VALUES (10)")
        con.execute("DROP TABLE marts.scratch")
    result = steps.publish(settings)  # a second published snapshot, now the one readers see
    other, compaction = result.snapshot_version, result.compaction
    print(f"lake publish: {compaction}")
    assert compaction.expired >= 3 and compaction.snapshots_after < compaction.snapshots_before
    with using(settings), connect() as con:
        ledger = {r[0]: r[1] for r in con.execute(f"SELECT snapshot_version, row_counts FROM {LEDGER}").fetchall()}
        left = [r[0] for r in con.execute("SELECT snapshot_id FROM ducklake_snapshots('lake') ORDER BY 1").fetchall()]
    assert set(ledger) <= set(left) and len(left) <= len(ledger) + 1  # the published ones and the latest alone
    with using(settings):
        rows = [line.split() for line in listing().splitlines()[1:-1]]
    versions = {int(r[-6]) for r in rows}
    assert {before, other} <= versions and [int(r[1]) for r in rows if r[0] == "*"] == [other]
    assert steps.serve_snapshot(settings, str(before)).snapshot_version == before
    with using(settings):
        reader, pinned = open_published()
        with reader:
            assert pinned == before
            for table, count in json.loads(ledger[before]).items():
                assert reader.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == count, table
    with pytest.raises(BrechaError, match="never published"):
        steps.serve_snapshot(settings, "0")


LAKE_HOLDER = """
import os, time
from brecha.core.runlock import hold
from brecha.core.settings import Settings, using
with using(Settings.from_env(os.environ)), hold("brecha run --input /mnt/team/extracts"):
    print("HELD", flush=True)
    time.sleep(120)
"""


def test_writers_take_turns_through_the_catalogs_advisory_lock_and_a_killed_holder_frees_the_lake(lake_home: Path):
    """The run lock on the lake is an advisory lock in the catalog database (no file: the writers may be on other
    machines): a second writer waits Settings.lock_wait, then stops naming the holder; one that waits longer gets the
    lake as soon as the holder's session ends, here by kill -9. A DAG run's claim lives in the catalog too."""
    from brecha.core import runlock
    from brecha.orchestrate import steps

    settings = lake_settings(lake_home)
    holder = subprocess.Popen(
        [sys.executable, "-c", LAKE_HOLDER],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **settings.env(), "BRECHA_HOME": tempfile.mkdtemp(prefix="brecha-other-machine-")},
    )
    try:
        assert holder.stdout.readline().strip() == "HELD"
        started = time.monotonic()
        with pytest.raises(runlock.RunLocked) as err, using(settings.replace(lock_wait=1.0)), runlock.hold():
            pass
        waited = time.monotonic() - started
        message = str(err.value)
        assert f"pid {holder.pid} on {os.uname().nodename}" in message, message
        assert "command: brecha run --input /mnt/team/extracts" in message and "waited 1 s" in message
        assert "BRECHA_LOCK_WAIT" in message and lake.Catalog.parse(settings.lake).password not in message
        assert 1.0 <= waited < 10

        # a writer that waits longer proceeds once the holder is killed (PostgreSQL ends its session, and the lock)
        got: list[float] = []

        def waiting_writer() -> None:
            with using(settings.replace(lock_wait=60.0)), runlock.hold("the second writer"):
                got.append(time.monotonic())

        second = threading.Thread(target=waiting_writer)
        second.start()
        time.sleep(1.0)
        assert not got, "the second writer got the lake while the first held it"
        killed = time.monotonic()
        holder.kill()
        holder.wait(timeout=30)
        second.join(timeout=60)
        assert got, "the second writer never got the lake after the holder was killed"
        print(
            f"lake run lock: a writer stopped after waiting {waited:.1f} s; another got the lake "
            f"{got[0] - killed:.2f} s after the holder was killed"
        )
    finally:
        if holder.poll() is None:
            holder.kill()

    # an Airflow DAG run's claim: held in the catalog, so it keeps out writers on every machine until released
    owner = "airflow:brecha_pipeline/manual__lake"
    steps.claim(settings.replace(run_owner=owner))
    try:
        with (
            pytest.raises(runlock.RunLocked, match=f"pipeline run is in progress: {owner}"),
            using(settings),
            runlock.hold(),
        ):
            pass
        with using(settings.replace(run_owner=owner)), runlock.hold("a task of the DAG run"):
            pass
    finally:
        assert steps.release(settings.replace(run_owner=owner))
    # a run whose lock session ends (a server restart, a dropped connection) stops at its next step
    import psycopg

    with using(settings), runlock.hold("a run that loses its lock"):
        with psycopg.connect(settings.lake, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE "
                "'brecha: run lock%%a run that loses its lock'"
            )
        with pytest.raises(runlock.RunLocked, match="lost the lake's run lock"), runlock.hold("its next step"):
            pass
    with using(settings), runlock.hold("free again"):
        pass


def test_migrate_to_lake_carries_the_history_and_builds_the_embedded_marts(lake_home: Path, pipeline_run, tmp_path):
    """`brecha migrate-to-lake` of the session's embedded warehouse into an empty lake (a second catalog database on
    the session's server, and its own data path): raw, ml and ops carried row for row, every mart rebuilt equal to
    the embedded one, published; a second migration into the same lake is refused."""
    import psycopg
    from conftest import TEST_SEED

    from brecha.orchestrate.migrate import migrate_to_lake
    from brecha.warehouse.lake_publish import published_snapshot

    catalog = lake.Catalog.parse(lake_settings(lake_home).lake)
    with psycopg.connect(catalog.dsn(), autocommit=True) as pg:
        pg.execute('DROP DATABASE IF EXISTS "brecha_migrated"')
        pg.execute('CREATE DATABASE "brecha_migrated"')
    target = lake.Catalog(catalog.host, catalog.port, catalog.user, catalog.password, "brecha_migrated")
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(pipeline_run.home / "brecha.duckdb", home / "brecha.duckdb")  # the session's file stays untouched
    settings = Settings(home=home, seed=TEST_SEED, storage="lake", lake=target.dsn(), lake_data=str(home / "lake"))
    started = time.perf_counter()
    progress: list[str] = []
    result = migrate_to_lake(settings, say=progress.append)
    print(f"migrate-to-lake of the session's synthetic warehouse: {time.perf_counter() - started:.1f} s: {result}")
    # a line as each step starts and ends (`brecha migrate-to-lake` prints them on stderr): never minutes of silence
    assert [line.split(" ", 1)[0] for line in progress if line.startswith("[")] == [f"[{i}/5]" for i in range(1, 6)]
    done = [line.split(" done in ")[0].strip() for line in progress if " done in " in line]
    assert done == list(result.seconds) and len(done) == 5, progress
    assert result.marts == result.marts_equal >= 15 and result.model_runs >= 1 and result.batches >= 1
    with using(settings):
        assert published_snapshot() == result.snapshot_version
    con = open_both(home / "brecha.duckdb", settings.lake, settings.lake_data)
    try:
        for table in (
            "raw._batches",
            "raw._batch_files",
            "raw.inei__districts",
            "ml.model_runs",
            "ml.district_predictions",
            "ops.validation_results",
            "ops.snapshots",
        ):
            embedded, lake_rows = (
                con.execute(f"SELECT count(*) FROM {db}.{table}").fetchone()[0] for db in ("embedded", "lake")
            )
            if table.startswith("ops.validation"):  # the migration's own gates are recorded too
                assert lake_rows > embedded > 0, table
            else:
                assert lake_rows == embedded > 0, table
        runs = "SELECT DISTINCT run_id FROM {}.ml.model_runs ORDER BY 1"
        assert con.execute(runs.format("lake")).fetchall() == con.execute(runs.format("embedded")).fetchall()
    finally:
        con.close()
    with pytest.raises(BrechaError, match="already holds a warehouse"):
        migrate_to_lake(settings)


def test_the_ledgers_order_not_the_writers_clock_says_what_is_served(tmp_path: Path):
    """A rollback or `--serve` from a machine whose clock is behind is still the row readers follow (the ledger's
    ``seq``), and a ledger written before ``seq`` existed is read as it was, then gets the column on its next append.
    A DuckLake on a DuckDB catalog file: the ledger's code is the same, no server needed."""
    from brecha.core.db import load_extension
    from brecha.warehouse.lake_publish import LEDGER, _append, published

    con = duckdb.connect(config=OFFLINE)
    load_extension(con, "ducklake")
    con.execute(f"ATTACH 'ducklake:{tmp_path / 'catalog.ducklake'}' AS lake (DATA_PATH '{tmp_path / 'data'}')")
    con.execute("USE lake")
    con.execute("CREATE SCHEMA ops")
    # the ledger as the first lake release wrote it: no seq
    con.execute(
        f"CREATE TABLE {LEDGER} (snapshot_version BIGINT NOT NULL, action VARCHAR NOT NULL, published_at TIMESTAMP "
        "NOT NULL, run_id VARCHAR, batch_id INTEGER, row_counts JSON NOT NULL)"
    )
    con.execute(
        f"INSERT INTO {LEDGER} VALUES (112, 'publish', TIMESTAMP '2026-12-07 08:00:00', 'r1', 1, '{{}}'), "
        "(194, 'publish', TIMESTAMP '2026-12-07 08:30:00', 'r2', 2, '{}')"
    )
    assert published(con) == (194, "publish")
    # a rollback from a machine ten minutes behind: its row is older by the clock, yet it is the one served
    _append(con, 112, "rollback", "r1", 1, {})
    con.execute(f"UPDATE {LEDGER} SET published_at = TIMESTAMP '2026-12-07 08:20:00' WHERE action = 'rollback'")
    assert published(con) == (112, "rollback")
    _append(con, 194, "serve", "r2", 2, {})
    con.execute(f"UPDATE {LEDGER} SET published_at = TIMESTAMP '2026-12-07 07:00:00' WHERE action = 'serve'")
    assert published(con) == (194, "serve")
    assert con.execute(f"SELECT seq FROM {LEDGER} ORDER BY seq NULLS FIRST").fetchall() == [(None,), (None,), (1,), (2,)]
    con.close()
