"""`brecha publish`: an atomic, read-only serving copy of the checked warehouse, with snapshots and rollback.

Readers (Grafana, analysts) never open the warehouse: they open ``$BRECHA_HOME/serving/brecha.duckdb``
read-only. Publishing builds a new file beside it with DuckDB itself (``ATTACH ... (STORAGE_VERSION
'v1.0.0')`` so the Grafana plugin's embedded DuckDB 1.4 can read it), copies only what readers need
(``marts.*``, ``ml.*``, ``ops.*`` and the landing bookkeeping), flushes it to disk and swaps it in with
``os.replace``. A reader that holds the old file open keeps reading the old file; the next connection sees
the new one. A publish that dies midway leaves only a temporary file, never a half-written serving copy.

Every publish keeps a copy under ``serving/snapshots/`` (the newest ``KEEP_SNAPSHOTS``) with a JSON
manifest (checksum, run id, row counts), and is recorded in ``ops.snapshots`` both in the warehouse and in
the serving copy itself (so dashboards can show the snapshot's age). ``rollback()`` swaps the snapshot
published before the one being served back in, the same atomic way.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import duckdb
import yaml

from brecha import gates
from brecha.config import GRAFANA_DIR, Paths, paths
from brecha.db import connect
from brecha.errors import BrechaError
from brecha.gx.record import DDL as VALIDATION_DDL

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
    p = paths()
    if not p.db.exists():
        raise BrechaError(f"{p.db}: no warehouse to publish. Run `brecha run` (or ingest, build and train) first.")
    p.serving.mkdir(parents=True, exist_ok=True)
    snapshots_dir = p.serving / "snapshots"
    snapshots_dir.mkdir(exist_ok=True)
    with _publish_lock(p.serving), connect(p.db) as con:
        _remove_stale_tmp(p.serving)
        src = con.sql("SELECT current_database()").fetchone()[0]
        _check_publishable(con, src)
        checked = check_gates(con, src)
        for ddl in (*VALIDATION_DDL, SNAPSHOTS_DDL, *gates.DDL):  # readers' tables exist before the first validation
            con.execute(ddl)
        run_id = run_id or _latest_run_id(con, src)
        batch_id = _latest_batch(con, src)[0]
        now = datetime.now(UTC).replace(tzinfo=None)
        snapshot_id = now.strftime("%Y%m%dT%H%M%S%fZ") + (f"_{_safe(run_id)}" if run_id else "")
        snapshot = snapshots_dir / f"{snapshot_id}.duckdb"
        tmp = _tmp_beside_serving(p)
        try:
            # Inside the file its own checksum cannot be known: sha256 and size stay null there.
            row = [snapshot_id, "publish", now, run_id, batch_id, None, None, str(p.serving_db), str(snapshot), None]
            _record_checks(con, snapshot_id, batch_id, checked)  # before the copy, so the serving copy has them
            counts = build_serving_file(con, src, tmp, snapshot_row=row)
            _fsync(tmp)
            digest = sha256_of(tmp)
            _verify(tmp, counts)
            shutil.copyfile(tmp, snapshot)
            _fsync(snapshot)
            os.chmod(snapshot, 0o444)
            _write_manifest(snapshot, snapshot_id, now, run_id, batch_id, digest, counts)
            _swap_in(tmp, p)
        except BaseException:
            con.execute("DELETE FROM ops.publish_checks WHERE snapshot_id = ?", [snapshot_id])
            raise
        finally:
            tmp.unlink(missing_ok=True)
        size = p.serving_db.stat().st_size
        con.execute(
            "INSERT INTO ops.snapshots VALUES (?, 'publish', ?, ?, ?, ?, ?, ?, ?, ?)",
            [snapshot_id, now, run_id, batch_id, digest, size, str(p.serving_db), str(snapshot), json.dumps(counts)],
        )
        _prune(snapshots_dir, KEEP_SNAPSHOTS)
    return PublishResult(snapshot_id, run_id, p.serving_db, snapshot, digest, counts)



def _tmp_beside_serving(p: Paths) -> Path:
    """A temporary file in the serving folder (same filesystem, so the final rename is atomic)."""
    return p.serving / f".{p.serving_db.name}.{os.getpid()}{TMP_SUFFIX}"


def _swap_in(tmp: Path, p: Paths) -> None:
    """Make the finished ``tmp`` read-only and rename it over the serving copy, then persist the rename."""
    _mtime_after(tmp, p.serving_db)
    os.chmod(tmp, 0o444)
    os.replace(tmp, p.serving_db)
    _ensure_watch_link(p)
    _fsync_dir(p.serving)

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
    tmp = p.serving / f".{name}.{os.getpid()}{TMP_SUFFIX}"
    tmp.unlink(missing_ok=True)
    os.symlink(p.serving_db.name, tmp)  # relative: it resolves inside the container's mount as well
    os.replace(tmp, link)


def rollback() -> PublishResult:
    """Swap the snapshot published before the one being served back in (atomically)."""
    p = paths()
    snapshots_dir = p.serving / "snapshots"
    with _publish_lock(p.serving):
        manifests = list_snapshots()
        if not manifests:
            raise BrechaError(f"{snapshots_dir}: no snapshots to roll back to. Publish first with `brecha publish`.")
        current = sha256_of(p.serving_db) if p.serving_db.exists() else None
        served = [i for i, m in enumerate(manifests) if m["sha256"] == current]
        if not served:
            raise BrechaError(
                f"{p.serving_db} matches none of the snapshots in {snapshots_dir} (checksum {str(current)[:12]}); "
                "refusing to guess which one is older. Publish again with `brecha publish`."
            )
        if served[-1] == 0:
            raise BrechaError(
                f"{p.serving_db} already serves the oldest kept snapshot ({manifests[0]['snapshot_id']}); "
                f"nothing older is kept (the newest {KEEP_SNAPSHOTS} are). `brecha publish --list` lists them; "
                "`brecha publish --serve ID` serves any of them."
            )
        return _restore(p, manifests[served[-1] - 1], "rollback")


def serve_snapshot(snapshot_id: str) -> PublishResult:
    """Serve the kept snapshot ``snapshot_id`` (or the one snapshot whose id starts with it), older or newer than
    the one being served, with the same atomic swap as publish and rollback (new mtime, Grafana watch link)."""
    p = paths()
    with _publish_lock(p.serving):
        manifests = list_snapshots()
        matches = [m for m in manifests if m["snapshot_id"] == snapshot_id] or \
            [m for m in manifests if m["snapshot_id"].startswith(snapshot_id)]
        if len(matches) != 1:
            kept = ", ".join(m["snapshot_id"] for m in manifests) or "none"
            why = "matches several" if matches else "is not one"
            raise BrechaError(f"{snapshot_id!r} {why} of the kept snapshots in {p.serving / 'snapshots'} "
                              f"(kept: {kept}). `brecha publish --list` lists them.")
        return _restore(p, matches[0], "serve")


def _restore(p: Paths, target: dict, action: str) -> PublishResult:
    """Swap the kept snapshot ``target`` (its manifest) in as the serving copy; the caller holds the publish lock."""
    source = p.serving / "snapshots" / target["file"]
    if sha256_of(source) != target["sha256"]:
        raise BrechaError(f"{source}: checksum differs from its manifest; the snapshot is damaged. Publish again.")
    tmp = _tmp_beside_serving(p)
    try:
        shutil.copyfile(source, tmp)
        _fsync(tmp)
        _swap_in(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    result = PublishResult(target["snapshot_id"], target.get("run_id"), p.serving_db, source, target["sha256"],
                           target.get("row_counts", {}), action=action)
    try:
        _record_rollback(target, source, action)
    except duckdb.Error as err:  # the serving copy is restored; the warehouse log is secondary
        result.notes.append(f"not recorded in {p.db} ops.snapshots: {err}")
    return result


def snapshot_listing() -> str:
    """The kept snapshots, oldest first, as a text table; the one being served is marked."""
    p = paths()
    manifests = list_snapshots()
    if not manifests:
        return f"no snapshots kept in {p.serving / 'snapshots'}: publish with `brecha publish` (or `brecha run`)"
    current = sha256_of(p.serving_db) if p.serving_db.exists() else None
    rows = [("", "snapshot id", "published at (UTC)", "run id", "batch", "sha256", "marts rows")]
    for m in manifests:
        marts = sum(n for k, n in m.get("row_counts", {}).items() if k.startswith("marts."))
        rows.append(("*" if m["sha256"] == current else "", m["snapshot_id"], m["published_at"][:19],
                     m.get("run_id") or "-", str(m.get("batch_id") or "-"), m["sha256"][:12], f"{marts:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    served = "* = served now" if current in {m["sha256"] for m in manifests} else \
        f"{p.serving_db} matches none of them"
    return "\n".join([*lines, f"{served}; serve any with `brecha publish --serve SNAPSHOT_ID`"])


def list_snapshots() -> list[dict]:
    """Manifests of the kept snapshots, oldest first."""
    snapshots_dir = paths().serving / "snapshots"
    out = []
    for manifest in sorted(snapshots_dir.glob("*.json")):
        data = json.loads(manifest.read_text())
        if (snapshots_dir / data["file"]).exists():
            out.append(data)
    return out


def build_serving_file(con: duckdb.DuckDBPyConnection, src: str, target: Path,
                       snapshot_row: list | None = None) -> dict[str, int]:
    """Write the reader-facing tables of catalog ``src`` into a new DuckDB file ``target``; return row counts.

    ``snapshot_row`` (the values of one ``ops.snapshots`` row) is appended to the copied publish history.
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
        if snapshot_row is not None:  # the last value (row_counts) is filled in here
            con.execute(SNAPSHOTS_DDL.replace("ops.snapshots", "serving.ops.snapshots"))
            data_counts = {k: v for k, v in counts.items() if k != "ops.snapshots"}
            values = [*snapshot_row[:-1], json.dumps(data_counts)]
            con.execute(f"INSERT INTO serving.ops.snapshots VALUES ({', '.join('?' * len(values))})", values)
            counts["ops.snapshots"] = con.execute("SELECT count(*) FROM serving.ops.snapshots").fetchone()[0]
        con.execute("CHECKPOINT serving")
    finally:
        con.execute("DETACH serving")
    return counts


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    """Refuse unless the latest batch passed every gate and dbt build (``brecha.gates.REQUIRED``); return the
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
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'raw' AND table_name = '_batches'",
        [src],
    ).fetchone()[0]
    if not exists:
        return None, None
    row = con.execute(f'SELECT batch_id, status FROM "{src}".raw._batches ORDER BY batch_id DESC LIMIT 1').fetchone()
    return (row[0], row[1]) if row else (None, None)


def _latest_run_id(con: duckdb.DuckDBPyConnection, src: str) -> str | None:
    has_runs = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'ml' AND table_name = 'model_runs'",
        [src],
    ).fetchone()[0]
    if not has_runs:
        return None
    row = con.execute(f'SELECT run_id FROM "{src}".ml.model_runs ORDER BY run_at DESC, run_id DESC LIMIT 1').fetchone()
    return str(row[0]) if row else None


def _verify(path: Path, counts: dict[str, int]) -> None:
    """Reopen the finished file read-only and compare its row counts with what was copied."""
    with duckdb.connect(str(path), read_only=True) as check:
        for name, n in counts.items():
            got = check.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            if got != n:
                raise BrechaError(f"{path}: {name} has {got} rows after the copy, expected {n}; nothing was swapped.")


# --- bookkeeping ------------------------------------------------------------------------------------------

def _record_rollback(target: dict, source: Path, action: str = "rollback") -> None:
    p = paths()
    with connect(p.db) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS ops")
        con.execute(SNAPSHOTS_DDL)
        con.execute(
            "INSERT INTO ops.snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [target["snapshot_id"], action, datetime.now(UTC).replace(tzinfo=None), target.get("run_id"),
             target.get("batch_id"), target["sha256"], source.stat().st_size, str(p.serving_db), str(source),
             json.dumps(target.get("row_counts", {}))],
        )


def _write_manifest(snapshot: Path, snapshot_id: str, now: datetime, run_id: str | None, batch_id: int | None,
                    digest: str, counts: dict[str, int]) -> None:
    manifest = snapshot.with_suffix(".json")
    tmp = manifest.with_name(manifest.name + TMP_SUFFIX)
    tmp.write_text(json.dumps({
        "snapshot_id": snapshot_id, "file": snapshot.name, "published_at": now.isoformat(), "run_id": run_id,
        "batch_id": batch_id, "sha256": digest, "row_counts": counts,
    }, indent=2))
    _fsync(tmp)
    os.replace(tmp, manifest)


def _prune(snapshots_dir: Path, keep: int) -> None:
    manifests = sorted(snapshots_dir.glob("*.json"))
    for manifest in manifests[:-keep] if keep else manifests:
        manifest.with_suffix(".duckdb").unlink(missing_ok=True)
        manifest.unlink()


# --- files ------------------------------------------------------------------------------------------------

@contextmanager
def _publish_lock(serving: Path) -> Iterator[None]:
    """One publish or rollback at a time per serving folder."""
    serving.mkdir(parents=True, exist_ok=True)
    with open(serving / ".publish.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove_stale_tmp(serving: Path) -> None:
    """Leftovers of a publish that died midway (we hold the lock, so nobody else is writing them)."""
    snapshots = serving / "snapshots"
    orphans = [f for f in snapshots.glob("*.duckdb") if not f.with_suffix(".json").exists()]  # killed mid-copy
    for stale in [*serving.glob(f".*{TMP_SUFFIX}"), *serving.glob(f".*{TMP_SUFFIX}.wal"),
                  *snapshots.glob(f"*{TMP_SUFFIX}"), *orphans]:
        stale.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text)[:60]
