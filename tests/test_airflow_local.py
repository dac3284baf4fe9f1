"""The local Airflow: its API server listens on this machine only, and the admin password is never printed
(checked with Airflow's own SimpleAuthManager, in a subprocess with the environment `brecha airflow` uses)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from conftest import free_port

from brecha.core.settings import Settings
from brecha.orchestrate.airflow_local import airflow_env, ensure_password, machine_size

INIT = """
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.configuration import conf
SimpleAuthManager().init()
print("BRECHA_HOST " + conf.get("api", "host"))
print("BRECHA_SIZE " + " ".join((conf.get("core", "parallelism"), conf.get("api", "workers"),
                                 conf.get("dag_processor", "parsing_processes"))))
print("BRECHA_PASSWORDS " + __import__("json").dumps(SimpleAuthManager.get_passwords()))
"""


def test_api_server_binds_to_localhost_and_the_password_stays_in_its_file(tmp_path: Path, monkeypatch) -> None:
    env = airflow_env(Settings.from_env({"BRECHA_HOME": str(tmp_path / "home")}))
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    secret = ensure_password(Path(env["AIRFLOW_HOME"]))
    password = json.loads(secret.read_text())["admin"]
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert ensure_password(Path(env["AIRFLOW_HOME"])) == secret and json.loads(secret.read_text())["admin"] == password
    proc = subprocess.run(
        [sys.executable, "-c", INIT], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(ln.split(" ", 1) for ln in proc.stdout.splitlines() if ln.startswith("BRECHA_"))
    assert lines["BRECHA_HOST"] == "127.0.0.1"
    assert json.loads(lines["BRECHA_PASSWORDS"]) == {"admin": password}  # Airflow uses our password ...
    printed = proc.stdout.replace(lines["BRECHA_PASSWORDS"], "") + proc.stderr
    assert password not in printed and "Password for user" not in printed  # ... and never prints it
    # sized to the machine, as Airflow reads it: task slots from the cores, one API server worker, one DAG parser
    assert lines["BRECHA_SIZE"] == f"{max(2, 2 * len(os.sched_getaffinity(0)))} 1 1"
    assert (
        machine_size(8)["AIRFLOW__CORE__PARALLELISM"] == "16" and machine_size(1)["AIRFLOW__CORE__PARALLELISM"] == "2"
    )
    opened = Settings.from_env({"BRECHA_HOME": str(tmp_path / "home"), "BRECHA_AIRFLOW_HOST": "0.0.0.0"})
    assert airflow_env(opened)["AIRFLOW__API__HOST"] == "0.0.0.0"


def test_tasks_report_to_the_port_the_api_server_listens_on(tmp_path: Path, monkeypatch) -> None:
    """Airflow's task supervisor sends task state to the execution API (default http://localhost:8080/execution/):
    with the API server on another port, every task failed with "Connection refused" until this followed it."""
    code = (
        "from airflow.configuration import conf; "
        "print(conf.get('api', 'port'), conf.get('core', 'execution_api_server_url'))"
    )
    for port in (None, "8093"):
        given = {"BRECHA_HOME": str(tmp_path / "home")} | ({"AIRFLOW__API__PORT": port} if port else {})
        env = airflow_env(Settings.from_env(given))
        proc = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        listens, reports = proc.stdout.split()[-2:]
        assert listens == (port or "8080") and reports == f"http://127.0.0.1:{listens}/execution/"


def _ours(cwd: Path, root: int | None = None) -> list[int]:
    """Live processes started for this test: below ``root`` (``brecha airflow`` adopts every orphan of its tree), or
    working in ``cwd``, the folder the test started it in (their environment cannot tell: Airflow's processes set
    their title over it)."""
    from brecha.core.lifetime import descendants

    below = set(descendants(root)) if root is not None else set()
    found = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if (pid in below or os.readlink(f"/proc/{pid}/cwd") == str(cwd)) and Path(
                f"/proc/{pid}/stat"
            ).read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(pid)
        except OSError:
            continue
    return found


def _listening(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the processes ``pids`` listen on."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
        except OSError:
            continue
    out = set()
    for table, ipv6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                addr, port = cols[1].split(":")
                raw = bytes.fromhex(addr)
                if ipv6:
                    text = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
                else:
                    text = socket.inet_ntop(socket.AF_INET, raw[::-1])
                out.add((text, int(port, 16)))
    return out


def test_brecha_airflow_listens_on_localhost_only_and_sigterm_to_its_group_stops_every_process(
    tmp_path: Path, monkeypatch
) -> None:
    """`brecha airflow` as a terminal starts it (a process group of its own): every socket of every process it
    started, the task log server's included, is on 127.0.0.1; SIGTERM to the group leaves no process behind."""
    monkeypatch.delenv("BRECHA_AIRFLOW_HOST", raising=False)
    home = tmp_path / "home"
    api, logs = free_port(), free_port()
    env = {
        **os.environ,
        "BRECHA_HOME": str(home),
        "AIRFLOW__API__PORT": str(api),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(logs),
    }
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("brecha")), "airflow"],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        listening: set[tuple[str, int]] = set()
        while time.monotonic() < deadline and not {api, logs} <= {port for _, port in listening}:
            assert proc.poll() is None, "brecha airflow stopped"
            time.sleep(1)
            listening = _listening(_ours(cwd, proc.pid))
        assert {("127.0.0.1", api), ("127.0.0.1", logs)} <= listening
        assert {addr for addr, _ in listening} == {"127.0.0.1"}, listening  # nothing on 0.0.0.0 or ::
        started = _ours(cwd, proc.pid)
        assert len(started) >= 6  # brecha airflow, scheduler, DAG processor, API server, triggerer, log server
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
        deadline = time.monotonic() + 10
        while _ours(cwd) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _ours(cwd) == []
    finally:
        for pid in _ours(cwd, proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
