"""Files written so that a reader sees the old content or the new one, never half of it; and their checksums."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
