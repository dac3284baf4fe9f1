"""`make bench`: time extract, ingest and dbt build at several scales; rows per second and peak memory per step.

Every step runs as its own process in a fresh ``BRECHA_HOME``, so its time includes the interpreter's start-up and
its peak resident memory is its own (``os.wait4``). Landing (``brecha ingest``) is compared with a bare DuckDB read
of the same files into a database file, also a whole process of its own (``python -m tools.bench --bare-read``:
start-up, ``import duckdb``, DuckDB's readers, ``CREATE TABLE ... AS``), and with the same read into memory.
The whole ``brecha run`` on the default is timed last. Figures for notes, not pass/fail tests.

The scale is the synthetic generator's ``--scale``: it multiplies the large tables only (households, fixed
connections, populated centres); the reference tables (districts, boundaries, yearly OSIPTEL sheets) keep their
size. So each scale is also labelled with what actually grew: raw rows and bytes, relative to the first scale.

usage: python -m tools.bench [--scales 1 10 30] [--skip-run]
       python -m tools.bench --bare-read FOLDER [DB]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

BRECHA = str(Path(sys.executable).with_name("brecha"))
LANDING_GOAL = 1.5  # landing / bare read, both whole processes, at scale 10
GOAL_SCALE = 10.0


@dataclass
class Timing:
    step: str
    scale: float
    seconds: float
    peak_mb: float
    rows: int

    def line(self) -> str:
        rate = f"{self.rows / self.seconds:>12,.0f} rows/s" if self.rows else " " * 19
        return f"{self.step:<28} scale {self.scale:<5g} {self.seconds:>8.2f} s {rate} peak {self.peak_mb:>7.0f} MB"


def timed(args: list[str], env: dict[str, str], *, may_fail: bool = False) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS in MB of that process or of its largest child). A failure
    stops the benchmark, unless ``may_fail``: then it is printed and the seconds are NaN."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if may_fail:
            print(f"step failed (not timed): {' '.join(args)}: {err.strip().splitlines()[-1][:300] if err.strip() else ''}")
            return float("nan"), usage.ru_maxrss / 1024
        raise SystemExit(f"benchmark step failed: {' '.join(args)}\n{err[-3000:]}")
    return elapsed, usage.ru_maxrss / 1024


def count_rows(db: Path, schema: str) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        tables = con.execute(
            "select table_name from information_schema.tables where table_schema = ? and table_type = 'BASE TABLE'"
            " and table_name not like '\\_%' escape '\\'",
            [schema],
        ).fetchall()
        return sum(con.execute(f'select count(*) from {schema}."{t}"').fetchone()[0] for (t,) in tables)


def bare_read(folder: Path, db: Path | None = None) -> None:
    """DuckDB's own readers load every data file under ``folder`` into tables, untouched: in memory, or (``db``)
    into a fresh database file, closed at the end so its tables are on disk as landing's are."""
    from brecha.core.db import load_extension

    con = duckdb.connect(str(db) if db else ":memory:")
    load_extension(con, "excel")
    for i, f in enumerate(sorted(p for p in folder.rglob("*") if p.is_file())):
        suffix = f.suffix.lower()
        if suffix == ".csv":
            enc = "utf-8"
            try:
                f.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                enc = "latin-1"
            src = f"read_csv('{f}', encoding='{enc}')"
        elif suffix in (".json", ".geojson"):
            src = f"read_json('{f}')"
        elif suffix == ".xlsx":
            src = f"read_xlsx('{f}', all_varchar=true)"
        else:
            continue
        con.execute(f"create table t{i} as select * from {src}")
    con.close()


def bench_scale(scale: float, env: dict[str, str]) -> tuple[list[Timing], int, int]:
    home = Path(tempfile.mkdtemp(prefix=f"brecha-bench-{scale:g}-"))
    env = {**env, "BRECHA_HOME": str(home)}
    out = home / "extracts"
    results = []
    secs, peak = timed([BRECHA, "extract", "--out", str(out), "--scale", str(scale)], env)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    results.append(Timing("extract", scale, secs, peak, 0))
    secs, peak = timed([BRECHA, "ingest", str(out)], env)
    landed = count_rows(home / "brecha.duckdb", "raw")
    results.append(Timing("ingest (landing)", scale, secs, peak, landed))
    bare = [sys.executable, "-m", "tools.bench", "--bare-read", str(out)]
    secs, peak = timed([*bare, str(home / "bare-read.duckdb")], env)
    results.append(Timing("bare DuckDB read (file)", scale, secs, peak, landed))
    secs, peak = timed(bare, env)
    results.append(Timing("bare DuckDB read (memory)", scale, secs, peak, landed))
    # a failed dbt test (synthetic data at an extreme scale) is reported, and the landing figures still printed
    secs, peak = timed([BRECHA, "build", "--exclude", "tag:needs_predictions"], env, may_fail=True)
    results.append(Timing("dbt build (core marts)", scale, secs, peak, landed))
    by = {r.step: r for r in results}
    print(f"scale {scale:g}: {size / 1e6:.1f} MB of extracts, {landed:,} raw rows; landing / bare read = "
          f"{by['ingest (landing)'].seconds / by['bare DuckDB read (file)'].seconds:.2f}x (both whole processes, "
          f"into a database file; {by['ingest (landing)'].seconds / by['bare DuckDB read (memory)'].seconds:.2f}x "
          "against a read into memory)", flush=True)
    return results, landed, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=float, nargs="+", default=(1.0, GOAL_SCALE, 30.0))
    parser.add_argument("--skip-run", action="store_true", help="do not time the whole `brecha run`")
    parser.add_argument("--bare-read", nargs="+", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_read:
        from brecha.core.settings import Settings, using

        with using(Settings.from_env(os.environ)):  # a script: an entry point of its own
            bare_read(Path(args.bare_read[0]), Path(args.bare_read[1]) if len(args.bare_read) > 1 else None)
        return
    env = dict(os.environ)
    rows: list[Timing] = []
    grown: dict[float, tuple[int, int]] = {}
    for scale in args.scales:
        timings, landed, size = bench_scale(scale, env)
        rows += timings
        grown[scale] = (landed, size)
    print()
    for r in rows:
        print(r.line())
    first = args.scales[0]
    by = {(r.step, r.scale): r for r in rows}
    print(f"\nwhat each scale holds, against scale {first:g} (the scale multiplies the large tables only):")
    for scale in args.scales:
        rows_x, bytes_x = grown[scale][0] / grown[first][0], grown[scale][1] / grown[first][1]
        per_row = {step: (by[(step, scale)].seconds / grown[scale][0]) / (by[(step, first)].seconds / grown[first][0])
                   for step in ("ingest (landing)", "dbt build (core marts)")}
        print(f"  scale {scale:<4g} {grown[scale][0]:>11,} raw rows ({rows_x:5.2f}x), {grown[scale][1] / 1e6:7.1f} MB "
              f"({bytes_x:5.2f}x); time per row vs scale {first:g}: landing {per_row['ingest (landing)']:.2f}x, "
              f"dbt build {per_row['dbt build (core marts)']:.2f}x")
    if GOAL_SCALE in args.scales:
        ratio = by[("ingest (landing)", GOAL_SCALE)].seconds / by[("bare DuckDB read (file)", GOAL_SCALE)].seconds
        print(f"landing / bare read at scale {GOAL_SCALE:g}: {ratio:.2f}x (goal <= {LANDING_GOAL}x)")
    if not args.skip_run:
        home = tempfile.mkdtemp(prefix="brecha-bench-run-")
        secs, peak = timed([BRECHA, "run"], {**env, "BRECHA_HOME": home})
        print(f"whole `brecha run` on the default: {secs:.1f} s, peak {peak:.0f} MB")


if __name__ == "__main__":
    main()
