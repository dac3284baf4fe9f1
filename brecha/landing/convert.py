"""Files DuckDB cannot read itself, turned into a CSV it can: INEI's zips, Stata ``.dta`` and SPSS ``.sav``.

INEI publishes each ENAHO module per year as ``{code}-Modulo01.zip`` in three flavours: the CSV (latin-1,
codes), the Stata ``.dta`` and the SPSS ``.sav`` (codes, with value labels), beside documentation (PDFs).
A file is told apart by its bytes, never by its name: a zip that is no workbook (no ``xl/workbook.xml``),
Stata's ``<stata_dta>`` header (format 117 and later) or its one-byte version header (formats 113-115), SPSS's
``$FL2``/``$FL3``. Inside a zip, the data table is the member named like ``enaho01-YYYY-100.csv|dta|sav``,
or else its only data member.

Stata and SPSS files are read with pyreadstat with their **codes** (value labels not applied), and written
as a UTF-8 CSV with the variable names as header: whole numbers stored as doubles are written without a
decimal part, so ``p1144`` lands as ``1``, as in INEI's CSV. A CSV member of a zip is copied out as it is.
The CSV is kept in ``$BRECHA_HOME/converted/<sha256 of the original>.csv`` (the next run reads it from
there); the archive keeps the original file, and rebuilding the raw layer converts it again.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from brecha.core.errors import InputFileError
from brecha.core.files import replacing

ZIP_MAGIC = b"PK\x03\x04"
DATA_SUFFIXES = (".csv", ".dta", ".sav", ".zsav")
TABLE_NAME = re.compile(r"enaho01[-_]\d{4}[-_]100\.(csv|dta|sav|zsav)$", re.IGNORECASE)


@dataclass(frozen=True)
class Converted:
    path: Path  # the CSV to read
    container: str  # how the original was found: 'dta', 'sav', 'zip:csv', 'zip:dta', 'zip:sav'
    member: str  # the zip member read ('' when the file is no zip)


def container_of(head: bytes, path: Path) -> str:
    """'' for a file DuckDB reads as it is (CSV, JSON, xlsx), else 'zip', 'dta' or 'sav'."""
    if head.startswith(b"<stata_dta>"):
        return "dta"
    if len(head) > 3 and head[0] in (113, 114, 115) and head[1] in (1, 2) and head[2] == 1:
        return "dta"  # Stata 8-13 (formats 113-115): version, byte order (1 HILO, 2 LOHI), filetype 1
    if head.startswith((b"$FL2", b"$FL3")):
        return "sav"
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile:
            return ""  # a damaged workbook or zip: the xlsx reader says what is wrong
        return "" if "xl/workbook.xml" in names else "zip"
    return ""


def _member(rel: str, zf: zipfile.ZipFile) -> str:
    data = [n for n in zf.namelist() if n.lower().endswith(DATA_SUFFIXES) and not n.endswith("/")
            and not Path(n).name.startswith(("._", "~$"))]
    named = [n for n in data if TABLE_NAME.search(Path(n).name)]
    for candidates in (named, data):
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:  # the same table in several flavours: codes first (CSV), then Stata, SPSS
            return sorted(candidates, key=lambda n: (DATA_SUFFIXES.index(Path(n).suffix.lower()), n))[0]
    raise InputFileError(rel, f"the zip holds no data table (CSV, Stata .dta or SPSS .sav); it holds: "
                              f"{', '.join(zf.namelist()[:10]) or 'nothing'}",
                         "Download the module again from INEI (CSV, STATA or SPSS flavour), or remove the zip")


def _statistical_to_csv(rel: str, source: Path, kind: str, dest: Path) -> None:
    import pandas as pd
    import pyreadstat

    reader = pyreadstat.read_dta if kind == "dta" else pyreadstat.read_sav
    try:
        frame, _meta = reader(str(source), apply_value_formats=False, user_missing=False)
    except Exception as err:  # pyreadstat raises its own ReadstatError / PyreadstatError
        raise InputFileError(rel, f"could not be read as {'Stata' if kind == 'dta' else 'SPSS'} ({err}); nothing "
                                  "was landed", "Download it again (it may be cut short) or remove it") from err
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_float_dtype(col):
            values = col.dropna()
            if len(values) and bool(((values % 1) == 0).all()) and values.abs().max() < 2**53:
                frame[name] = col.astype("Int64")  # 1.0 -> 1, as INEI's CSV writes it
    with replacing(dest, ".partial") as tmp:
        frame.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n")


def to_csv(rel: str, path: Path, sha256: str, kind: str, cache: Path) -> Converted:
    """The CSV for ``path`` (a 'zip', 'dta' or 'sav'), converted once per checksum into ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / f"{sha256}.csv"
    member = ""
    inner = kind
    if kind == "zip":
        with zipfile.ZipFile(path) as zf:
            member = _member(rel, zf)
            inner = Path(member).suffix.lower().lstrip(".").replace("zsav", "sav")
            if not dest.exists():
                if inner == "csv":
                    with zf.open(member) as fh, replacing(dest, ".partial") as tmp:
                        tmp.write_bytes(fh.read())
                else:
                    extracted = cache / f"{sha256}.{inner}"
                    with zf.open(member) as fh, replacing(extracted, ".partial") as tmp:
                        tmp.write_bytes(fh.read())
                    try:
                        _statistical_to_csv(f"{rel}:{member}", extracted, inner, dest)
                    finally:
                        extracted.unlink(missing_ok=True)
    elif not dest.exists():
        _statistical_to_csv(rel, path, kind, dest)
    return Converted(dest, f"zip:{inner}" if kind == "zip" else kind, member)
