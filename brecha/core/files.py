"""Files written so that a reader sees the old content or the new one, never half of it; and their checksums."""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def replacing(target: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``target`` (same folder, so the rename is atomic) to write; when the block
    ends normally, rename it over ``target`` with ``os.replace``; when it raises, remove it. The temporary name
    is ``.<target name>.<pid><suffix>`` (hidden, one per process, findable by its suffix after a crash)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}{suffix}")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(target: Path, data: str | bytes, *, fsync: bool = False, suffix: str = ".tmp") -> Path:
    """Write ``data`` (text as UTF-8) to ``target`` through a temporary file and a rename; ``fsync`` flushes the
    bytes to disk before the rename (for files that must survive a power cut, e.g. the snapshot ledger)."""
    with replacing(target, suffix) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        if fsync:
            fsync_file(tmp)
    return target


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def fsync_dir(folder: Path) -> None:
    """Persist a rename in ``folder`` (the directory entry itself)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@contextmanager
def locked(fh: IO, wait: float | None = None, poll: float = 0.5) -> Iterator[IO]:
    """An exclusive ``flock`` on the open file ``fh`` for the block (the kernel lets it go when the process dies):
    ``wait`` None blocks until it is free, else it is tried every ``poll`` seconds for ``wait`` seconds before
    ``BlockingIOError``. The one lock helper of the project: the home's run lock and the serving folder's publish
    lock both take it."""
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(poll)
    try:
        yield fh
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
