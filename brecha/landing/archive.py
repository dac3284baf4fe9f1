"""The archive of originals: ``$BRECHA_HOME/archive/<sha256[:2]>/<sha256>/<original file name>``, plus one
manifest per batch (``archive/manifests/batch-000001.json``) from which the raw layer can be rebuilt alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from brecha.files import replacing, write_atomic
from brecha.landing.scan import SourceFile

MANIFESTS = "manifests"


def store(src: SourceFile, archive: Path) -> str:
    """Copy ``src`` into the archive (once per checksum); return its path relative to the archive."""
    folder = archive / src.sha256[:2] / src.sha256
    existing = sorted(p for p in folder.glob("*") if p.is_file() and not p.name.startswith(".")) \
        if folder.is_dir() else []
    if existing:
        return existing[0].relative_to(archive).as_posix()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / src.original.name
    with replacing(dest, ".partial") as tmp:
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
