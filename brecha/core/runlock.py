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
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from brecha.core.errors import BrechaError, env_fault
from brecha.core.files import locked, write_atomic
from brecha.core.settings import LOCK_WAIT_ENV, OWNER_ENV, Paths, current, paths

WAIT_ENV = LOCK_WAIT_ENV  # Settings.lock_wait: seconds to wait for the lock before stopping (default 0: stop at once)
__all__ = ["OWNER_ENV", "WAIT_ENV", "RunLocked", "claim", "hold", "holder_info", "read_claim", "release"]

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
    """Hold the run lock of ``$BRECHA_HOME`` (re-entrant within this process); raise ``RunLocked`` naming the
    holder when another process has it, or when the home is claimed by a DAG run other than ``owner`` (default:
    the settings' ``run_owner``)."""
    home = paths().ensure().home
    held: dict[Path, int] = getattr(_local, "held", None) or {}
    _local.held = held
    if held.get(home):
        held[home] += 1
        try:
            yield home
        finally:
            held[home] -= 1
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
        held[home] = 1
        try:
            yield home
        finally:
            held.pop(home, None)


def claim(owner: str) -> dict[str, Any]:
    """Claim the home for a multi-process run (an Airflow DAG run); stop when someone else holds it."""
    with hold(f"claim for {owner}", owner) as home:
        info = {"owner": owner, "pid": os.getpid(), "claimed_at": _now()}
        write_atomic(Paths(home).run_claim, json.dumps(info))
    return info


def release(owner: str) -> bool:
    """Remove the claim of ``owner`` (True when there was one)."""
    home = paths().ensure().home
    current = read_claim(home)
    if current is None or current.get("owner") != owner:
        return False
    Paths(home).run_claim.unlink(missing_ok=True)
    return True
