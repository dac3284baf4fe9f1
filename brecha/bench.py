"""`make bench`: time extract, ingest and dbt build at two scales; rows per second and peak memory per step.

Each step runs as its own process (``brecha <step>``) in a fresh ``BRECHA_HOME`` so its peak resident memory
is its own (``os.wait4``). Landing is compared with a bare DuckDB read of the same files (into a database file,
as landing writes, and into memory). The whole ``brecha run`` on the default is timed last. Figures for notes, not pass/fail tests.

usage: python -m brecha.bench [--scales 1 4] [--skip-run]
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

from brecha.db import load_extension

BRECHA = str(Path(sys.executable).with_name("brecha"))


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


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS in MB of that process tree's largest process)."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
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


def bare_read_seconds(folder: Path, db: Path | None = None) -> float:
    """Seconds DuckDB's own readers need to load every data file under ``folder`` into tables, untouched: in
    memory, or (``db``) into a fresh database file, closed at the end so its tables are on disk as landing's
    are. The extension is loaded before the clock starts."""
    con = duckdb.connect(str(db) if db else ":memory:")
    load_extension(con, "excel")
    started = time.perf_counter()
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
    return time.perf_counter() - started


def bench_scale(scale: float, env: dict[str, str]) -> list[Timing]:
    home = Path(tempfile.mkdtemp(prefix=f"brecha-bench-{scale:g}-"))
    env = {**env, "BRECHA_HOME": str(home)}
    out = home / "extracts"
    results = []
    secs, peak = timed([BRECHA, "extract", "--out", str(out), "--scale", str(scale)], env)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    results.append(Timing("extract", scale, secs, peak, 0))
    secs, peak = timed([BRECHA, "ingest", str(out)], env)
    landed = count_rows(home / "brecha.duckdb", "raw")
    results.append(Timing("ingest", scale, secs, peak, landed))
    bare = bare_read_seconds(out, home / "bare-read.duckdb")
    in_memory = bare_read_seconds(out)
    results.append(Timing("bare DuckDB read (file)", scale, bare, 0, landed))
    results.append(Timing("bare DuckDB read (memory)", scale, in_memory, 0, landed))
    secs, peak = timed([BRECHA, "build", "--exclude", "tag:needs_predictions"], env)
    results.append(Timing("dbt build (core marts)", scale, secs, peak, landed))
    print(f"scale {scale:g}: {size / 1e6:.1f} MB of extracts, {landed:,} raw rows; "
          f"landing / bare read = {results[1].seconds / bare:.2f}x (bare read into a database file, as landing "
          f"writes; {results[1].seconds / in_memory:.2f}x against a read into memory)", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=float, nargs=2, default=(1.0, 4.0))
    parser.add_argument("--skip-run", action="store_true", help="do not time the whole `brecha run`")
    args = parser.parse_args()
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    rows: list[Timing] = []
    for scale in args.scales:
        rows += bench_scale(scale, env)
    print()
    for r in rows:
        print(r.line())
    small, large = args.scales
    by = {(r.step, r.scale): r for r in rows}
    data_ratio = by[("ingest", large)].rows / by[("ingest", small)].rows
    build_ratio = by[("dbt build (core marts)", large)].seconds / by[("dbt build (core marts)", small)].seconds
    print(f"\ndata grew {data_ratio:.2f}x, dbt build time grew {build_ratio:.2f}x")
    if not args.skip_run:
        home = tempfile.mkdtemp(prefix="brecha-bench-run-")
        secs, peak = timed([BRECHA, "run"], {**env, "BRECHA_HOME": home})
        print(f"whole `brecha run` on the default: {secs:.1f} s, peak {peak:.0f} MB")


if __name__ == "__main__":
    main()
