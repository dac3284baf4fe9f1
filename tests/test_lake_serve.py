"""`brecha serve` on the lake: the API answers from the published lake snapshot (read-only role, pinned, locked down)
and moves to another one after a publish or a rollback, under load, without an error.

Uses the lake's session fixtures (tests/lake_fixtures.py): the PostgreSQL the project starts and one pipeline run
into it. The API runs in a real uvicorn server (in this process, on a free port) and is asked over HTTP.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
import uvicorn
from conftest import free_port
from fastapi.testclient import TestClient
from lake_fixtures import lake_settings

from brecha.core.db import connect
from brecha.core.settings import using
from brecha.serve.api import create_app
from brecha.serve.api.app import SNAPSHOT_HEADER

PROFILE = "marts.mart_district_profile"
MARK = " (sin publicar)"  # what the unpublished change appends to one district's name
PAUSE = 0.05  # seconds between a client's requests: steady load that leaves the build beside it a share of 2 cores


def _serve(app) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="lake-api", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    return server, thread, base


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the readers did not get there in time"
        time.sleep(0.05)


def test_the_api_answers_from_the_published_lake_snapshot_under_load_through_a_build_a_publish_and_a_rollback(
    lake_home: Path, lake_run: dict
):
    from brecha.orchestrate import steps
    from brecha.warehouse.lake_publish import open_published, published_snapshot

    settings = lake_settings(lake_home)
    with using(settings):
        start = published_snapshot()
        with connect(read_only=True) as con:  # one district with a prediction in mid-range, to change unpublished
            ubigeo, name, predicted, low, high = con.execute(
                f"SELECT ubigeo, district, predicted_internet_pct, lower_90, upper_90 FROM {PROFILE} "
                "WHERE predicted_internet_pct BETWEEN 20 AND 80 AND lower_90 > 5 AND upper_90 < 95 "
                "ORDER BY ubigeo LIMIT 1"
            ).fetchone()
            ubigeos = [u for (u,) in con.execute(f"SELECT ubigeo FROM {PROFILE} ORDER BY ubigeo LIMIT 40").fetchall()]
    app = create_app(settings, lake_poll=0.2)
    server, thread, base = _serve(app)

    answers: list[tuple[str, int, str, float]] = []  # (endpoint, snapshot, district name, predicted share)
    plain: list[tuple[int, str]] = []  # the plain DuckDB reader: (pinned snapshot, district name)
    errors: list[str] = []
    latencies: list[float] = []
    stop = threading.Event()

    def api_loop(i: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as c:
            k = 0
            while not stop.is_set():
                k += 1
                try:
                    t = time.perf_counter()
                    if k % 4 == 0:  # a what-if: its baseline is the lookup of the same snapshot
                        r = c.post(f"/districts/{ubigeo}/whatif", json={"overrides": {"pct_centres_4g": 10 + k % 80}})
                        kind = "whatif"
                    elif k % 2 == 1:
                        r = c.get(f"/districts/{ubigeo}")
                        kind = "lookup"
                    else:
                        r = c.get(f"/districts/{ubigeos[(i * 7 + k) % len(ubigeos)]}")
                        kind = "other"
                    latencies.append(time.perf_counter() - t)
                    if r.status_code != 200 or SNAPSHOT_HEADER.lower() not in r.headers:
                        errors.append(f"{kind} {r.status_code} {r.text[:300]}")
                        continue
                    body = r.json()
                    if kind == "whatif":
                        answers.append(
                            (
                                kind,
                                int(r.headers[SNAPSHOT_HEADER]),
                                body["district"],
                                body["baseline"]["predicted_internet_pct"],
                            )
                        )
                    elif kind == "lookup":
                        answers.append(
                            (kind, int(r.headers[SNAPSHOT_HEADER]), body["district"], body["predicted_internet_pct"])
                        )
                except Exception as err:  # noqa: BLE001 - every failure is a finding
                    errors.append(repr(err))
                stop.wait(PAUSE)

    def plain_loop() -> None:
        with using(settings):
            while not stop.is_set():
                try:
                    con, pinned = open_published()
                    with con:
                        got = con.execute(f"SELECT district FROM {PROFILE} WHERE ubigeo = ?", [ubigeo]).fetchone()
                    plain.append((pinned, got[0]))
                except Exception as err:  # noqa: BLE001
                    errors.append(f"plain reader: {err!r}")

    def seen_since(n: int, snapshot: int) -> bool:
        return sum(1 for _, s, _, _ in answers[n:] if s == snapshot) >= 6

    loops = [threading.Thread(target=api_loop, args=(i,), name=f"api-client-{i}") for i in range(3)]
    loops.append(threading.Thread(target=plain_loop, name="plain-reader"))
    for t in loops:
        t.start()
    phases = [time.perf_counter()]
    try:
        _wait_for(lambda: seen_since(0, start))
        phases.append(time.perf_counter())
        steps.dbt_build(settings, select=PROFILE.split(".")[1])  # a build writes the mart the API answers from
        with using(settings), connect() as writer:  # a change the readers must not see until it is published
            writer.execute(
                f"UPDATE {PROFILE} SET district = district || ?, predicted_internet_pct = predicted_internet_pct + 1, "
                "lower_90 = lower_90 + 1, upper_90 = upper_90 + 1 WHERE ubigeo = ?",
                [MARK, ubigeo],
            )
        assert not any(s != start for _, s, _, _ in answers)
        n = len(answers)
        phases.append(time.perf_counter())
        second = steps.publish(settings).snapshot_version
        phases.append(time.perf_counter())
        _wait_for(lambda: seen_since(n, second))
        phases.append(time.perf_counter())
        n = len(answers)
        back = steps.rollback(settings).snapshot_version
        _wait_for(lambda: seen_since(n, back) and answers[-1][1] == back)
        phases.append(time.perf_counter())
        _wait_for(lambda: any(p == second for p, _ in plain) and plain[-1][0] == back)
        phases.append(time.perf_counter())
        health = httpx.get(f"{base}/health").json()
    finally:
        stop.set()
        for t in loops:
            t.join(timeout=120)
        server.should_exit = True
        thread.join(timeout=30)
        with using(settings), connect() as writer:  # the lake as it was (the change stays in the snapshot history)
            writer.execute(
                f"UPDATE {PROFILE} SET district = ?, predicted_internet_pct = ?, lower_90 = ?, upper_90 = ? "
                "WHERE ubigeo = ?",
                [name, predicted, low, high, ubigeo],
            )
            published = {
                v
                for (v,) in writer.execute(
                    "SELECT snapshot_version FROM ops.lake_publications WHERE action = 'publish'"
                ).fetchall()
            }

    p50, p95 = np.percentile(np.array(latencies) * 1000, [50, 95])
    print(
        f"lake API under load: {len(latencies)} requests from 3 clients (pausing {PAUSE * 1000:.0f} ms) ({len(answers)} checked) and "
        f"{len(plain)} plain reads through a build, a publish and a rollback: {len(errors)} errors; "
        f"p50 {p50:.1f} ms, p95 {p95:.1f} ms; phases (s): {np.round(np.diff(phases), 1).tolist()}"
    )
    assert errors == []
    assert second not in (start, back) and second in published and back in published
    # every answer from a published snapshot, its content that snapshot's: the change only in the one published
    # with it, the what-if's baseline the lookup's prediction of the same snapshot
    assert {s for _, s, _, _ in answers} <= published and {p for p, _ in plain} <= published
    for kind, snapshot, district, share in answers:
        changed = snapshot == second
        if kind == "lookup":  # a what-if names the district from the feature table, not from the profile
            assert district == (name + MARK if changed else name), (kind, snapshot, district)
        assert share == pytest.approx(predicted + 1 if changed else predicted), (kind, snapshot, share)
    assert all(district == (name + MARK if pinned == second else name) for pinned, district in plain)
    assert {k for k, _, _, _ in answers} == {"lookup", "whatif"}
    # after the rollback the API answers from the snapshot rolled back to, and says so
    assert health["lake_snapshot"] == back and health["serving_db"] == f"lake snapshot {back}"
    assert health["snapshot"] == {"lake_snapshot": back, "action": "rollback"}


def test_the_api_on_the_lake_is_locked_down_and_says_what_to_run(lake_home: Path, lake_run: dict):
    """The API's reader of the snapshot is the lake readers' one: read-only role, pinned, no files, no SET."""
    import duckdb

    from brecha.core import lake

    settings = lake_settings(lake_home)
    app = create_app(settings)
    with using(settings):
        v = app.state.served.current()
        with v.cursor() as con:
            assert con.execute("SELECT current_database()").fetchone() == ("lake",)
            for statement, error in (
                ("CREATE TABLE marts.intruder AS SELECT 1", "read-only|read only"),
                ("SELECT * FROM read_csv('/etc/passwd')", "disabled"),
                ("ATTACH '/tmp/brecha-intruder.duckdb' AS x", "disabled"),
                ("SET memory_limit = '1GB'", "locked"),
            ):
                with pytest.raises(duckdb.Error, match=error):
                    con.execute(statement)
    # a catalog that cannot be reached: 503 with what to check, not a 500
    down = lake_settings(lake_home)
    catalog = lake.Catalog.parse(down.lake_reader)
    unreachable = down.replace(lake_reader=down.lake_reader.replace(f":{catalog.port}/", f":{free_port()}/"))
    r = TestClient(create_app(unreachable)).get("/districts/010101", params={"lang": "en"})
    assert r.status_code == 503 and "lake's catalog cannot be read" in r.json()["detail"][0]["msg"], r.text


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class CatalogLink:
    """A TCP relay on the loopback between the API and the catalog's PostgreSQL: ``stop()`` takes the catalog away
    from the API (listener closed, open connections cut: what the API sees when the server stops) without stopping
    the session's server, ``start()`` brings it back on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target, self.port = (host, port), 0
        self._live: set[socket.socket] = set()
        self._server: socketserver.ThreadingTCPServer | None = None

    def start(self) -> CatalogLink:
        live, target = self._live, self.target

        class Relay(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                up = socket.create_connection(target)
                live.update((self.request, up))
                back = threading.Thread(target=_pump, args=(up, self.request), daemon=True)
                back.start()
                _pump(self.request, up)
                back.join()
                up.close()

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = daemon_threads = True
            block_on_close = False

        self._server = Server(("127.0.0.1", self.port), Relay)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="catalog-link", daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        for s in list(self._live):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._live.clear()


def test_the_lake_api_answers_503_while_the_catalog_is_away_and_recovers_without_a_restart(
    lake_home: Path, lake_run: dict
):
    from brecha.core import lake

    settings = lake_settings(lake_home)
    catalog = lake.Catalog.parse(settings.lake_reader)
    link = CatalogLink(catalog.host, catalog.port).start()
    try:
        app = create_app(settings.replace(lake_reader=settings.lake_reader.replace(f":{catalog.port}/",
                                                                                      f":{link.port}/")))
        client = TestClient(app, raise_server_exceptions=False)
        ubigeo = client.get("/districts", params={"page_size": 1}).json()["items"][0]["ubigeo"]
        whatif = {"overrides": {"pct_centres_4g": 50}}
        up = client.get("/health")
        assert up.status_code == 200 and up.json()["status"] == "ok", up.text
        assert client.post(f"/districts/{ubigeo}/whatif", json=whatif).status_code == 200

        link.stop()  # the reader's connection to the catalog is cut and no new one can be made
        down = {
            "health": client.get("/health"),
            "lookup": client.get(f"/districts/{ubigeo}"),
            "list": client.get("/districts"),
            "model": client.get("/model"),
            "whatif": client.post(f"/districts/{ubigeo}/whatif", json=whatif),
        }
        english = client.get("/health", params={"lang": "en"})
        link.start()  # the catalog is back, on the same port
        back = client.get("/health"), client.get(f"/districts/{ubigeo}")
    finally:
        link.stop()
    for name, r in down.items():  # the documented error shape, in Spanish by default, naming what to run
        assert r.status_code == 503, (name, r.status_code, r.text)
        (detail,) = r.json()["detail"]
        assert detail["type"] == "not_served" and detail["loc"] == ["serving_db"], (name, r.text)
        assert "catálogo del lago" in detail["msg"] and "make lake-up" in detail["msg"], (name, r.text)
    assert english.status_code == 503 and "lake's catalog cannot be read" in english.json()["detail"][0]["msg"]
    assert [r.status_code for r in back] == [200, 200], [r.text for r in back]
    assert back[0].json()["lake_snapshot"] == up.json()["lake_snapshot"]


def test_an_api_in_another_home_on_the_same_lake_looks_up_and_says_where_the_model_artifacts_are(
    lake_home: Path, lake_run: dict, tmp_path: Path
):
    """Another machine with the same lake.env: the lake has the marts, not the model artifacts (they stay in the
    training home's artifacts folder), so lookups answer and /model and what-ifs say what to copy."""
    other = lake_settings(lake_home).replace(home=tmp_path)
    client = TestClient(create_app(other))
    lookup = client.get("/districts", params={"page_size": 1})
    assert lookup.status_code == 200, lookup.text
    ubigeo, run = (lookup.json()["items"][0][k] for k in ("ubigeo", "run_id"))
    whatif = client.post(f"/districts/{ubigeo}/whatif", json={"overrides": {"pct_centres_4g": 50}})
    for r in (client.get("/model"), whatif):
        assert r.status_code == 503, r.text
        msg = r.json()["detail"][0]["msg"]
        assert "no van en el lago" in msg and "máquina que entrenó" in msg and f"artifacts/{run}/" in msg, msg
    assert not (tmp_path / "artifacts").exists()
