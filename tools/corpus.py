"""A corpus of damaged inputs, each run end to end through ``brecha run --input`` (``make corpus``).

Every case copies a folder of extracts (the real ones in ../shared/data/real when present, else synthetic ones
from ``brecha extract``), damages one file the way downloads really come damaged, runs ``brecha run --input``
in a fresh ``BRECHA_HOME`` and compares what happened with what must happen:

* ``error``: the run stops with a whole-file error naming the damaged file (and nothing is served);
* ``quarantine``: the run succeeds and the damaged file's bad rows are counted as rejected, none lost;
* ``same``: the run succeeds and the marts are those of the undamaged folder.

It prints one line per case: case, expected, observed, and for the damaged file its rows in (records counted
by Python's own readers) = landed + rejected (from ``raw._batch_files``). Exit status 1 when a case differs.

    python -m tools.corpus [--source DIR] [--work DIR] [--case NAME ...]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from brecha.core.settings import PROJECT_ROOT, Paths

REAL = (PROJECT_ROOT / ".." / "shared" / "data" / "real").resolve()
BRECHA = str(Path(sys.executable).with_name("brecha"))
MARTS = ("dim_districts", "fct_district_connectivity", "fct_department_mobile_lines", "mart_digital_divide_index")


@dataclass(frozen=True)
class Case:
    name: str
    expected: str  # 'error' | 'quarantine' | 'same'
    target: str  # file name (searched in the folder) the case damages
    damage: Callable[[Path], None]  # damages the file in place
    rejects: int = 0  # quarantine: at least this many rejected rows in the damaged file
    says: str = ""  # error: the message must contain this (besides the file name)
    names: str | None = None  # error: the file the message must name (default: the damaged one)


# --- damages ----------------------------------------------------------------------------------------------

def _rows(path: Path, encoding: str = "utf-8") -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding=encoding), newline="")))


def _write(path: Path, rows: list[list[str]], delimiter: str = ",", quoting: int = csv.QUOTE_MINIMAL) -> None:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, quoting=quoting, lineterminator="\n").writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def thousands_separators(path: Path) -> None:
    """Counts printed with thousands separators, quoted: "1,234,567" (as a spreadsheet exports them)."""
    rows = _rows(path)
    out = [rows[0]] + [[c if i < 2 or not c.isdigit() else f"{int(c):,}" for i, c in enumerate(r)] for r in rows[1:]]
    _write(path, out)  # csv quotes the values that hold a comma


def thousands_points(path: Path) -> None:
    """Counts printed with Spanish thousands points: 1.234.567."""
    rows = _rows(path)
    _write(path, [rows[0]] + [[c if i < 2 or not c.isdigit() else f"{int(c):,}".replace(",", ".")
                               for i, c in enumerate(r)] for r in rows[1:]])


def cut_at_line(path: Path) -> None:
    """The download stopped at a line boundary after 40 % of the rows: a well-formed, shorter file."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[: int(len(lines) * 0.4)]), encoding="utf-8")


def spanish_locale(path: Path) -> None:
    """Saved by a Spanish-locale spreadsheet: ';' between columns, decimal commas, leading zeros dropped."""
    rows = _rows(path)
    out = [rows[0]]
    for r in rows[1:]:
        cells = []
        for i, c in enumerate(r):
            if re.fullmatch(r"-?\d+\.\d+", c):
                c = c.replace(".", ",")
            elif i == 0 and c.isdigit():
                c = str(int(c))
            cells.append(c)
        out.append(cells)
    _write(path, out, delimiter=";")


def leading_zeros_dropped(path: Path) -> None:
    """The ubigeo codes lost their leading zero (010101 -> 10101), as a spreadsheet does."""
    rows = _rows(path)
    _write(path, [rows[0]] + [[str(int(r[0])) if r[0].isdigit() else r[0], *r[1:]] for r in rows[1:]])


def duplicate_without_zero(path: Path) -> None:
    """One census district written twice: once as '010103', once as '10103'."""
    data = json.loads(path.read_text(encoding="utf-8"))
    first = next(d for d in data if str(d.get("ubigeo", "")).startswith("0"))
    data.append({**first, "ubigeo": first["ubigeo"].lstrip("0")})
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def truncate_half(path: Path) -> None:
    """The download stopped half way."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 7])


def huge_cell(path: Path) -> None:
    """A 3 MB value pasted into one cell of line 43."""
    lines = path.read_bytes().split(b"\n")
    cells = lines[42].split(b",")
    cells[3] = b'"' + b"x" * 3_000_000 + b'"'
    lines[42] = b",".join(cells)
    path.write_bytes(b"\n".join(lines))


def invalid_geometries(path: Path) -> None:
    """Three features whose geometry is not a polygon any more."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    feats = [f for f in doc["features"] if f.get("geometry")]
    feats[0]["geometry"] = {"type": "Polygon", "coordinates": "corrupt"}
    feats[1]["geometry"] = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}
    feats[2]["geometry"] = {"type": "Blob"}
    path.write_text(json.dumps(doc), encoding="utf-8")


def decimal_commas_wide(path: Path) -> None:
    """Lines per 100 inhabitants re-saved with decimal commas and ';'."""
    rows = _rows(path)
    _write(path, [rows[0]] + [[c.replace(".", ",") for c in r] for r in rows[1:]], delimiter=";")


def nothing(path: Path) -> None:
    """The folder as published."""


CASES = (
    Case("clean", "same", "ubigeo_distrito.csv", nothing),
    Case("mobile lines with thousands separators", "same", "IndMovil-C21.csv", thousands_separators),
    Case("mobile lines with thousands points", "error", "IndMovil-C21.csv", thousands_points, says="thousands points"),
    # the reference itself reads fine; the next file checked against it loses most rows to "unknown ubigeo"
    Case("reference cut at a line boundary (40 %)", "error", "ubigeo_distrito.csv", cut_at_line,
         says="district reference", names="COBERTURA_MOVIL_CUANTIFICADA.xlsx"),
    Case("reference saved by a Spanish-locale spreadsheet", "error", "ubigeo_distrito.csv", spanish_locale,
         says="decimal commas"),
    Case("teledensity with decimal commas", "error", "moviles-lineas_C2.2_junio2014.csv", decimal_commas_wide,
         says="decimal commas"),
    Case("reference codes without leading zeros", "same", "ubigeo_distrito.csv", leading_zeros_dropped),
    Case("census duplicate written without its zero", "quarantine", "indicadores-distrito.json",
         duplicate_without_zero, rejects=3),
    Case("truncated xlsx", "error", "COBERTURA_MOVIL_CUANTIFICADA.xlsx", truncate_half, says="could not be read"),
    Case("truncated csv", "error", "ubigeo_distrito.csv", truncate_half, says="truncated"),
    Case("3 MB cell on line 43", "error", "ubigeo_distrito.csv", huge_cell, says="line 43"),
    Case("three invalid district geometries", "quarantine", "peru_distrital_simple.geojson", invalid_geometries,
         rejects=3),
)


# --- counting and running ---------------------------------------------------------------------------------

def rows_in(path: Path) -> int | None:
    """Records in the file by Python's own readers (data cells for the wide CSVs by department and year)."""
    try:
        if path.suffix == ".json":
            return len(json.loads(path.read_text(encoding="utf-8")))
        if path.suffix == ".geojson":
            return len(json.loads(path.read_text(encoding="utf-8"))["features"])
        if path.suffix == ".csv":
            text = path.read_text(encoding="utf-8")
            delim = ";" if text.split("\n", 1)[0].count(";") > text.split("\n", 1)[0].count(",") else ","
            rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delim))
            if any(re.fullmatch(r"(19|20)\d\d", h) for h in rows[0]):
                years = [i for i, h in enumerate(rows[0]) if re.fullmatch(r"(19|20)\d\d", h)]
                return sum(1 for r in rows[1:] for i in years if i < len(r) and r[i].strip() not in ("", "-"))
            return sum(1 for r in rows[1:] if r)
    except (OSError, ValueError, KeyError, csv.Error):
        return None
    return None


def fingerprint(db: Path) -> dict[str, tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        out = {}
        for mart in MARTS:
            cols = [r[0] for r in con.execute(f"DESCRIBE marts.{mart}").fetchall()]
            num = [c for c, t in con.execute(f"SELECT column_name, data_type FROM information_schema.columns "
                                              f"WHERE table_schema = 'marts' AND table_name = '{mart}'").fetchall()
                   if t in ("DOUBLE", "BIGINT", "INTEGER") and c in cols]
            sums = ", ".join(f'round(sum("{c}"), 3)' for c in num)
            out[mart] = con.execute(f"SELECT count(*), {sums} FROM marts.{mart}").fetchone()
        return out


def run_case(case: Case, source: Path, work: Path, baseline: dict | None) -> dict:
    folder = work / "in"
    shutil.copytree(source, folder)
    for doc in [*folder.rglob("*.md"), *folder.rglob("*.txt")]:
        doc.unlink()
    target = next(folder.rglob(case.target), None)
    if target is None:
        return {"case": case.name, "expected": case.expected, "observed": f"skipped: no {case.target}", "ok": None}
    case.damage(target)
    home = work / "home"
    env = {**os.environ, "BRECHA_HOME": str(home)}
    proc = subprocess.run([BRECHA, "run", "--input", str(folder)], env=env, capture_output=True, text=True,
                          timeout=1800)
    rel = target.relative_to(folder).as_posix()
    n_in = rows_in(target)
    landed = rejected = None
    db = Paths(home).db
    if db.exists():
        with duckdb.connect(str(db), read_only=True) as con:
            try:
                row = con.execute("SELECT rows_landed, rows_rejected FROM raw._batch_files WHERE source_file = ? "
                                  "ORDER BY batch_id DESC LIMIT 1", [rel]).fetchone()
            except duckdb.Error:
                row = None
        landed, rejected = row if row else (None, None)
    served = Paths(home).serving_db.exists()
    error = next((ln for ln in proc.stderr.splitlines() if ln.startswith("error:")), "")
    if proc.returncode != 0:
        observed = f"error: {error[7:160] or proc.stderr.strip()[-160:]}"
        named = case.target if case.names is None else case.names
        ok = (case.expected == "error" and named in error and case.says in proc.stderr and not served)
    else:
        same = baseline is not None and fingerprint(Paths(home).serving_db) == baseline
        observed = f"run ok, {rejected or 0} rejected, marts {'same' if same else 'differ'}"
        if case.expected == "same":
            ok = same
        elif case.expected == "quarantine":
            ok = rejected is not None and rejected >= case.rejects and n_in == (landed or 0) + rejected
        else:
            ok = False
    counted = "" if landed is None else f"{n_in if n_in is not None else '?'} = {landed:,} + {rejected:,}"
    return {"case": case.name, "expected": case.expected, "observed": observed, "rows": counted, "ok": ok,
            "home": home, "stderr": proc.stderr}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=None, help="folder of extracts (default: ../shared/data/real, "
                        "else synthetic extracts)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--case", action="append", default=[], help="run only the cases whose name contains this")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="brecha-corpus-"))
    source = args.source or (REAL if REAL.is_dir() else None)
    if source is None:
        source = work / "synthetic"
        subprocess.run([BRECHA, "extract", "--out", str(source), "--scale", "0.25"], check=True,
                       env={**os.environ, "BRECHA_HOME": str(work / "extract-home")}, capture_output=True)
    cases = [c for c in CASES if not args.case or any(s in c.name for s in args.case)]
    if any(c.expected == "same" for c in cases) and cases[0].name != "clean":
        cases.insert(0, CASES[0])
    baseline = None
    results = []
    print(f"corpus: {len(cases)} cases from {source}", flush=True)
    print(f"{'case':<48} {'expected':<11} {'ok':<4} {'rows in = landed + rejected':<28} observed", flush=True)
    for i, case in enumerate(cases):
        r = run_case(case, source, work / f"case-{i:02d}", baseline)
        if case.name == "clean" and r["home"] is not None and (r["home"] / "serving" / "brecha.duckdb").exists():
            baseline = fingerprint(r["home"] / "serving" / "brecha.duckdb")
            r["observed"], r["ok"] = "run ok (baseline)", True
        results.append(r)
        mark = "yes" if r["ok"] else ("-" if r["ok"] is None else "NO")
        print(f"{case.name:<48} {case.expected:<11} {mark:<4} {r.get('rows', ''):<28} {r['observed']}", flush=True)
        if not args.keep:
            shutil.rmtree(work / f"case-{i:02d}" / "in", ignore_errors=True)
    failed = [r for r in results if r["ok"] is False]
    print(f"{len(results) - len(failed)} of {len(results)} cases as expected")
    if not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
