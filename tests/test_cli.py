"""The `brecha` command line: help for every command, and `brecha run` end to end as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from brecha.cli import cli

BRECHA = str(Path(sys.executable).with_name("brecha"))


def test_help_documents_every_command() -> None:
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"])
    assert top.exit_code == 0
    assert set(cli.commands) >= {"extract", "ingest", "build", "validate", "train", "predict", "publish", "run"}
    for name, command in cli.commands.items():
        assert name in top.output, f"`brecha --help` does not list {name}"
        assert command.help and len(command.help.strip()) > 20, f"`brecha {name}` has no real help text"
        sub = runner.invoke(cli, [name, "--help"])
        assert sub.exit_code == 0 and "Usage: " in sub.output, sub.output
        for param in command.params:
            if isinstance(param, __import__("click").Option) and param.name != "help":
                assert param.help, f"`brecha {name}` option {param.opts} has no help"


def _run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BRECHA_HOME": str(home), "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    return subprocess.run([BRECHA, *args], env=env, capture_output=True, text=True, timeout=1800)


def test_run_end_to_end_on_the_synthetic_default(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = _run(["run", "--scale", "0.25"], home)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout + proc.stderr
    for expected in ("Rows landed and rejected per source", "dbt tests passed", "widest digital divide"):
        assert expected in out, f"summary lacks {expected!r}"
    with duckdb.connect(str(home / "serving" / "brecha.duckdb"), read_only=True) as con:
        n = con.sql("select count(*) from marts.mart_district_priorities").fetchone()[0]
        top = con.sql("select ubigeo from marts.mart_digital_divide_index where national_rank <= 10").fetchall()
    assert n == 1874
    assert (home / "atlas" / "index.html").is_file(), "brecha run ends with the atlas"
    # the summary names the same ten districts as the mart
    assert all(u in out for (u,) in top)


def test_run_stops_with_a_clear_message_on_a_bad_folder(tmp_path: Path) -> None:
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "mystery.csv").write_text("foo,bar\n1,2\n", encoding="utf-8")
    home = tmp_path / "home"
    proc = _run(["run", "--input", str(folder)], home)
    assert proc.returncode == 1
    assert "mystery.csv" in proc.stderr and "error:" in proc.stderr
    assert not (home / "serving" / "brecha.duckdb").exists(), "nothing may be published after a failure"


@pytest.mark.parametrize("command", [["ingest", "/nonexistent/folder"], ["predict", "--run", "no-such-run"]])
def test_bad_arguments_exit_non_zero(tmp_path: Path, command: list[str]) -> None:
    proc = _run(command, tmp_path / "home")
    assert proc.returncode != 0
    assert proc.stderr.strip(), "a failure must say why"
