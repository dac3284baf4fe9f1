"""A reader's latency while a build writes: district lookups on one reader of what readers see (the serving copy of the embedded
warehouse, or the lake's published snapshot), first idle, then while `brecha build` rebuilds the core marts in
another process. Run it in a shell set up for the target (BRECHA_HOME, and lake.env sourced for the lake):

    python -m tools.reader_latency            # prints p50 / p95 / max per phase, and errors
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from brecha.core.settings import Settings, using

LOOKUP = "SELECT * FROM marts.mart_district_profile WHERE ubigeo = ?"


def _reader(settings: Settings) -> duckdb.DuckDBPyConnection:
    if settings.storage == "lake":
        from brecha.warehouse.lake_publish import connect_published

        return connect_published()
    con = duckdb.connect()
    con.execute(f"ATTACH '{settings.paths.serving_db}' AS served (READ_ONLY)")
    con.execute("USE served")
    return con


def _lookups(settings: Settings, until, ubigeos: list[str]) -> tuple[list[float], int]:
    """Lookups on one reader (as the API keeps one per published version) until ``until()``."""
    times, errors = [], 0
    with using(settings):
        con = _reader(settings)
    try:
        while not until():
            started = time.perf_counter()
            try:
                con.execute(LOOKUP, [random.choice(ubigeos)]).fetchall()
            except duckdb.Error:
                errors += 1
            times.append((time.perf_counter() - started) * 1000)
            time.sleep(0.01)
    finally:
        con.close()
    return times, errors


def _opening(settings: Settings, n: int = 5) -> float:
    """Mean milliseconds to open a reader (attach, and on the lake find the published snapshot and pin it)."""
    started = time.perf_counter()
    for _ in range(n):
        with using(settings):
            _reader(settings).close()
    return (time.perf_counter() - started) * 1000 / n


def _summary(name: str, times: list[float], errors: int) -> str:
    q = statistics.quantiles(times, n=20)
    return (f"{name}: {len(times)} lookups, p50 {statistics.median(times):.1f} ms, p95 {q[18]:.1f} ms, "
            f"max {max(times):.1f} ms, {errors} errors")


def main() -> int:
    settings = Settings.from_env(os.environ)  # this script is an entry point
    with using(settings):
        con = _reader(settings)
        ubigeos = [u for (u,) in con.execute("SELECT ubigeo FROM marts.mart_district_profile").fetchall()]
        con.close()
    print(f"{settings.storage}: opening a reader {_opening(settings):.0f} ms")
    idle_end = time.monotonic() + 10
    print(_summary(f"{settings.storage}, idle", *_lookups(settings, lambda: time.monotonic() > idle_end, ubigeos)))
    brecha = Path(sys.executable).with_name("brecha")
    build = subprocess.Popen([str(brecha), "build", "--exclude", "tag:needs_predictions+"], env=os.environ,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.monotonic()
    times, errors = _lookups(settings, lambda: build.poll() is not None, ubigeos)
    print(_summary(f"{settings.storage}, during a core build ({time.monotonic() - started:.0f} s, exit "
                   f"{build.returncode})", times, errors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
