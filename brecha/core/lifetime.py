"""Processes that end with the process that started them, and the whole tree of a command stopped at once (Linux).

``brecha serve --workers N`` and ``brecha airflow`` start processes of their own. Killed with SIGKILL, a parent
cannot pass anything on: its children must have asked the kernel beforehand to be signalled when it dies
(``prctl(PR_SET_PDEATHSIG)``), or they keep running, holding the port (a restart then fails with "Address already
in use"). And a supervisor whose components start processes in sessions of their own (Airflow's) cannot stop them
with a signal to its process group: it adopts every descendant (``PR_SET_CHILD_SUBREAPER``, so none escapes by
being orphaned) and signals them one by one (``stop_tree``).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, arg: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)) == 0
    except (OSError, AttributeError):  # not Linux
        return False


def exit_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> bool:
    """Have the kernel send ``sig`` to this process when its parent dies (SIGKILL included); ``parent``: the pid the
    parent had (default: the ``multiprocessing`` parent), to catch a parent that died before the request. The
    signal follows the parent *thread* that started this process: start it from a thread that lives as long as
    the parent (uvicorn's supervisor starts its workers from its main thread). False where it cannot be had."""
    if parent is None and (mp_parent := multiprocessing.parent_process()) is not None:
        parent = mp_parent.pid
    if not _prctl(PR_SET_PDEATHSIG, sig):
        return False
    if parent is not None and os.getppid() != parent:  # already orphaned: no death signal will come
        os.kill(os.getpid(), sig)
    return True


def adopt_orphans() -> bool:
    """Become the parent of every orphaned descendant (instead of init), so ``stop_tree`` reaches them all."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc), children before their own children."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            out.append(child)
            todo.append(child)
    return out


def stop_tree(pid: int, grace: float = 20.0) -> list[int]:
    """SIGTERM every descendant of ``pid`` (this process: ``os.getpid()``), wait up to ``grace`` seconds for them,
    then SIGKILL what is left; reap our own children. Returns the pids still alive after that (none, normally)."""
    deadline = time.monotonic() + grace
    signalled: set[int] = set()
    while time.monotonic() < deadline:
        alive = [p for p in descendants(pid) if not _zombie(p)]
        if not alive:
            break
        for p in alive:
            if p not in signalled:
                _signal(p, signal.SIGTERM)
                signalled.add(p)
        _reap()
        time.sleep(0.2)
    for p in descendants(pid):
        _signal(p, signal.SIGKILL)
    time.sleep(0.2)
    _reap()
    return [p for p in descendants(pid) if not _zombie(p)]


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().decode(errors="replace").rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
