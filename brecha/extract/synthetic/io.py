"""Small writing helpers shared by the synthetic extract writers."""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

# A fixed moment for every timestamp inside generated xlsx files (byte-identical output per seed).
FIXED_ZIP_TIME = (2024, 1, 1, 0, 0, 0)
FIXED_DOC_TIME = "2024-01-01T00:00:00Z"


def r_number(value: float | int | None, na: str = "NA") -> str:
    """Format a number the way R's ``write.csv`` does in the INEI reference (15 significant digits,
    ``E-2`` style for small values, ``NA`` for missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return na
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    v = float(value)
    if 0 < abs(v) < 0.1:
        mantissa, exp = f"{v:.16E}".split("E")
        return f"{mantissa}E{int(exp)}"
    text = f"{v:.15g}"
    return text


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]], encoding: str = "utf-8") -> int:
    """Write a comma-separated file with minimal quoting and ``\\n`` line ends; return data rows written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding=encoding, newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for row in rows:
            w.writerow(row)
            n += 1
    return n


def write_frame(df: pd.DataFrame, path: Path, encoding: str = "utf-8") -> int:
    """Write a DataFrame as a comma-separated file (header, minimal quoting, ``\n`` line ends)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, encoding=encoding, lineterminator="\n")
    return len(df)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip of ``members`` (name -> bytes, in order) whose bytes depend on content only: fixed entry times."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zout.writestr(info, data)
    return buf.getvalue()


def normalize_xlsx(path: Path) -> None:
    """Rewrite an xlsx so its bytes depend on content only: fixed zip entry times and document dates."""
    with zipfile.ZipFile(path) as zin:
        entries = {info.filename: zin.read(info.filename) for info in zin.infolist()}
    for name, data in entries.items():
        if name == "docProps/core.xml":
            entries[name] = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(<)",
                                   rb"\g<1>" + FIXED_DOC_TIME.encode() + rb"\g<2>", data)
    path.write_bytes(zip_bytes(entries))
