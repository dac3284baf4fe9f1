"""`make bench-api`: a bounded local load on `brecha serve`; requests per second and latency percentiles.

The API is started as users start it (``brecha serve`` in a process of its own) on a free port of 127.0.0.1,
over a copy of ``$BRECHA_HOME``'s warehouse published into a temporary home (the model artifacts are linked,
nothing of ``$BRECHA_HOME`` is written). ``--clients`` threads, each with a keep-alive connection, send a fixed
number of requests per phase:

1. district lookups (``GET /districts/{ubigeo}``, random districts);
2. what-ifs (``POST /districts/{ubigeo}/whatif``, one or two random features set within their valid range);
3. both, half and half, while ``brecha publish`` and then ``brecha publish --rollback`` swap the serving copy.

Latency is measured by the client (request sent to response read). Every non-2xx answer or transport error
counts as an error. Figures for notes, not a pass/fail test; the goals are printed next to them.

On the lake (a shell that sourced ``$BRECHA_HOME/lake.env``) the API reads the lake's published snapshot and is
started on ``$BRECHA_HOME`` itself (no copy): phase 3's publish and rollback add two rows to the lake's ledger
``ops.lake_publications`` and leave the snapshot that was published before served again.

usage: python -m tools.bench_api [--lookups 2000] [--whatifs 600] [--swap-requests 1200] [--clients 8]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx
import numpy as np

from brecha.core.settings import Settings

BRECHA = str(Path(sys.executable).with_name("brecha"))
GOALS_MS = {"lookup": 50.0, "whatif": 150.0}


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)  # kind -> ms
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        n = sum(len(v) for v in self.latencies.values()) + len(self.errors)
        out = [f"{self.name}: {n} requests in {self.seconds:.1f} s = {n / self.seconds:.0f} req/s, "
               f"{len(self.errors)} errors"]
        for kind, lat in self.latencies.items():
            a = np.array(lat)
            goal = GOALS_MS.get(kind)
            verdict = f" (goal p95 < {goal:g} ms: {'met' if np.percentile(a, 95) < goal else 'NOT met'})" if goal else ""
            out.append(f"  {kind:<7} n={len(a):<5} p50 {np.percentile(a, 50):6.1f} ms  p95 {np.percentile(a, 95):6.1f} ms"
                       f"  p99 {np.percentile(a, 99):6.1f} ms  max {a.max():6.1f} ms{verdict}")
        out += [f"  {note}" for note in self.notes]
        out += [f"  error: {e}" for e in self.errors[:5]]
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_home(source: Path, home: Path) -> None:
    """A published copy of ``source``'s warehouse in ``home`` (artifacts linked read-only)."""
    if not (source / "brecha.duckdb").is_file() or not (source / "artifacts").is_dir():
        raise SystemExit(f"{source}: no trained warehouse (brecha.duckdb and artifacts/). Run `make run` first.")
    shutil.copyfile(source / "brecha.duckdb", home / "brecha.duckdb")
    (home / "artifacts").symlink_to(source / "artifacts", target_is_directory=True)
    run([BRECHA, "publish"], home)


def run(args: list[str], home: Path) -> str:
    env = {**os.environ, "BRECHA_HOME": str(home)}
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip()


def start_server(home: Path, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "BRECHA_HOME": str(home)}
    proc = subprocess.Popen([BRECHA, "serve", "--port", str(port), "--log-level", "warning", "--workers", str(workers)],
                            env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"brecha serve exited: {proc.stderr.read().decode(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise SystemExit("brecha serve did not answer /health within 120 s")


def served(c: httpx.Client) -> str:
    """The snapshot the API answers from: the serving file's snapshot id, or the lake snapshot's number."""
    health = c.get("/health").json()
    return str(health["lake_snapshot"]) if health.get("lake_snapshot") is not None else health["snapshot"]["snapshot_id"]


Request = Callable[[httpx.Client, random.Random], tuple[str, httpx.Response]]


def load(base: str, phase: Phase, total: int, clients: int, make: Request, seed: int,
         during: Callable[[Callable[[], int]], None] | None = None) -> Phase:
    """Send ``total`` requests from ``clients`` threads; ``during`` runs beside them (given a progress count)."""
    lock = threading.Lock()
    counter = {"sent": 0}
    side_done = threading.Event()
    if during is None:
        side_done.set()

    def take() -> bool:
        # the last tenth of the requests waits for the side task, so the swaps happen under load
        while counter["sent"] >= total * 9 // 10 and not side_done.wait(0.01):
            pass
        with lock:
            if counter["sent"] >= total:
                return False
            counter["sent"] += 1
            return True

    def side(progress: Callable[[], int]) -> None:
        try:
            during(progress)
        finally:
            side_done.set()

    def worker(i: int) -> None:
        rng = random.Random(seed * 100 + i)
        with httpx.Client(base_url=base, timeout=30) as client:
            while take():
                started = time.perf_counter()
                try:
                    kind, r = make(client, rng)
                    ms = (time.perf_counter() - started) * 1000
                    with lock:
                        if r.is_success:
                            phase.latencies.setdefault(kind, []).append(ms)
                        else:
                            phase.errors.append(f"{kind} {r.status_code} {r.text[:200]}")
                except httpx.HTTPError as err:
                    with lock:
                        phase.errors.append(f"{type(err).__name__}: {err}")

    started = time.perf_counter()
    with ThreadPoolExecutor(clients + 1) as pool:
        futures = [pool.submit(worker, i) for i in range(clients)]
        side_task = pool.submit(side, lambda: counter["sent"]) if during else None
        for f in futures:
            f.result()
        phase.seconds = time.perf_counter() - started
        if side_task:
            side_task.result()
    return phase


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lookups", type=int, default=2000)
    ap.add_argument("--whatifs", type=int, default=600)
    ap.add_argument("--swap-requests", type=int, default=1200)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1, help="`brecha serve --workers`")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)

    settings = Settings.from_env(os.environ)  # a script: an entry point of its own
    source = settings.home
    with tempfile.TemporaryDirectory(prefix="brecha-bench-api-") as tmp:
        home = Path(tmp)
        if settings.storage == "lake":  # the lake's published snapshot, served from the home itself
            home = source
        else:
            prepare_home(source, home)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        t0 = time.perf_counter()
        server = start_server(home, port, args.workers)
        print(f"brecha serve up on {base} in {time.perf_counter() - t0:.1f} s ({settings.storage} warehouse of "
              f"{source}); "
              f"{args.clients} concurrent clients, {args.workers} server process(es), {os.cpu_count()} CPUs")
        try:
            with httpx.Client(base_url=base) as c:
                ubigeos = [d["ubigeo"] for page in range(1, 100)
                           for d in c.get("/districts", params={"page": page, "page_size": 200}).json()["items"]]
                ubigeos = sorted(set(ubigeos))
                ranges = {f["name"]: (f["minimum"], f["maximum"]) for f in c.get("/model").json()["features"]}
            settable = [f for f in ranges if ranges[f][1] > ranges[f][0]]

            def lookup(client: httpx.Client, rng: random.Random) -> tuple[str, httpx.Response]:
                return "lookup", client.get(f"/districts/{rng.choice(ubigeos)}")

            def whatif(client: httpx.Client, rng: random.Random) -> tuple[str, httpx.Response]:
                names = rng.sample(settable, rng.choice((1, 2)))
                body = {"overrides": {n: rng.uniform(*ranges[n]) for n in names}}
                return "whatif", client.post(f"/districts/{rng.choice(ubigeos)}/whatif", json=body)

            def mixed(client: httpx.Client, rng: random.Random) -> tuple[str, httpx.Response]:
                return (lookup if rng.random() < 0.5 else whatif)(client, rng)

            # warm-up (not measured): every thread's connection and the server's caches
            load(base, Phase("warm-up"), 100, args.clients, mixed, args.seed + 7)
            phases = [
                load(base, Phase("district lookup"), args.lookups, args.clients, lookup, args.seed),
                load(base, Phase("what-if"), args.whatifs, args.clients, whatif, args.seed + 1),
            ]
            swap = Phase("lookup + what-if while publish and rollback swap the copy")

            def swap_and_wait(c: httpx.Client, args_: list[str], progress: Callable[[], int]) -> str:
                """Run a publish or rollback; return what happened and how long until the API answered from it."""
                at = progress()
                old = served(c)
                t = time.perf_counter()
                run(args_, home)
                took = time.perf_counter() - t
                t = time.perf_counter()
                while (now := served(c)) == old:
                    if time.perf_counter() - t > 60:
                        break
                    time.sleep(0.05)
                return (f"`{' '.join(['brecha', *args_[1:]])}` at request {at}: {took:.1f} s; served snapshot "
                        f"{old[:22]} -> {now[:22]} {time.perf_counter() - t:.2f} s later")

            def publish_then_rollback(progress: Callable[[], int]) -> None:
                with httpx.Client(base_url=base) as c:
                    before = served(c)
                    while progress() < args.swap_requests // 5:
                        time.sleep(0.05)
                    swap.notes.append(swap_and_wait(c, [BRECHA, "publish"], progress))
                    while progress() < args.swap_requests // 2:
                        time.sleep(0.05)
                    swap.notes.append(swap_and_wait(c, [BRECHA, "publish", "--rollback"], progress))
                    back = served(c)
                    swap.notes.append(f"after the rollback the first snapshot is served again: {back == before}")

            phases.append(load(base, swap, args.swap_requests, args.clients, mixed, args.seed + 2,
                               during=publish_then_rollback))
        finally:
            server.terminate()
            server.wait(timeout=30)
    for phase in phases:
        print("\n".join(phase.lines()))


if __name__ == "__main__":
    main()
