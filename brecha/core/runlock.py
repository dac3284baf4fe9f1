"""One run at a time per ``$BRECHA_HOME``: a run-level lock that every writing step takes.

DuckDB's own file lock only serialises single connections: two ``brecha run`` on one home (or a DAG run and a
CLI run) would interleave their steps between connections and mix their batches. So every step that writes
the warehouse (``brecha.orchestrate.steps``) holds ``$BRECHA_HOME/.run.lock`` (``fcntl.flock``, released by the kernel
when the process dies, so a killed run never leaves it behind) and writes who holds it into the file:
pid, start time and command. A second process does not wait: it stops at once with a message naming the
holder (set ``BRECHA_LOCK_WAIT`` to a number of seconds to wait that long first).

The lock is re-entrant within one process: ``brecha run`` takes it once for the whole pipeline and the steps
it calls take it again for free.

An Airflow DAG run spans many processes (one per task), so it cannot hold one ``flock`` from start to end.
Its first task writes a *claim* for the DAG run (``$BRECHA_HOME/.run.claim``); each of its steps then
takes the lock as usual and accepts the claim as its own, while a CLI run (or another DAG run) that finds a
claim of someone else stops with a message naming it. The DAG's last task (``release``, run whatever
happened upstream) removes the claim.

On the lake (``Settings.storage == "lake"``) the writers may be on several machines, each with its own home, so the
lock is not a file: it is a PostgreSQL advisory lock in the lake's catalog database (``pg_advisory_lock`` on one key,
``LAKE_LOCK_KEY``), taken on a connection of its own (psycopg) that stays open for the whole hold. PostgreSQL lets go
of it when that session ends: when the holder is done, or killed (its socket closes), or, for a machine that
vanished, when the server's TCP keepalives give up on it (``brecha.core.lake`` sets them to about two minutes).
DuckDB's postgres extension cannot hold it (it lets go of a session's advisory lock at once). Who holds it, and a DAG
run's claim, are rows of a small table beside the catalog's own (``brecha_run_lock``), so a waiting user on another
machine is told who holds the lake, as with the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from brecha.core.errors import BrechaError, env_fault
from brecha.core.files import locked, write_atomic
from brecha.core.settings import LOCK_WAIT_ENV, OWNER_ENV, Paths, Settings, current, paths

WAIT_ENV = LOCK_WAIT_ENV  # Settings.lock_wait: seconds to wait for the lock before stopping (default 0: stop at once)
__all__ = ["OWNER_ENV", "WAIT_ENV", "RunLocked", "claim", "hold", "holder_info", "lake_holder", "read_claim",
           "release"]

# The lake's run lock: one advisory lock key in the catalog database ("brecha" and 1, as a bigint), and the table that
# says who holds it and which DAG run claimed the lake (a plain PostgreSQL table, not a DuckLake one: no snapshot)
LAKE_LOCK_KEY = 0x6272656368610001
LEASE_TABLE = "brecha_run_lock"
LEASE_DDL = (f"CREATE TABLE IF NOT EXISTS {LEASE_TABLE} (what text PRIMARY KEY, info jsonb NOT NULL, "
             "backend_pid integer NOT NULL, since timestamptz NOT NULL DEFAULT now())")
POLL = 0.5  # seconds between two tries while waiting (Settings.lock_wait)

_local = threading.local()


class RunLocked(BrechaError):
    """Another run holds this home."""


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def _command() -> str:
    return " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300] or "python"


def holder_info(home: Path | None = None) -> dict[str, Any] | None:
    """Who holds (or last held) the lock, as written in the lock file; None when unknown."""
    path = Paths(home or paths().home).run_lock
    try:
        return json.loads(path.read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None


def _describe(info: dict[str, Any] | None) -> str:
    if not info:
        return "another process (no details recorded)"
    return (f"pid {info.get('pid')} on {info.get('host', '?')}, started at {info.get('started_at')} UTC, "
            f"command: {info.get('command')}")


def read_claim(home: Path | None = None) -> dict[str, Any] | None:
    path = Paths(home or paths().home).run_claim
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _check_claim(home: Path, owner: str | None) -> None:
    claim = read_claim(home)
    if claim is None:
        return
    mine = owner or current().run_owner
    if mine and claim.get("owner") == mine:
        return
    raise RunLocked(
        f"{home}: a pipeline run is in progress: {claim.get('owner')} (claimed at {claim.get('claimed_at')} UTC by "
        f"pid {claim.get('pid')}). Wait for it to finish; if that run is no longer running (its Airflow DAG run "
        f"failed or was killed without its `release` task), delete {Paths(home).run_claim} and start again.")


@contextmanager
def hold(command: str | None = None, owner: str | None = None) -> Iterator[Path]:
    """Hold the run lock of ``$BRECHA_HOME`` (on the lake: the lake's, in its catalog database), re-entrant within
    this process; raise ``RunLocked`` naming the holder when another process has it (after ``Settings.lock_wait``
    seconds), or when the home (the lake) is claimed by a DAG run other than ``owner`` (default: the settings'
    ``run_owner``)."""
    home = paths().ensure().home
    settings = current()
    key: object = _lake_key(settings) if settings.storage == "lake" else home
    held: dict[object, int] = getattr(_local, "held", None) or {}
    _local.held = held
    if held.get(key):
        if settings.storage == "lake":
            _still_held(settings)
        held[key] += 1
        try:
            yield home
        finally:
            held[key] -= 1
        return
    if settings.storage == "lake":
        with _hold_lake(settings, command, owner):
            held[key] = 1
            try:
                yield home
            finally:
                held.pop(key, None)
        return
    try:
        fh = open(Paths(home).run_lock, "a+", encoding="utf-8")  # noqa: SIM115 (closed in the finally below)
    except OSError as err:
        raise BrechaError(
            f"{Paths(home).run_lock}: cannot open the run lock ({env_fault(err)}): this home is read-only for you, "
            "so no step can write it. Readers (`brecha sql`, `runs`, `publish --list`, `serve`) still work here; "
            "to run steps, make the folder writable for this user or set BRECHA_HOME to a folder you can write"
        ) from err
    with fh, contextlib.ExitStack() as stack:
        try:
            stack.enter_context(locked(fh, wait=current().lock_wait))
        except BlockingIOError:
            raise RunLocked(
                f"{home}: another Brecha run holds this home ({_describe(holder_info(home))}). Two runs on one home "
                "would mix their data: wait until it ends, or use another BRECHA_HOME "
                f"(set {WAIT_ENV}=<seconds> to wait for it).") from None
        _check_claim(home, owner)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "started_at": _now(),
                             "command": command or _command()}))
        fh.flush()
        held[key] = 1
        try:
            yield home
        finally:
            held.pop(key, None)


def claim(owner: str) -> dict[str, Any]:
    """Claim the home (on the lake: the lake) for a multi-process run (an Airflow DAG run); stop when someone else
    holds it."""
    with hold(f"claim for {owner}", owner) as home:
        info = {"owner": owner, "pid": os.getpid(), "host": os.uname().nodename, "claimed_at": _now()}
        if current().storage == "lake":
            _local.lake.execute(f"INSERT INTO {LEASE_TABLE} (what, info, backend_pid) VALUES ('claim', %s, "
                                "pg_backend_pid()) ON CONFLICT (what) DO UPDATE SET info = excluded.info, "
                                "backend_pid = excluded.backend_pid, since = now()", [json.dumps(info)])
        else:
            write_atomic(Paths(home).run_claim, json.dumps(info))
    return info


def release(owner: str) -> bool:
    """Remove the claim of ``owner`` (True when there was one)."""
    if current().storage == "lake":
        with _lake_session(current(), f"release of {owner}") as conn:
            if not _lease_exists(conn):
                return False
            return conn.execute(f"DELETE FROM {LEASE_TABLE} WHERE what = 'claim' AND info->>'owner' = %s",
                                [owner]).rowcount > 0
    home = paths().ensure().home
    claimed = read_claim(home)
    if claimed is None or claimed.get("owner") != owner:
        return False
    Paths(home).run_claim.unlink(missing_ok=True)
    return True


# --- the lake: an advisory lock in the catalog database ------------------------------------------------------------

def _lake_key(settings: Settings) -> tuple[str, str, int, str]:
    from brecha.core.lake import Catalog

    c = Catalog.parse(settings.lake or "")
    return ("lake", c.host, c.port, c.database)


@contextmanager
def _lake_session(settings: Settings, purpose: str) -> Iterator[Any]:
    """A psycopg connection (autocommit) to the lake's catalog database, named ``brecha: <purpose>`` in
    ``pg_stat_activity``; closed after the block."""
    import psycopg

    try:
        conn = psycopg.connect(settings.lake, autocommit=True, connect_timeout=10,
                               application_name=f"brecha: {purpose}"[:63])
    except psycopg.OperationalError as err:
        from brecha.core.db import lake_unreachable

        lines = str(err).strip().splitlines() or ["no answer"]  # the first line says why; the next ones are hints
        raise lake_unreachable(settings.lake or "", lines[0], " for the run lock") from None
    with conn:
        yield conn


def _lease_exists(conn: Any) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", [LEASE_TABLE]).fetchone()[0]


def lake_holder(conn: Any) -> dict[str, Any] | None:
    """Who holds the lake's run lock now (the lease row of the session holding the advisory lock, else what
    PostgreSQL knows of that session), or None when it is free."""
    row = conn.execute(
        "SELECT l.pid, a.application_name, host(a.client_addr), a.backend_start FROM pg_locks l "
        "LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
        [LAKE_LOCK_KEY >> 32, LAKE_LOCK_KEY & 0xFFFFFFFF]).fetchone()
    if row is None:
        return None
    backend, app, client, since = row
    if _lease_exists(conn):
        lease = conn.execute(f"SELECT info FROM {LEASE_TABLE} WHERE what = 'holder' AND backend_pid = %s",
                             [backend]).fetchone()
        if lease is not None:
            return {**lease[0], "session": backend}
    return {"pid": "?", "host": client or "?", "started_at": since, "command": app, "session": backend}


def _still_held(settings: Settings) -> None:
    """Each step of a run checks that the session holding the lake's lock is still there (a server restart or a
    dropped connection ends it, and the lock with it): if not, the run stops rather than write unguarded."""
    import psycopg

    from brecha.core.lake import redact

    conn = getattr(_local, "lake", None)
    try:
        if conn is not None and conn.execute("SELECT pg_backend_pid()").fetchone():
            return
    except psycopg.Error:
        pass
    raise RunLocked(f"this run lost the lake's run lock ({redact(settings.lake or '')}: its session in the catalog "
                    "database ended, e.g. the server restarted or the network dropped it), so another writer may "
                    "have the lake now: the run stops here. Start it again")


def _lake_claim(conn: Any) -> dict[str, Any] | None:
    if not _lease_exists(conn):
        return None
    row = conn.execute(f"SELECT info FROM {LEASE_TABLE} WHERE what = 'claim'").fetchone()
    return row[0] if row else None


@contextmanager
def _hold_lake(settings: Settings, command: str | None, owner: str | None) -> Iterator[None]:
    """Hold the lake's run lock: the advisory lock on a session of its own, for the whole block (see the module's
    docstring); wait ``settings.lock_wait`` seconds for it, then raise ``RunLocked`` naming the holder."""
    from brecha.core.lake import redact

    command = command or _command()
    with _lake_session(settings, f"run lock, pid {os.getpid()}: {command}") as conn:
        deadline = time.monotonic() + settings.lock_wait
        while not conn.execute("SELECT pg_try_advisory_lock(%s)", [LAKE_LOCK_KEY]).fetchone()[0]:
            if time.monotonic() >= deadline:
                holder = lake_holder(conn)
                waited = f" (waited {settings.lock_wait:g} s)" if settings.lock_wait else ""
                raise RunLocked(
                    f"the lake {redact(settings.lake or '')} is held by another Brecha run{waited}: "
                    f"{_describe(holder)}{'' if holder is None else ', catalog session ' + str(holder['session'])}. "
                    "Two writers would mix their data: wait until it ends "
                    f"(set {WAIT_ENV}=<seconds> to wait for it); a killed run lets go of the lake at once")
            time.sleep(POLL)
        try:
            claimed = _lake_claim(conn)
            mine = owner or settings.run_owner
            if claimed is not None and not (mine and claimed.get("owner") == mine):
                raise RunLocked(
                    f"the lake {redact(settings.lake or '')}: a pipeline run is in progress: {claimed.get('owner')} "
                    f"(claimed at {claimed.get('claimed_at')} UTC by pid {claimed.get('pid')} on "
                    f"{claimed.get('host', '?')}). Wait for it to finish; if that run is no longer running (its "
                    "Airflow DAG run failed or was killed without its `release` task), remove its claim: "
                    f"DELETE FROM {LEASE_TABLE} WHERE what = 'claim' in the catalog database, and start again.")
            conn.execute(LEASE_DDL)
            info = {"pid": os.getpid(), "host": os.uname().nodename, "started_at": _now(), "command": command}
            conn.execute(f"INSERT INTO {LEASE_TABLE} (what, info, backend_pid) VALUES ('holder', %s, "
                         "pg_backend_pid()) ON CONFLICT (what) DO UPDATE SET info = excluded.info, "
                         "backend_pid = excluded.backend_pid, since = now()", [json.dumps(info)])
            _local.lake = conn
            yield
        finally:
            _local.lake = None
            with contextlib.suppress(Exception):  # the session may be gone (then so is its lock)
                conn.execute("SELECT pg_advisory_unlock(%s)", [LAKE_LOCK_KEY])
