"""The local Airflow: its API server listens on this machine only, and the admin password is never printed
(checked with Airflow's own SimpleAuthManager, in a subprocess with the environment `brecha airflow` uses)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from brecha.airflow_local import airflow_env, ensure_password

INIT = """
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.configuration import conf
SimpleAuthManager().init()
print("BRECHA_HOST " + conf.get("api", "host"))
print("BRECHA_PASSWORDS " + __import__("json").dumps(SimpleAuthManager.get_passwords()))
"""


def test_api_server_binds_to_localhost_and_the_password_stays_in_its_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("BRECHA_AIRFLOW_HOST", raising=False)
    env = airflow_env(tmp_path / "home")
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    secret = ensure_password(Path(env["AIRFLOW_HOME"]))
    password = json.loads(secret.read_text())["admin"]
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert ensure_password(Path(env["AIRFLOW_HOME"])) == secret and json.loads(secret.read_text())["admin"] == password
    proc = subprocess.run([sys.executable, "-c", INIT], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(ln.split(" ", 1) for ln in proc.stdout.splitlines() if ln.startswith("BRECHA_"))
    assert lines["BRECHA_HOST"] == "127.0.0.1"
    assert json.loads(lines["BRECHA_PASSWORDS"]) == {"admin": password}  # Airflow uses our password ...
    printed = proc.stdout.replace(lines["BRECHA_PASSWORDS"], "") + proc.stderr
    assert password not in printed and "Password for user" not in printed  # ... and never prints it
    monkeypatch.setenv("BRECHA_AIRFLOW_HOST", "0.0.0.0")
    assert airflow_env(tmp_path / "home")["AIRFLOW__API__HOST"] == "0.0.0.0"


def test_tasks_report_to_the_port_the_api_server_listens_on(tmp_path: Path, monkeypatch) -> None:
    """Airflow's task supervisor sends task state to the execution API (default http://localhost:8080/execution/):
    with the API server on another port, every task failed with "Connection refused" until this followed it."""
    code = ("from airflow.configuration import conf; "
            "print(conf.get('api', 'port'), conf.get('core', 'execution_api_server_url'))")
    for port in (None, "8093"):
        if port:
            monkeypatch.setenv("AIRFLOW__API__PORT", port)
        env = airflow_env(tmp_path / "home")
        proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                              timeout=120, check=True)
        listens, reports = proc.stdout.split()[-2:]
        assert listens == (port or "8080") and reports == f"http://127.0.0.1:{listens}/execution/"
