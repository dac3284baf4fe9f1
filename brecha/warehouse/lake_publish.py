"""Publishing on the lake: a DuckLake snapshot, not a file copy.

Every commit to the lake is a snapshot one can read back. Publishing checks what ``brecha publish`` checks on the
embedded file (the required marts, the latest batch landed ``ok``, every gate and dbt build passed for it:
``brecha.warehouse.publish.check_gates``), records those checks (``ops.publish_checks``), and then records the lake's
current snapshot, the one holding everything checked, in the ledger ``ops.lake_publications``. Readers attach the lake
read-only, pinned to the snapshot of the ledger's last row (by its ``seq``, not by the writer's clock: ``ATTACH ...
(SNAPSHOT_VERSION n, READ_ONLY)``, ``brecha.core.db.connect_lake``), so a build running meanwhile is never seen half-done. Rollback adds a row that points
back at the snapshot published before the one in effect; nothing is copied.

Compaction (after every publish, ``compact``): a run commits a snapshot per statement (about 112 for the real
extracts), and each one keeps the data files it saw. Every snapshot that is neither published (any row of the ledger:
rollback and ``--serve`` may go back to each of them) nor the latest is expired (``ducklake_expire_snapshots``), then
the files only those held are deleted (``ducklake_cleanup_old_files``). Readers are only ever pinned to published
snapshots, so none reads an expired one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb

from brecha.core.db import connect, table_exists
from brecha.core.errors import BrechaError
from brecha.core.lake import ALIAS
from brecha.warehouse import gates
from brecha.warehouse.gx.record import DDL as VALIDATION_DDL

LEDGER = "ops.lake_publications"
LEDGER_DDL = f"""CREATE TABLE IF NOT EXISTS {LEDGER} (
    snapshot_version BIGINT NOT NULL,   -- the DuckLake snapshot readers are pinned to
    action VARCHAR NOT NULL,            -- 'publish' | 'rollback' | 'serve' (brecha publish --serve VERSION)
    published_at TIMESTAMP NOT NULL,    -- UTC
    run_id VARCHAR,                     -- ML run the snapshot carries (null without ml.*)
    batch_id INTEGER,                   -- latest landing batch
    row_counts JSON NOT NULL,           -- {{"marts.dim_districts": 1874, ...}} at that snapshot
    seq BIGINT                          -- the row's place in the ledger (max + 1, under the run lock): readers see
)"""                                    # the highest; null in a ledger written before it (those come first)
# a ledger written before ``seq`` gets it on its next append (``_ensure_ledger``); readers order by it when present
ORDER = "seq DESC NULLS LAST, published_at DESC, snapshot_version DESC"
COUNTED_SCHEMAS = ("marts", "ml")


@dataclass
class LakePublishResult:
    snapshot_version: int
    run_id: str | None
    batch_id: int | None
    action: str = "publish"
    row_counts: dict[str, int] = field(default_factory=dict)
    compaction: Compaction | None = None

    def __str__(self) -> str:
        verb = {"publish": "published", "rollback": "rolled back to", "serve": "now serving"}[self.action]
        marts = sum(1 for k in self.row_counts if k.startswith("marts."))
        return (f"{verb} lake snapshot {self.snapshot_version} (batch {self.batch_id}, run {self.run_id or '-'}, "
                f"{marts} marts, {len(self.row_counts)} tables): readers attach it read-only, pinned"
                + (f"; {self.compaction}" if self.compaction else ""))


@dataclass
class Compaction:
    """What ``compact`` did: snapshots before and after, how many it expired, the data files it deleted."""

    snapshots_before: int
    snapshots_after: int
    expired: int
    files_deleted: int
    kept_published: int

    def __str__(self) -> str:
        return (f"compacted: {self.expired} snapshots expired ({self.snapshots_before} -> {self.snapshots_after}; the "
                f"{self.kept_published} published kept), {self.files_deleted} data files deleted")


def current_snapshot(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute(f"SELECT id FROM {ALIAS}.current_snapshot()").fetchone()[0])


def published(con: duckdb.DuckDBPyConnection) -> tuple[int, str] | None:
    """The snapshot readers are pinned to and the action that put it there, or None before the first publish."""
    if not table_exists(con, "ops", "lake_publications", ALIAS):
        return None
    order = ORDER if _has_seq(con) else ORDER.split(", ", 1)[1]  # a ledger written before seq, read-only
    row = con.execute(f"SELECT snapshot_version, action FROM {ALIAS}.{LEDGER} ORDER BY {order} LIMIT 1").fetchone()
    return (int(row[0]), row[1]) if row else None


def _has_seq(con: duckdb.DuckDBPyConnection) -> bool:
    return con.execute("SELECT count(*) FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'ops' AND "
                       "table_name = 'lake_publications' AND column_name = 'seq'", [ALIAS]).fetchone()[0] > 0


def _ensure_ledger(con: duckdb.DuckDBPyConnection) -> None:
    """The ledger, with its ``seq`` column (added to a ledger written before it). A writer's step."""
    con.execute(LEDGER_DDL)
    if not _has_seq(con):
        con.execute(f"ALTER TABLE {ALIAS}.{LEDGER} ADD COLUMN seq BIGINT")


def _row_counts(con: duckdb.DuckDBPyConnection, version: int) -> dict[str, int]:
    tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? AND "
                         f"schema_name IN {COUNTED_SCHEMAS} ORDER BY ALL", [ALIAS]).fetchall()
    return {f"{s}.{t}": con.execute(f'SELECT count(*) FROM {ALIAS}.{s}."{t}" AT (VERSION => {version})').fetchone()[0]
            for s, t in tables}


def publish(run_id: str | None = None) -> LakePublishResult:
    """Check the lake as ``brecha publish`` checks the embedded warehouse, then make its current snapshot the one
    readers see."""
    from brecha.warehouse.publish import _check_publishable, _latest_batch, _record_checks, check_gates
    from brecha_ml.store import latest_run_id

    con = connect()
    try:
        _check_publishable(con, ALIAS)
        checked = check_gates(con, ALIAS)
        for ddl in (*VALIDATION_DDL, *gates.DDL):
            con.execute(ddl)
        _ensure_ledger(con)
        run_id = run_id or latest_run_id(con, ALIAS)
        batch_id = _latest_batch(con, ALIAS)[0]
        con.execute("BEGIN")
        version = current_snapshot(con)  # everything checked above; the checks are recorded in the next one
        _record_checks(con, str(version), batch_id, checked)
        counts = _row_counts(con, version)
        _append(con, version, "publish", run_id, batch_id, counts)
        con.execute(f"CALL {ALIAS}.set_commit_message('brecha', 'publish snapshot {version}')")
        con.execute("COMMIT")
        compaction = compact(con)
    finally:
        con.close()
    return LakePublishResult(version, run_id, batch_id, "publish", counts, compaction)


def compact(con: duckdb.DuckDBPyConnection) -> Compaction:
    """Expire every snapshot of the lake but the published ones (every version in the ledger) and the latest, then
    delete the data files only the expired ones held. Under the run lock (a writer's step: ``publish``)."""
    snapshots = [r[0] for r in con.execute(f"SELECT snapshot_id FROM ducklake_snapshots('{ALIAS}') ORDER BY 1")
                 .fetchall()]
    kept = {r[0] for r in con.execute(f"SELECT DISTINCT snapshot_version FROM {ALIAS}.{LEDGER}").fetchall()} \
        if table_exists(con, "ops", "lake_publications", ALIAS) else set()
    expire = [v for v in snapshots if v not in kept and v != snapshots[-1]]
    if expire:
        con.execute(f"CALL ducklake_expire_snapshots('{ALIAS}', versions => {expire})").fetchall()
    deleted = len(con.execute(f"CALL ducklake_cleanup_old_files('{ALIAS}', cleanup_all => true)").fetchall())
    after = con.execute(f"SELECT count(*) FROM ducklake_snapshots('{ALIAS}')").fetchone()[0]
    return Compaction(len(snapshots), after, len(expire), deleted, len(kept & set(snapshots)))


def rollback() -> LakePublishResult:
    """Point readers back at the snapshot published before the one they see now."""
    con = connect()
    try:
        now = published(con)
        if now is None:
            raise BrechaError("nothing was published on the lake yet: nothing to roll back to (run `brecha publish`)")
        earlier = con.execute(f"SELECT snapshot_version, run_id, batch_id, row_counts FROM {ALIAS}.{LEDGER} "
                              "WHERE action = 'publish' AND snapshot_version < ? ORDER BY snapshot_version DESC "
                              "LIMIT 1", [now[0]]).fetchone()
        if earlier is None:
            raise BrechaError(f"lake snapshot {now[0]} is the first one published: there is none before it to roll "
                              "back to")
        version, run_id, batch_id, counts = int(earlier[0]), earlier[1], earlier[2], json.loads(earlier[3])
        _append(con, version, "rollback", run_id, batch_id, counts)
    finally:
        con.close()
    return LakePublishResult(version, run_id, batch_id, "rollback", counts)


def serve(version: int) -> LakePublishResult:
    """Point readers at the published snapshot ``version`` (older or newer than the one they see now)."""
    con = connect()
    try:
        row = None
        if table_exists(con, "ops", "lake_publications", ALIAS):
            row = con.execute(f"SELECT run_id, batch_id, row_counts FROM {ALIAS}.{LEDGER} WHERE action = 'publish' "
                              "AND snapshot_version = ? LIMIT 1", [version]).fetchone()
        if row is None:
            raise BrechaError(f"lake snapshot {version} was never published: `brecha publish --list` shows those that "
                              "were")
        _append(con, version, "serve", row[0], row[1], json.loads(row[2]))
    finally:
        con.close()
    return LakePublishResult(version, row[0], row[1], "serve", json.loads(row[2]))


def listing() -> str:
    """The published lake snapshots, oldest first, as a text table; the one readers see now is marked."""
    from brecha.core.db import connect_lake

    with connect_lake(read_only=True) as con:
        now = published(con)
        if now is None:
            return "nothing is published on the lake yet: publish with `brecha publish` (or `brecha run`)"
        ledger = con.execute(f"SELECT snapshot_version, min(published_at), any_value(run_id), any_value(batch_id), "
                             f"any_value(row_counts) FROM {ALIAS}.{LEDGER} WHERE action = 'publish' GROUP BY ALL "
                             "ORDER BY 1").fetchall()
    rows = [("", "lake snapshot", "published at (UTC)", "run id", "batch", "marts rows")]
    for version, at, run_id, batch_id, counts in ledger:
        marts = sum(n for k, n in json.loads(counts).items() if k.startswith("marts."))
        rows.append(("*" if version == now[0] else "", str(version), str(at)[:19], run_id or "-",
                     str(batch_id or "-"), f"{marts:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join([*lines, f"* = what readers see now ({now[1]}); serve any with `brecha publish --serve VERSION`"])


def _append(con: duckdb.DuckDBPyConnection, version: int, action: str, run_id: str | None, batch_id: int | None,
            counts: dict[str, int]) -> None:
    """Append a row to the ledger, after every other (``seq``: max + 1; the caller holds the run lock), whatever the
    local clock says: ``published_at`` is for people, the order readers follow is ``seq``."""
    _ensure_ledger(con)
    seq = con.execute(f"SELECT coalesce(max(seq), 0) + 1 FROM {ALIAS}.{LEDGER}").fetchone()[0]
    con.execute(f"INSERT INTO {ALIAS}.{LEDGER} (snapshot_version, action, published_at, run_id, batch_id, row_counts, "
                "seq) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [version, action, datetime.now(UTC).replace(tzinfo=None), run_id, batch_id, json.dumps(counts), seq])


def published_snapshot() -> int:
    """The snapshot readers are pinned to now (asked as the catalog's read-only role)."""
    from brecha.core.db import connect_lake

    with connect_lake(read_only=True) as probe:
        pinned = published(probe)
    if pinned is None:
        raise BrechaError("nothing is published on the lake yet: run `brecha run` (or `brecha publish`) first")
    return pinned[0]


def lockdown_sql() -> list[str]:
    """What a reader of the lake may not do, applied after its attach (which needs them): read files outside the
    lake's data path, attach another database, change a setting."""
    from brecha.core.lake import sql_literal
    from brecha.core.settings import current

    data = current().lake_data.rstrip("/") + "/"
    return [f"SET allowed_directories = [{sql_literal(data)}]", "SET enable_external_access = false",
            "SET lock_configuration = true"]


def open_published() -> tuple[duckdb.DuckDBPyConnection, int]:
    """A reader's connection and the snapshot it is pinned to: the lake attached read-only (as the catalog's read-only
    role), pinned to the published snapshot, ``lake`` in use, then locked down (``lockdown_sql``) as the serving
    copy's readers are."""
    pinned = published_snapshot()
    return open_reader(pinned), pinned


def open_reader(snapshot: int | None) -> duckdb.DuckDBPyConnection:
    """The lake attached read-only as the catalog's read-only role, pinned to ``snapshot`` (None: unpinned, each
    transaction on the latest snapshot, for a reader that only watches the ledger), ``lake`` in use, then locked down
    (``lockdown_sql``). The API keeps one per published snapshot (``brecha.serve.api.served.LakeServed``)."""
    from brecha.core.db import connect_lake

    con = connect_lake(read_only=True, snapshot=snapshot)
    for statement in lockdown_sql():
        con.execute(statement)
    return con


def reader_init_sql() -> str:
    """The same reader as an init script for the DuckDB command line (``brecha sql`` on the lake)."""
    from brecha.core.db import LAKE_EXTENSIONS
    from brecha.core.lake import attach_sql
    from brecha.core.settings import EXTENSION_DIR, current

    s = current()
    pinned = published_snapshot()
    # not lock_configuration: the command line sets options of its own after the init script; the user of the
    # prompt reads lake.env anyway, and external access, once off, cannot be turned on again
    statements = [f"SET extension_directory = '{EXTENSION_DIR}'", "SET autoinstall_known_extensions = false",
                  *(f"LOAD {name}" for name in LAKE_EXTENSIONS),
                  attach_sql(s.lake_reader or s.lake, s.lake_data, read_only=True, snapshot=pinned),
                  f"USE {ALIAS}", *(q for q in lockdown_sql() if "lock_configuration" not in q)]
    return ".output /dev/null\n" + ";\n".join(statements) + ";\n.output\n"  # no "Success" table per statement


def connect_published() -> duckdb.DuckDBPyConnection:
    """A reader's connection to the published snapshot (``open_published``)."""
    return open_published()[0]
