"""The archive of originals: ``$BRECHA_HOME/archive/<sha256[:2]>/<sha256>/<original file name>``, plus one
manifest per batch (``archive/manifests/batch-000001.json``) from which the raw layer can be rebuilt alone."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from brecha.core.files import replacing, write_atomic
from brecha.landing.scan import SourceFile

MANIFESTS = "manifests"


STAGING = ".staging"  # archive/.staging: the batch's copy of its input files (scan.inspect), removed after it


@contextmanager
def staged(staging: Path) -> Iterator[Path]:
    """The batch's staging folder, empty at the start (a killed batch's copies are removed) and removed at the end.
    Call it holding the run lock (one batch per home)."""
    shutil.rmtree(staging, ignore_errors=True)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def store(src: SourceFile, archive: Path) -> str:
    """Keep ``src`` in the archive (once per checksum), under its original file name; return its path relative to
    the archive. The batch's own copy of the file (under ``archive/.staging``, the bytes it hashed and landed) is
    linked in, not copied again."""
    folder = archive / src.sha256[:2] / src.sha256
    existing = sorted(p for p in folder.glob("*") if p.is_file() and not p.name.startswith(".")) \
        if folder.is_dir() else []
    if existing:
        return existing[0].relative_to(archive).as_posix()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / PurePosixPath(src.rel).name
    with replacing(dest, ".partial") as tmp:
        try:
            if not src.original.is_relative_to(archive):
                raise OSError("not the batch's own copy")  # never a link to a file the user may change
            os.link(src.original, tmp)
        except OSError:
            shutil.copyfile(src.original, tmp)
    return dest.relative_to(archive).as_posix()


def write_manifest(archive: Path, batch: dict[str, Any]) -> Path:
    folder = archive / MANIFESTS
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"batch-{batch['batch_id']:06d}.json"
    return write_atomic(dest, json.dumps(batch, indent=1, ensure_ascii=False, default=str), suffix=".partial")


def read_manifests(archive: Path) -> list[dict[str, Any]]:
    """Every batch manifest, in batch order."""
    folder = archive / MANIFESTS
    if not folder.is_dir():
        return []
    batches = [json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("batch-*.json")]
    return sorted(batches, key=lambda b: b["batch_id"])
