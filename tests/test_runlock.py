"""One run at a time per home: a second run stops at once naming the holder; a killed holder frees the home; an
Airflow DAG run's claim keeps CLI runs out until it is released."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from brecha.core import runlock
from brecha.core.settings import Paths, Settings, current, paths
from brecha.orchestrate import steps

HOLDER = """
import os, sys, time
from brecha.core.runlock import hold
from brecha.core.settings import Settings, using
with using(Settings.from_env(os.environ)), hold("brecha run --input /downloads/a"):
    print("HELD", flush=True)
    time.sleep(120)
"""


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "c22.csv").write_text(
        "iden,Departamento,2003,2004\n1,Amazonas,0.5,1.2\n2,Ancash,4.7,6.7\n", encoding="utf-8"
    )
    return folder


def test_second_run_stops_naming_the_holder_and_a_killed_holder_frees_the_home(
    brecha_home: Path, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "BRECHA_HOME": str(brecha_home)},
    )
    try:
        assert proc.stdout.readline().strip() == "HELD"
        with pytest.raises(runlock.RunLocked) as err:
            steps.ingest(current(), _folder(tmp_path))
        message = str(err.value)
        assert f"pid {proc.pid}" in message and "command: brecha run --input /downloads/a" in message
        assert "started at" in message and "another BRECHA_HOME" in message
        assert not paths().db.exists(), "the second run must not touch the warehouse"
        proc.send_signal(signal.SIGKILL)  # kill -9: the kernel drops the lock with the process
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    result = steps.ingest(current(), tmp_path / "in")
    assert result.rows_landed == 4


def test_the_lock_is_reentrant_within_a_run(brecha_home: Path) -> None:
    with runlock.hold("outer"), runlock.hold("inner"):
        assert runlock.holder_info()["command"] == "outer"
    with runlock.hold("again"):  # released after the outer one ended
        pass


def test_a_dag_run_claim_keeps_other_runs_out_until_released(brecha_home: Path, tmp_path: Path) -> None:
    owner = "airflow:brecha_pipeline/manual__2024-01-01"
    cli = Settings(home=brecha_home)  # a CLI run in another shell
    dag_task = cli.replace(run_owner=owner)  # the DAG run's own tasks
    steps.claim(dag_task)
    with pytest.raises(runlock.RunLocked, match=f"pipeline run is in progress: {owner}"):
        steps.ingest(cli, _folder(tmp_path))
    assert steps.ingest(dag_task, tmp_path / "in").rows_landed == 4
    assert steps.release(dag_task) and not Paths(brecha_home).run_claim.exists()
    assert steps.ingest(cli, tmp_path / "in").rows_landed == 4
