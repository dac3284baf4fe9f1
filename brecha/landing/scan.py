"""Walk an input folder: which files to look at, their checksum, their format and their text encoding."""

from __future__ import annotations

import codecs
import hashlib
import os
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from brecha.core.errors import BrechaError, InputFileError
from brecha.landing import convert

DOC_SUFFIXES = frozenset({".md", ".txt", ".pdf"})
CHUNK = 1 << 20

# Text encodings told by their byte-order mark (the longer marks first: UTF-32 LE's begins with UTF-16 LE's) or,
# without one, by where the NUL bytes of ASCII text fall. DuckDB's reader reads UTF-16 little-endian only.
UTF16LE = "UTF-16 little-endian"
_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32 little-endian"), (codecs.BOM_UTF32_BE, "UTF-32 big-endian"),
         (codecs.BOM_UTF16_LE, UTF16LE), (codecs.BOM_UTF16_BE, "UTF-16 big-endian"))
_NUL_PATTERNS = (((0, 1, 1, 1), "UTF-32 little-endian"), ((1, 1, 1, 0), "UTF-32 big-endian"),
                 ((0, 1, 0, 1), UTF16LE), ((1, 0, 1, 0), "UTF-16 big-endian"))
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
    ``$BRECHA_HOME/extracts``, may be ingested).

    Symbolic links are followed, to files and to folders (a folder of extracts linked in from elsewhere is part
    of the input). Nothing is passed over in silence: a folder that cannot be listed, a link that leads nowhere
    and a link back to a folder that contains it (a loop) raise one ``InputFileError`` naming every such path
    and what to do, before any file is read."""
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    problems: list[InputFileError] = []
    if runtime is not None and root.resolve().is_relative_to(runtime):
        runtime = None

    def visit(folder: Path, chain: tuple[Path, ...]) -> None:
        """``chain``: the real paths of ``folder`` and of the folders it was reached through."""
        try:
            with os.scandir(folder) as entries:
                found = sorted(entries, key=lambda e: e.name)
        except OSError as err:
            where = str(root) if folder == root else folder.relative_to(root).as_posix() + "/"
            problems.append(InputFileError(where, f"the folder cannot be listed ({_why(err)}), so its files "
                                           "would be missed", _fix(err, "list (read and execute)")))
            return
        for entry in found:
            path = Path(entry.path)
            rel = path.relative_to(root).as_posix()
            try:
                real = path.resolve(strict=True)
                is_dir = entry.is_dir()  # follows a link
            except (OSError, RuntimeError) as err:  # a link to nothing, or a chain of links that loops
                target = os.readlink(path) if entry.is_symlink() else "?"
                if entry.name.startswith("."):
                    skipped.append((rel, "hidden file"))
                    continue
                problems.append(InputFileError(
                    rel, f"is a symbolic link to {target}, which cannot be followed ({_why(err)})",
                    "Restore what it points to, or remove the link from the folder"))
                continue
            if runtime is not None and real.is_relative_to(runtime):
                skipped.append((rel + "/" * is_dir, "Brecha's own runtime folder ($BRECHA_HOME)"))
            elif entry.name.startswith("."):
                skipped.append((rel + "/" * is_dir, "hidden folder" if is_dir else "hidden file"))
            elif is_dir:
                if any(c.is_relative_to(real) for c in chain):
                    problems.append(InputFileError(
                        rel, f"is a symbolic link to {real}, a folder that contains it: following it would loop",
                        "Remove the link (files inside the input folder are read through their own path), or "
                        "point it at a folder outside the input folder"))
                else:
                    visit(path, (*chain, real))
            elif not entry.is_file():
                skipped.append((rel, "not a regular file (a pipe, socket or device)"))
            elif entry.name.startswith("~$"):
                skipped.append((rel, "office lock file"))
            elif path.suffix.lower() in DOC_SUFFIXES:
                skipped.append((rel, "documentation"))
            else:
                files.append(path)

    visit(root, (root.resolve(),))
    if problems:
        first = problems[0]
        others = "; ".join(f"{e.file}: {e.problem}" for e in problems[1:])
        raise InputFileError(first.file, first.problem,
                             first.fix + (f". Other paths with problems: {others}" if others else ""))
    return sorted(files), skipped


def _why(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    return str(err) or type(err).__name__


def _fix(err: OSError, what: str) -> str:
    if isinstance(err, PermissionError):
        return (f"Give the user running brecha permission to {what} it (e.g. chmod a+rX), or move it out of "
                "the input folder")
    return "Check the disk and the path, or move it out of the input folder"


def _chunks(path: Path, rel: str, copy: Path | None = None) -> Iterator[bytes]:
    """The file's bytes, read once; with ``copy``, written there as they are read (the batch's snapshot)."""
    try:
        fh = path.open("rb")
    except OSError as err:
        raise InputFileError(rel, f"the file cannot be read ({_why(err)})", _fix(err, "read")) from err
    with fh, (copy.open("wb") if copy is not None else nullcontext()) as out:
        while True:
            try:
                chunk = fh.read(CHUNK)
            except OSError as err:
                raise InputFileError(rel, f"the file cannot be read ({_why(err)})", _fix(err, "read")) from err
            if not chunk:
                break
            if out is not None:
                out.write(chunk)
            yield chunk


def _wide_encoding(head: bytes) -> str | None:
    """The UTF-16 or UTF-32 flavour ``head`` (a file's first bytes) is written in: by its byte-order mark or, without
    one, by where the NUL bytes of ASCII characters fall (None: neither)."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    if len(head) < 8 or b"\x00" not in head:
        return None
    sample = head[: len(head) // 4 * 4]
    nul = [sum(sample[i] == 0 for i in range(k, len(sample), 4)) / (len(sample) // 4) for k in range(4)]
    for zeros, name in _NUL_PATTERNS:  # text whose first characters are mostly ASCII: NULs where expected
        if all((share > 0.6) if zero else (share < 0.1) for zero, share in zip(zeros, nul, strict=True)):
            return name
    return None


def inspect(path: Path, root: Path, staging: Path | None = None, cache: Path | None = None) -> SourceFile:
    """Hash the file and tell its format and encoding from its bytes (never from its name).

    With ``staging`` (a folder of the batch's own), the bytes are copied there as they are read, from the one
    read that hashes them, and the returned ``path`` is that copy: every later read of the batch (recognition,
    landing, the archive) reads the copy, so a file that changes while it is landed (a log being appended to)
    is landed exactly as hashed and archived.

    With ``cache``, a zip (not a workbook), a Stata or an SPSS file is converted (from that same copy) into a CSV
    in ``cache`` (``brecha.landing.convert``) and described as that CSV, keeping its own name, checksum and size;
    ``origin`` is the file as read, which the archive keeps."""
    rel = path.relative_to(root).as_posix()
    copy = None
    if staging is not None:
        copy = staging / rel
        try:
            copy.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise BrechaError(f"{copy.parent}: cannot write the batch's copy of the input ({_why(err)}). Free "
                              "space or fix the permissions of $BRECHA_HOME, then ingest again.") from err
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    head = b""
    utf8 = True
    size = 0
    try:
        for chunk in _chunks(path, rel, copy):
            if not head:
                head = chunk[:8192]
            digest.update(chunk)
            size += len(chunk)
            if utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
    except InputFileError:
        raise
    except OSError as err:  # writing the copy
        if copy is not None:
            copy.unlink(missing_ok=True)
        raise BrechaError(f"{copy}: cannot write the batch's copy of {rel} ({_why(err)}). Free space or fix the "
                          "permissions of $BRECHA_HOME, then ingest again.") from err
    path = copy or path
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    sha = digest.hexdigest()
    if not head.strip(b" \t\r\n\x00" + codecs.BOM_UTF8):
        raise InputFileError(rel, "the file is empty", "Download it again or remove it from the folder.")
    if cache is not None and (kind := convert.container_of(head, path)):
        done = convert.to_csv(rel, path, sha, kind, cache)
        inner = inspect(done.path, done.path.parent)
        return SourceFile(done.path, rel, sha, size, inner.fmt, inner.encoding, done.container, done.member, path)
    if head.startswith(_XLSX_MAGIC):
        return SourceFile(path, rel, sha, size, "xlsx", "")
    if head.startswith(_OLE2_MAGIC):
        raise InputFileError(rel, "this is a legacy Excel (.xls) or other OLE2 file, which cannot be read",
                             "Open it in a spreadsheet program and save it as .xlsx or as UTF-8 CSV.")
    wide = _wide_encoding(head)
    if wide is not None and wide != UTF16LE:
        raise InputFileError(rel, f"the text is {wide}, an encoding that cannot be read here (UTF-8, latin-1 and "
                             "UTF-16 little-endian can)",
                             f"Save it as UTF-8 CSV (e.g. `iconv -f {wide.split()[0]} -t UTF-8`, or a spreadsheet's "
                             "Save As > CSV UTF-8) and ingest again")
    if wide == UTF16LE:
        encoding = "utf-16"
        text = head.decode("utf-16-le", errors="ignore")
    elif b"\x00" in head:
        raise InputFileError(rel, "the file holds binary data (NUL bytes) and is no UTF-16 or UTF-32 text, so "
                             "its encoding cannot be read", "Save it as UTF-8 CSV (or .xlsx) and ingest again.")
    else:
        # Valid UTF-8 (checked over the whole file) is read as UTF-8; anything else is taken to be latin-1,
        # the encoding INEI publishes ENAHO in (every byte sequence decodes in latin-1).
        encoding = "utf-8" if utf8 else "latin-1"
        text = head.decode("utf-8" if utf8 else "latin-1", errors="ignore")
    first = text.lstrip("\ufeff \t\r\n\x00")[:1]
    if not first:
        raise InputFileError(rel, "the file is empty", "Download it again or remove it from the folder.")
    return SourceFile(path, rel, sha, size, "json" if first in ("[", "{") else "csv", encoding)
