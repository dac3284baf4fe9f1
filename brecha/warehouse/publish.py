"""`brecha publish`: an atomic, read-only serving copy of the checked warehouse, with snapshots and rollback.

Readers (Grafana, analysts) never open the warehouse: they open ``$BRECHA_HOME/serving/brecha.duckdb``
read-only. Publishing builds a new file beside it with DuckDB itself (``ATTACH ... (STORAGE_VERSION
'v1.0.0')`` so the Grafana plugin's embedded DuckDB 1.4 can read it), copies only what readers need
(``marts.*``, ``ml.*``, ``ops.*`` and the landing bookkeeping), flushes it to disk and swaps it in with
``os.replace``. A reader that holds the old file open keeps reading the old file; the next connection sees
the new one. A publish that dies midway leaves only a temporary file, never a half-written serving copy.

The publish ledger is one table, the warehouse's ``ops.snapshots``: one row per publish, rollback and serve.
Publish writes its row before copying the ``ops`` schema, so the serving copy, and the snapshot of it kept under
``serving/snapshots/`` (the newest ``KEEP_SNAPSHOTS``), carry the ledger up to and including themselves
(dashboards show the snapshot's age from it). A file cannot hold its own checksum: the row in the file has none,
the warehouse's row gets it once the file is done. ``brecha publish --list``, ``--rollback`` and ``--serve`` read
each kept snapshot's own row from the snapshot itself (``--list`` also works while a run holds the home; rollback
and serve take the run lock like every step, so they stop, naming the run, while one holds it).
``rollback()`` swaps the snapshot published before the one being served back in, the same atomic way.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import duckdb
import yaml

from brecha.core.db import connect, table_exists
from brecha.core.errors import BrechaError, env_fault
from brecha.core.files import fsync_dir, fsync_file, locked, replacing, sha256_of, write_atomic
from brecha.core.settings import GRAFANA_DIR, Paths, paths
from brecha.warehouse import gates
from brecha.warehouse.gx.record import DDL as VALIDATION_DDL

KEEP_SNAPSHOTS = 3
# The plugin's embedded DuckDB (1.4.x) reads this storage format; newer formats it would refuse.
SERVING_STORAGE_VERSION = "v1.0.0"
PUBLISHED_SCHEMAS = ("marts", "ml", "ops")
# Landing bookkeeping the data-quality dashboard reads (small tables, copied whole).
PUBLISHED_RAW_TABLES = ("_batches", "_batch_files")
# Marts without which a serving copy is useless: publishing refuses when one is missing.
REQUIRED_MARTS = ("dim_districts", "fct_district_connectivity", "mart_digital_divide_index")
TMP_SUFFIX = ".publishing"
GRAFANA_DATASOURCE = GRAFANA_DIR / "provisioning" / "datasources" / "brecha.yaml"

SNAPSHOTS_DDL = """CREATE TABLE IF NOT EXISTS ops.snapshots (
    snapshot_id VARCHAR NOT NULL,       -- file name stem under serving/snapshots/
    action VARCHAR NOT NULL,            -- 'publish' | 'rollback' | 'serve' (brecha publish --serve ID)
    published_at TIMESTAMP NOT NULL,    -- UTC
    run_id VARCHAR,                     -- ML run the serving copy carries (null without ml.*)
    batch_id INTEGER,                   -- latest landing batch
    sha256 VARCHAR,                     -- checksum of the serving file (null inside the file itself)
    size_bytes BIGINT,
    serving_path VARCHAR NOT NULL,
    snapshot_path VARCHAR NOT NULL,
    row_counts JSON NOT NULL            -- {"marts.dim_districts": 1874, ...}
)"""

# The rejects of the files of the served batch only (a file landed in an earlier batch with the same bytes keeps
# its rejects under its checksum, so the batch's files are matched by checksum and entity).
REJECTS_SUMMARY_SQL = """
    SELECT {batch} AS batch_id, r.entity, r._source_file AS source_file, r.column_name, r.reason,
           count(*) AS rows_rejected, min(r.value) AS example_value, max(r._loaded_at) AS last_loaded_at
    FROM {src}.raw._rejects r
    WHERE (r._source_sha256, r.entity) IN (SELECT (f.sha256, f.entity) FROM {src}.raw._batch_files f
                                           WHERE f.batch_id = {batch})
    GROUP BY ALL
"""


@dataclass
class PublishResult:
    snapshot_id: str
    run_id: str | None
    serving_db: Path
    snapshot: Path
    sha256: str
    row_counts: dict[str, int] = field(default_factory=dict)
    action: str = "publish"
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        verb = {"publish": "published", "rollback": "rolled back to"}.get(self.action, "now serving")
        counts = ", ".join(f"{k} {v:,}" for k, v in sorted(self.row_counts.items()) if k.startswith("marts."))
        tail = f"; {'; '.join(self.notes)}" if self.notes else ""
        return (f"{verb} snapshot {self.snapshot_id} (run {self.run_id or '-'}, {len(self.row_counts)} tables, "
                f"sha256 {self.sha256[:12]}) -> {self.serving_db} [{counts}]{tail}")


def publish(run_id: str | None = None) -> PublishResult:
    """Publish the warehouse to the serving copy; refuse when the warehouse is not in a publishable state."""
    from brecha_ml.store import latest_run_id

    p = paths()
    if not p.db.exists():
        raise BrechaError(f"{p.db}: no warehouse to publish. Run `brecha run` (or ingest, build and train) first.")
    _check_writable(p, p.serving, p.snapshots)
    with _publish_lock(p), connect(p.db) as con:
        src = con.sql("SELECT current_database()").fetchone()[0]
        _remove_stale(p, con)
        _check_publishable(con, src)
        checked = check_gates(con, src)
        for ddl in (*VALIDATION_DDL, SNAPSHOTS_DDL, *gates.DDL):  # readers' tables exist before the first validation
            con.execute(ddl)
        run_id = run_id or latest_run_id(con, src)
        batch_id = _latest_batch(con, src)[0]
        now = datetime.now(UTC).replace(tzinfo=None)
        snapshot_id = now.strftime("%Y%m%dT%H%M%S%fZ") + (f"_{_safe(run_id)}" if run_id else "")
        snapshot = p.snapshots / f"{snapshot_id}.duckdb"
        try:
            _record_checks(con, snapshot_id, batch_id, checked)  # before the copy, so the serving copy has them
            with _swapping_in(p) as tmp:
                row = [snapshot_id, "publish", now, run_id, batch_id, None, None, str(p.serving_db), str(snapshot)]
                counts = build_serving_file(con, src, tmp, snapshot_row=row)
                digest = sha256_of(tmp)
                _verify(tmp, counts)
                _write_pending(p, {"action": "publish", "snapshot_id": snapshot_id, "sha256": digest,
                                   "size_bytes": tmp.stat().st_size})
                with replacing(snapshot, TMP_SUFFIX) as copy:
                    shutil.copyfile(tmp, copy)
                    fsync_file(copy)
                    os.chmod(copy, 0o444)
        except BaseException:
            _repair_ledger(p, con)  # the swap may or may not have happened: the pending record tells
            raise
        _repair_ledger(p, con)  # completes this publish's row (checksum and size) and clears the pending record
        _prune(p.snapshots, KEEP_SNAPSHOTS)
    return PublishResult(snapshot_id, run_id, p.serving_db, snapshot, digest, counts)


@contextmanager
def _swapping_in(p: Paths) -> Iterator[Path]:
    """A temporary file beside the serving copy to fill; when the block ends it becomes the serving copy: flushed,
    read-only, with an mtime newer than the old copy's, renamed over it, the Grafana watch link in place and the
    rename persisted. When the block raises, the serving copy is left as it was and the temporary file removed."""
    with replacing(p.serving_db, TMP_SUFFIX) as tmp:
        try:
            yield tmp
            fsync_file(tmp)
            _mtime_after(tmp, p.serving_db)
            os.chmod(tmp, 0o444)
        finally:
            tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)  # DuckDB's log of a copy that failed
    _ensure_watch_link(p)
    fsync_dir(p.serving)


def _mtime_after(new: Path, old: Path) -> None:
    """Give ``new`` a modification time later than ``old``'s: Grafana's DuckDB plugin reloads the file only when
    its mtime is newer than the last it saw (a restored snapshot, or a clock set back, would otherwise be missed)."""
    if old.exists():
        now = time.time_ns()
        os.utime(new, ns=(now, max(now, old.stat().st_mtime_ns + 1_000_000_000)))  # +1 s: coarse filesystems


def grafana_watch_name() -> str:
    """The file name Grafana's DuckDB plugin watches in the serving folder: the basename of the provisioned ``path``.

    The plugin opens ``path`` as a DuckDB DSN (``brecha.duckdb?access_mode=read_only&...``) but decides whether to
    reload with ``os.Stat(path)`` on that same string, query included (pkg/plugin/datasource.go, FileWatcher).
    """
    source = yaml.safe_load(GRAFANA_DATASOURCE.read_text())["datasources"][0]["jsonData"]["path"]
    return PurePosixPath(source).name


def _ensure_watch_link(p: Paths) -> None:
    """A symlink named as the plugin's watched path (DSN options included) pointing at the serving copy, so the
    plugin's ``os.Stat`` sees every publish and rollback; without it the plugin never reloads the file."""
    name = grafana_watch_name()
    if name == p.serving_db.name:
        return
    link = p.serving / name
    if link.is_symlink() and os.readlink(link) == p.serving_db.name:
        return
    with replacing(link, TMP_SUFFIX) as tmp:
        os.symlink(p.serving_db.name, tmp)  # relative: it resolves inside the container's mount as well


def rollback() -> PublishResult:
    """Swap the snapshot published before the one being served back in (atomically)."""
    p = paths()
    _check_writable(p, p.serving)
    with _publish_lock(p):
        _repair_ledger_of(p)
        kept = list_snapshots()
        if not kept:
            raise BrechaError(f"{p.snapshots}: no snapshots to roll back to. Publish first with `brecha publish`.")
        current = sha256_of(p.serving_db) if p.serving_db.exists() else None
        served = [i for i, m in enumerate(kept) if m["sha256"] == current]
        if not served:
            raise BrechaError(
                f"{p.serving_db} matches none of the snapshots in {p.snapshots} (checksum {str(current)[:12]}); "
                "refusing to guess which one is older. Publish again with `brecha publish`."
            )
        if served[-1] == 0:
            raise BrechaError(
                f"{p.serving_db} already serves the oldest kept snapshot ({kept[0]['snapshot_id']}); "
                f"nothing older is kept (the newest {KEEP_SNAPSHOTS} are). `brecha publish --list` lists them; "
                "`brecha publish --serve ID` serves any of them."
            )
        return _restore(p, kept[served[-1] - 1], "rollback")


def serve_snapshot(snapshot_id: str) -> PublishResult:
    """Serve the kept snapshot ``snapshot_id`` (or the one snapshot whose id starts with it), older or newer than
    the one being served, with the same atomic swap as publish and rollback (new mtime, Grafana watch link)."""
    p = paths()
    _check_writable(p, p.serving)
    with _publish_lock(p):
        _repair_ledger_of(p)
        kept = list_snapshots()
        matches = [m for m in kept if m["snapshot_id"] == snapshot_id] or \
            [m for m in kept if m["snapshot_id"].startswith(snapshot_id)]
        if len(matches) != 1:
            ids = ", ".join(m["snapshot_id"] for m in kept) or "none"
            why = "matches several" if matches else "is not one"
            raise BrechaError(f"{snapshot_id!r} {why} of the kept snapshots in {p.snapshots} "
                              f"(kept: {ids}). `brecha publish --list` lists them.")
        return _restore(p, matches[0], "serve")


def _restore(p: Paths, target: dict, action: str) -> PublishResult:
    """Swap the kept snapshot ``target`` (from ``list_snapshots``) in as the serving copy; the caller holds the
    publish lock. The ledger row is written as a pending record first and enters ``ops.snapshots`` once the swap
    is done (now, or at the next publish, rollback or serve when this one dies in between)."""
    source = p.snapshots / target["file"]
    row = [target["snapshot_id"], action, datetime.now(UTC).replace(tzinfo=None).isoformat(), target.get("run_id"),
           target.get("batch_id"), target["sha256"], source.stat().st_size, str(p.serving_db), str(source),
           json.dumps(target.get("row_counts", {}))]
    with _swapping_in(p) as tmp:
        shutil.copyfile(source, tmp)
        if sha256_of(tmp) != target["sha256"]:
            raise BrechaError(f"{source}: changed while being restored; nothing was swapped. Try again.")
        _write_pending(p, {"action": action, "snapshot_id": target["snapshot_id"], "sha256": target["sha256"],
                           "row": row})
    result = PublishResult(target["snapshot_id"], target.get("run_id"), p.serving_db, source, target["sha256"],
                           target.get("row_counts", {}), action=action)
    try:
        _repair_ledger_of(p)
    except duckdb.Error as err:  # the serving copy is restored; the pending record is entered by the next writer
        result.notes.append(f"not yet recorded in {p.db} ops.snapshots ({err}); the next publish, rollback or "
                            "serve records it")
    return result


def snapshot_listing() -> str:
    """The kept snapshots, oldest first, as a text table; the one being served is marked."""
    p = paths()
    _repair_if_free(p)
    kept = list_snapshots()
    if not kept:
        return f"no snapshots kept in {p.snapshots}: publish with `brecha publish` (or `brecha run`)"
    current = sha256_of(p.serving_db) if p.serving_db.exists() else None
    rows = [("", "snapshot id", "published at (UTC)", "run id", "batch", "sha256", "marts rows")]
    for m in kept:
        marts = sum(n for k, n in m.get("row_counts", {}).items() if k.startswith("marts."))
        rows.append(("*" if m["sha256"] == current else "", m["snapshot_id"], m["published_at"][:19],
                     m.get("run_id") or "-", str(m.get("batch_id") or "-"), m["sha256"][:12], f"{marts:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    served = "* = served now" if current in {m["sha256"] for m in kept} else \
        f"{p.serving_db} matches none of them"
    return "\n".join([*lines, f"{served}; serve any with `brecha publish --serve SNAPSHOT_ID`"])


def list_snapshots() -> list[dict]:
    """The kept snapshots, oldest first: each one's own ``ops.snapshots`` row, read from the snapshot file, with
    ``file`` (its name in the snapshots folder) and ``sha256`` (of its bytes)."""
    out = []
    unserved = _unserved_publish(paths())  # a publish killed before its swap: not a kept snapshot
    for snapshot in sorted(paths().snapshots.glob("*.duckdb")):
        if snapshot.stem == unserved:
            continue
        own = _own_row(snapshot)
        if own is not None:
            out.append({**own, "file": snapshot.name, "sha256": sha256_of(snapshot)})
    return out


def current_snapshot(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The newest row of the ledger ``ops.snapshots`` of the file ``con`` reads (a serving copy names itself there):
    what the API and the atlas say they answer from. None when the file has no ledger or an empty one."""
    if not table_exists(con, "ops", "snapshots"):
        return None
    row = con.execute("SELECT snapshot_id, action, published_at, run_id FROM ops.snapshots "
                      "ORDER BY published_at DESC LIMIT 1").fetchone()
    return None if row is None else {"snapshot_id": row[0], "action": row[1],
                                     "published_at": row[2].isoformat(), "run_id": row[3]}


def _own_row(snapshot: Path) -> dict | None:
    """The ledger row a snapshot file carries for itself (None: not a readable snapshot)."""
    try:
        with duckdb.connect(str(snapshot), read_only=True) as con:
            row = con.execute("SELECT snapshot_id, published_at, run_id, batch_id, row_counts FROM ops.snapshots "
                              "WHERE snapshot_id = ? AND action = 'publish'", [snapshot.stem]).fetchone()
    except duckdb.Error:
        return None
    if row is None:
        return None
    return {"snapshot_id": row[0], "published_at": row[1].isoformat(), "run_id": row[2], "batch_id": row[3],
            "row_counts": json.loads(row[4])}


def build_serving_file(con: duckdb.DuckDBPyConnection, src: str, target: Path,
                       snapshot_row: list | None = None) -> dict[str, int]:
    """Write the reader-facing tables of catalog ``src`` into a new DuckDB file ``target``; return row counts.

    ``snapshot_row`` (the values of this publish's ``ops.snapshots`` row but the last, ``row_counts``): once the
    data is copied, the row, with the copied row counts, is appended to ``ops.snapshots`` of ``src`` (the ledger),
    and the ledger is copied last.
    """
    target.unlink(missing_ok=True)
    con.execute(f"ATTACH '{target}' AS serving (STORAGE_VERSION '{SERVING_STORAGE_VERSION}')")
    counts: dict[str, int] = {}
    try:
        in_list = ", ".join("?" * len(PUBLISHED_SCHEMAS))
        relations = con.execute(
            f"SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name IN ({in_list}) "
            "UNION ALL SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = ? AND NOT internal "
            f"AND schema_name IN ({in_list}) ORDER BY 1, 2",
            [src, *PUBLISHED_SCHEMAS, src, *PUBLISHED_SCHEMAS],
        ).fetchall()
        raw = {t for (t,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'raw'", [src]
        ).fetchall()}
        relations += [("raw", t) for t in PUBLISHED_RAW_TABLES if t in raw]
        ledger = ("ops", "snapshots")
        relations = [r for r in relations if r != ledger]
        for schema in sorted({s for s, _ in relations} | {"ops"}):
            con.execute(f'CREATE SCHEMA IF NOT EXISTS serving."{schema}"')
        for schema, name in relations:  # views become tables: the serving copy stands alone
            con.execute(f'CREATE TABLE serving."{schema}"."{name}" AS SELECT * FROM "{src}"."{schema}"."{name}"')
        if "_rejects" in raw:
            quoted = f'"{src}"'
            batch = _latest_batch(con, src)[0]
            summary = REJECTS_SUMMARY_SQL.format(src=quoted, batch="NULL::INTEGER" if batch is None else int(batch))
            con.execute(f"CREATE TABLE serving.ops.rejects_summary AS {summary}")
            relations.append(("ops", "rejects_summary"))
        for schema, name in relations:
            counts[f"{schema}.{name}"] = con.execute(f'SELECT count(*) FROM serving."{schema}"."{name}"').fetchone()[0]
        if snapshot_row is not None:
            values = [*snapshot_row, json.dumps(counts)]
            con.execute(f'INSERT INTO "{src}".ops.snapshots VALUES ({", ".join("?" * len(values))})', values)
        if table_exists(con, *ledger, src):
            con.execute(f'CREATE TABLE serving.ops.snapshots AS SELECT * FROM "{src}".ops.snapshots')
            counts["ops.snapshots"] = con.execute("SELECT count(*) FROM serving.ops.snapshots").fetchone()[0]
        con.execute("CHECKPOINT serving")
    finally:
        con.execute("DETACH serving")
    return counts


# --- checks -----------------------------------------------------------------------------------------------

def _check_publishable(con: duckdb.DuckDBPyConnection, src: str) -> None:
    marts = {t for (t,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'marts'", [src]
    ).fetchall()}
    missing = [m for m in REQUIRED_MARTS if m not in marts]
    if missing:
        raise BrechaError(
            f"{paths().db}: the warehouse lacks marts.{', marts.'.join(missing)}; refusing to publish an incomplete "
            "serving copy (the current one is left as it is). Run `brecha build` (or `brecha run`) first."
        )
    batch_id, status = _latest_batch(con, src)
    if batch_id is None:
        raise BrechaError(f"{paths().db}: raw._batches is empty or missing; nothing was landed. Run `brecha ingest`.")
    if status != "ok":
        raise BrechaError(
            f"{paths().db}: the latest landing batch {batch_id} in raw._batches has status '{status}', not 'ok'; "
            "refusing to publish marts built from a failed or unfinished landing (the serving copy is left as it "
            "is). Fix the extracts and rerun `brecha ingest` and `brecha build`."
        )


def check_gates(con: duckdb.DuckDBPyConnection, src: str) -> dict[str, tuple[bool, datetime, str]]:
    """Refuse unless the latest batch passed every gate and dbt build (``brecha.warehouse.gates.REQUIRED``); return the
    outcomes checked (publish records them in ``ops.publish_checks``)."""
    batch_id, _ = _latest_batch(con, src)
    found = gates.outcomes(con, batch_id, src)
    missing = [g for g in gates.REQUIRED if g not in found]
    failed = [g for g in gates.REQUIRED if g in found and not found[g][0]]
    if missing or failed:
        what = "; ".join([*(f"{g} failed ({found[g][2][:300]})" for g in failed),
                          *(f"{g} has no recorded result" for g in missing)])
        raise BrechaError(
            f"{paths().db}: refusing to publish batch {batch_id}: it did not pass every gate and build "
            f"({what}). The serving copy is left as it is. Run `brecha run` (or, step by step, `brecha validate "
            "--suite landed`, `brecha build`, `brecha validate --suite marts`, `brecha train`) and fix what "
            "fails; results per batch are in ops.batch_gates.")
    return found


def _record_checks(con: duckdb.DuckDBPyConnection, snapshot_id: str, batch_id: int | None,
                   checked: dict[str, tuple[bool, datetime, str]]) -> None:
    """What publish checked for the snapshot (``ops.publish_checks``), one row per gate."""
    for gate, (passed, at, _) in sorted(checked.items()):
        con.execute("INSERT INTO ops.publish_checks VALUES (?, ?, ?, ?, ?)", [snapshot_id, batch_id, gate, passed, at])


def _latest_batch(con: duckdb.DuckDBPyConnection, src: str) -> tuple[int | None, str | None]:
    if not table_exists(con, "raw", "_batches", src):
        return None, None
    row = con.execute(f'SELECT batch_id, status FROM "{src}".raw._batches ORDER BY batch_id DESC LIMIT 1').fetchone()
    return (row[0], row[1]) if row else (None, None)


def _verify(path: Path, counts: dict[str, int]) -> None:
    """Reopen the finished file read-only and compare its row counts with what was copied."""
    with duckdb.connect(str(path), read_only=True) as check:
        for name, n in counts.items():
            got = check.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            if got != n:
                raise BrechaError(f"{path}: {name} has {got} rows after the copy, expected {n}; nothing was swapped.")


# --- bookkeeping ------------------------------------------------------------------------------------------

def _forget(con: duckdb.DuckDBPyConnection, snapshot_id: str) -> None:
    """Remove what a publish that did not finish wrote to the warehouse (its ledger row and checks)."""
    con.execute("DELETE FROM ops.publish_checks WHERE snapshot_id = ?", [snapshot_id])
    con.execute("DELETE FROM ops.snapshots WHERE snapshot_id = ? AND action = 'publish'", [snapshot_id])


def _prune(snapshots_dir: Path, keep: int) -> None:
    snapshots = sorted(snapshots_dir.glob("*.duckdb"))
    for snapshot in snapshots[:-keep] if keep else snapshots:
        snapshot.unlink()
        snapshot.with_suffix(".json").unlink(missing_ok=True)  # a manifest left by an earlier version


# --- files ------------------------------------------------------------------------------------------------

def _check_writable(p: Paths, *folders: Path) -> None:
    """Before any work: each of ``folders`` (the serving folder, its ``snapshots/``) takes a new file. A file that
    has no name (``O_TMPFILE``) is made and dropped, so nothing is left behind, even by a kill."""
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            raise BrechaError(
                f"{folder}: cannot write there ({env_fault(err)}). Publishing writes the new serving copy beside "
                f"{p.serving_db.name} in {p.serving} and keeps a copy in {p.snapshots}: make both writable for this "
                "user (or set BRECHA_HOME to a home you can write). The served copy is unchanged.") from err



@contextmanager
def _publish_lock(p: Paths, wait: bool = True) -> Iterator[None]:
    """One publish or rollback at a time per serving folder (``wait=False``: raise BlockingIOError when held)."""
    p.serving.mkdir(parents=True, exist_ok=True)
    with open(p.publish_lock, "w") as fh, locked(fh, wait=None if wait else 0):
        yield


def _remove_stale(p: Paths, con: duckdb.DuckDBPyConnection) -> None:
    """Leftovers of a publish that died midway (we hold the lock, so nobody else is writing them): temporary files,
    snapshot files that are not a readable snapshot, and the ledger brought in line with what is served
    (``_repair_ledger``)."""
    unreadable = [f for f in p.snapshots.glob("*.duckdb") if _own_row(f) is None]
    for stale in [*p.serving.glob(f".*{TMP_SUFFIX}"), *p.serving.glob(f".*{TMP_SUFFIX}.wal"),
                  *p.snapshots.glob(f".*{TMP_SUFFIX}"), *unreadable]:
        stale.unlink(missing_ok=True)
    _repair_ledger(p, con)


# --- the ledger and the swap ------------------------------------------------------------------------------
# A DuckDB table and a file rename cannot change in one atomic step. So each swap is preceded by a pending
# record (serving/.ledger-pending.json, flushed to disk): what the ledger must say once the new file is served.
# Whoever holds the publish lock next (this publish once its swap is done, or the next publish, rollback or serve
# after a kill -9) compares the served file with the record: served, the ledger row is completed; not served, the
# publish is undone (its row and its snapshot file removed). ``publish --list`` reads the record the same way, so
# the listing agrees with the ledger even before the repair.

def _write_pending(p: Paths, record: dict) -> None:
    write_atomic(p.ledger_pending, json.dumps(record), fsync=True)
    fsync_dir(p.serving)


def _read_pending(p: Paths) -> dict | None:
    try:
        return json.loads(p.ledger_pending.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError:  # cannot happen with an atomic write; a damaged record is no record
        return None


def _repair_ledger_of(p: Paths, retry: bool = True) -> None:
    """``_repair_ledger`` on the warehouse, when there is one (a home may hold only a serving folder)."""
    if p.db.exists():
        with connect(p.db, retry=retry) as con:
            _repair_ledger(p, con)


def _repair_if_free(p: Paths) -> None:
    """``publish --list`` applies what a killed swap left (``_repair_ledger``) when it can at once: a home it may
    write, held by no run and no publish. Otherwise it only reads, reading the pending record as the repair would:
    a reader never waits or fails for this."""
    from brecha.core.runlock import hold

    if not p.db.exists():
        return
    try:
        with hold(), _publish_lock(p, wait=False):
            _repair_ledger_of(p, retry=False)  # a writer holds the warehouse: list at once, do not wait for it
    except (BrechaError, OSError, duckdb.Error):  # held, read-only, or the warehouse busy: list what the files say
        pass


def _unserved_publish(p: Paths) -> str | None:
    """The snapshot id of a publish that wrote its snapshot but died before its swap (None: there is none)."""
    pending = _read_pending(p)
    if pending is None or pending["action"] != "publish":
        return None
    served = sha256_of(p.serving_db) if p.serving_db.exists() else None
    return None if served == pending["sha256"] else pending["snapshot_id"]


def _repair_ledger(p: Paths, con: duckdb.DuckDBPyConnection) -> None:
    """Bring the ledger ``ops.snapshots`` in line with the served file after a publish, rollback or serve that
    stopped between its swap and its ledger write (see above); the caller holds the publish lock. Idempotent."""
    con.execute("CREATE SCHEMA IF NOT EXISTS ops")
    con.execute(SNAPSHOTS_DDL)
    pending = _read_pending(p)
    if pending is not None:
        served = sha256_of(p.serving_db) if p.serving_db.exists() else None
        done = served == pending["sha256"]
        if pending["action"] == "publish" and done:
            con.execute("UPDATE ops.snapshots SET sha256 = ?, size_bytes = ? WHERE snapshot_id = ? "
                        "AND action = 'publish' AND sha256 IS NULL",
                        [pending["sha256"], pending["size_bytes"], pending["snapshot_id"]])
        elif pending["action"] == "publish":
            _forget(con, pending["snapshot_id"])
            (p.snapshots / f"{pending['snapshot_id']}.duckdb").unlink(missing_ok=True)
        elif done:
            row = pending["row"]
            exists = con.execute("SELECT count(*) FROM ops.snapshots WHERE snapshot_id = ? AND action = ? "
                                 "AND published_at = ?", row[:3]).fetchone()[0]
            if not exists:
                con.execute(f"INSERT INTO ops.snapshots VALUES ({', '.join('?' * len(row))})", row)
        p.ledger_pending.unlink(missing_ok=True)
    # a publish row still without its checksum: that publish died before its pending record, so before its swap
    for (snapshot_id,) in con.execute(
            "SELECT snapshot_id FROM ops.snapshots WHERE action = 'publish' AND sha256 IS NULL").fetchall():
        _forget(con, snapshot_id)
        (p.snapshots / f"{snapshot_id}.duckdb").unlink(missing_ok=True)


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text)[:60]
