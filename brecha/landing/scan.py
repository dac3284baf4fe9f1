"""Walk an input folder: which files to look at, their checksum, their format and their text encoding."""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from brecha.errors import InputFileError
from brecha.landing import convert

DOC_SUFFIXES = frozenset({".md", ".txt", ".pdf"})
CHUNK = 1 << 20

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_XLSX_MAGIC = b"PK\x03\x04"
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .xls / .doc


@dataclass(frozen=True)
class SourceFile:
    """One file of the input folder, read once: checksum, size, format and (for text) encoding."""

    path: Path  # absolute path to read from
    rel: str  # path relative to the ingested folder, as recorded in _source_file
    sha256: str
    size: int
    fmt: str  # 'csv' | 'json' | 'xlsx'
    encoding: str  # DuckDB encoding name for text files: 'utf-8' | 'latin-1' | 'utf-16'; '' for xlsx
    container: str = ""  # '' or how the file was found when ``path`` is a CSV made from it (brecha.landing.convert)
    member: str = ""  # the zip member read, for a zip
    origin: Path | None = None  # the file as found, when ``path`` is a CSV converted from it

    @property
    def original(self) -> Path:
        """The file as found (what the archive keeps)."""
        return self.origin or self.path


def walk(root: Path, runtime: Path | None = None) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files under ``root`` to land (sorted) and the ones skipped, with the reason. ``runtime`` ($BRECHA_HOME)
    is never read as input, should it lie inside ``root`` (a folder inside it, such as the default
    ``$BRECHA_HOME/extracts``, may be ingested)."""
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    if runtime is not None and root.resolve().is_relative_to(runtime):
        runtime = None
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if runtime is not None and path.resolve().is_relative_to(runtime):
            skipped.append((rel.as_posix(), "Brecha's own runtime folder ($BRECHA_HOME)"))
        elif any(part.startswith(".") for part in rel.parts):
            skipped.append((rel.as_posix(), "hidden file"))
        elif path.name.startswith("~$"):
            skipped.append((rel.as_posix(), "office lock file"))
        elif path.suffix.lower() in DOC_SUFFIXES:
            skipped.append((rel.as_posix(), "documentation"))
        else:
            files.append(path)
    return files, skipped


def _digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    for chunk in _chunks(path):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def inspect(path: Path, root: Path, cache: Path | None = None) -> SourceFile:
    """Hash the file and tell its format and encoding from its bytes (never from its name). A zip (not a
    workbook), a Stata or an SPSS file is converted into a CSV in ``cache`` (``brecha.landing.convert``) and
    described as that CSV, keeping its own name, checksum and size."""
    rel = path.relative_to(root).as_posix()
    if cache is not None:
        with path.open("rb") as fh:
            head = fh.read(16)
    if cache is not None and (kind := convert.container_of(head, path)):
        sha, size = _digest(path)
        done = convert.to_csv(rel, path, sha, kind, cache)
        inner = inspect(done.path, done.path.parent)
        return SourceFile(done.path, rel, sha, size, inner.fmt, inner.encoding, done.container, done.member, path)
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    head = b""
    utf8 = True
    size = 0
    for chunk in _chunks(path):
        if not head:
            head = chunk[:8192]
        digest.update(chunk)
        size += len(chunk)
        if utf8:
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                utf8 = False
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    sha = digest.hexdigest()
    if not head.strip(b" \t\r\n\x00" + codecs.BOM_UTF8):
        raise InputFileError(rel, "the file is empty", "Download it again or remove it from the folder.")
    if head.startswith(_XLSX_MAGIC):
        return SourceFile(path, rel, sha, size, "xlsx", "")
    if head.startswith(_OLE2_MAGIC):
        raise InputFileError(rel, "this is a legacy Excel (.xls) or other OLE2 file, which cannot be read",
                             "Open it in a spreadsheet program and save it as .xlsx or as UTF-8 CSV.")
    if head.startswith(_UTF16_BOMS):
        encoding = "utf-16"
        text = head.decode("utf-16", errors="ignore")
    elif b"\x00" in head:
        raise InputFileError(rel, "the file holds binary data (NUL bytes) and no UTF-16 byte-order mark, so its "
                             "encoding cannot be read", "Save it as UTF-8 CSV (or .xlsx) and ingest again.")
    else:
        # Valid UTF-8 (checked over the whole file) is read as UTF-8; anything else is taken to be latin-1,
        # the encoding INEI publishes ENAHO in (every byte sequence decodes in latin-1).
        encoding = "utf-8" if utf8 else "latin-1"
        text = head.decode("utf-8" if utf8 else "latin-1", errors="ignore")
    first = text.lstrip("\ufeff \t\r\n\x00")[:1]
    if not first:
        raise InputFileError(rel, "the file is empty", "Download it again or remove it from the folder.")
    return SourceFile(path, rel, sha, size, "json" if first in ("[", "{") else "csv", encoding)
