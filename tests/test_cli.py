"""The `brecha` command line: help for every command, and `brecha run` end to end as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from brecha.orchestrate.cli import cli

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


def test_help_is_not_cut_without_a_terminal() -> None:
    """`brecha --help` piped (as in a log): every command's first sentence whole, and the default home as the code has it."""
    from brecha.core.settings import PROJECT_ROOT

    proc = subprocess.run(
        [BRECHA, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "COLUMNS"},
    )
    assert proc.returncode == 0 and "..." not in proc.stdout.replace("[ARGS]...", "")
    flat = " ".join(proc.stdout.split())
    for command in cli.commands.values():
        first = " ".join(command.get_short_help_str(limit=1000).split())
        assert first in flat, f"`brecha --help` cuts {first!r}"
    assert "the warehouse/ folder of this project, whatever the current folder" in flat
    # ... which is what the code does: run from another folder without BRECHA_HOME
    env = {k: v for k, v in os.environ.items() if k != "BRECHA_HOME"}
    home = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from brecha.core.settings import Settings; print(Settings.from_env(os.environ).home)",
        ],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(home) == (PROJECT_ROOT / "warehouse").resolve()


def _run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BRECHA_HOME": str(home)}
    return subprocess.run([BRECHA, *args], env=env, capture_output=True, text=True, timeout=1800)


def test_run_end_to_end_on_the_synthetic_default(pipeline_run) -> None:
    """The session's whole run (tests/conftest.py: what `brecha run --scale 0.25` calls, output captured without a
    terminal): its summary, the serving copy it published and the atlas it drew."""
    out, home = pipeline_run.output, pipeline_run.home
    for expected in (
        "Rows landed and rejected per source",
        "dbt tests passed",
        "Where first, divide lens (priority_rank)",
        "Where first, households-offline lens (offline_priority_rank)",
    ):
        assert expected in out, f"summary lacks {expected!r}"
    # captured without a terminal: no ANSI colour codes (dbt's included), file names not wrapped at 80 columns
    assert "\x1b[" not in out
    assert any(line.startswith("✓ validate landed extracts") and "Data Docs: " in line for line in out.splitlines())
    # quiet by default: progress per step and the summary; dbt's line per node went to its log file only
    assert len(out.splitlines()) < 60, out
    assert "OK created sql table model" not in out and " START " not in out
    assert "OK created sql table model" in (home / "dbt_logs" / "dbt.log").read_text()
    assert "left out (15: no earlier ok batch from the same input folder" in out
    with duckdb.connect(str(home / "serving" / "brecha.duckdb"), read_only=True) as con:
        n = con.sql("select count(*) from marts.mart_district_priorities").fetchone()[0]
        top = con.sql(
            "select ubigeo from marts.mart_district_priorities where priority_rank <= 5 or offline_priority_rank <= 5"
        ).fetchall()
    assert n == 1874
    assert (home / "atlas" / "index.html").is_file(), "brecha run ends with the atlas"
    # the summary names the same five first districts of each lens as the mart, the divide lens first
    assert len(top) >= 6 and all(u in out for (u,) in top)
    assert out.index("divide lens (priority_rank)") < out.index("households-offline lens")
    assert_map_counts_reported(out, home / "brecha.duckdb")
    # ENAHO's incomplete interviews are counted as the mart counts them, and the 2023 break is named
    with duckdb.connect(str(home / "serving" / "brecha.duckdb"), read_only=True) as con:
        incomplete, brk = con.sql(
            "select sum(households_incomplete), min(year) filter (where is_series_break) "
            "from marts.fct_department_adoption_yearly"
        ).fetchone()
    assert incomplete > 0 and brk == 2023
    assert f"{incomplete:,} not completed (RESULT other than 1" in out and "not comparable across 2023" in out


def assert_map_counts_reported(out: str, db: Path) -> None:
    """The run report's "District maps" line: boundary features landed -> polygons in the mart -> districts drawn by
    polygon or marker, each number as the warehouse ``db`` has it, none dropped without a word."""
    line = next(x for x in out.splitlines() if x.startswith("District maps:"))
    with duckdb.connect(str(db), read_only=True) as con:
        features, null = con.sql(
            "select count(*), count(*) filter (where not has_geometry) from staging.stg_geo__district_boundaries"
        ).fetchone()
        polygons = con.sql("select count(*) from marts.dim_district_boundaries").fetchone()[0]
        districts, markers = con.sql(
            "select count(*), count(*) filter (where map_shape = 'marker') from marts.mart_district_profile"
        ).fetchone()
        reference = con.sql("select count(*) from marts.dim_districts").fetchone()[0]
    assert f"{features:,} boundary features landed ({null} with a null geometry)" in line, line
    assert f"-> {polygons:,} polygons in marts.dim_district_boundaries" in line, line
    assert (
        f"{districts:,} districts of the reference on every map: {districts - markers:,} drawn by polygon, "
        f"{markers} by marker" in line
    ), line
    assert line.endswith("features dropped: 0") and features - null == polygons, line
    assert districts >= reference


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


def test_sql_passes_the_duckdb_clis_own_options_through(pipeline_run) -> None:
    """`-noheader` is one option of the DuckDB CLI, not click's `-n -o -h ...` (whose `-h` showed brecha's help)."""
    env = {**os.environ, "BRECHA_HOME": str(pipeline_run.home)}
    query = "SELECT count(*) AS districts FROM marts.dim_districts"
    with duckdb.connect(str(pipeline_run.home / "serving" / "brecha.duckdb"), read_only=True) as con:
        expected = con.execute(query).fetchone()[0]
    for args in (["-csv", "-noheader", "-c", query], ["--", "-csv", "-noheader", "-c", query]):
        out = subprocess.run([BRECHA, "sql", *args], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == str(expected), out.stdout  # the count alone: no header line, no brecha help
    header = subprocess.run([BRECHA, "sql", "-csv", "-header", "-c", query], env=env, capture_output=True, text=True)
    assert header.stdout.split() == ["districts", str(expected)], header.stdout
    usage = subprocess.run([BRECHA, "sql", "--help"], env=env, capture_output=True, text=True)
    assert usage.returncode == 0 and "-noheader" in usage.stdout and "Usage: brecha sql" in usage.stdout


def _closed_port_lake(tmp_path: Path) -> tuple[dict[str, str], str]:
    """A home whose lake.env names a catalog on a port where nothing listens (the server is down): the environment of
    a shell that sourced it, and the catalog's password."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    password = "s3cret-not-shown"
    env_file = tmp_path / "lake.env"
    env_file.write_text(
        f"export BRECHA_LAKE='postgresql://brecha:{password}@127.0.0.1:{port}/brecha_lake'\n"
        f"export BRECHA_LAKE_DATA='{tmp_path / 'lake' / 'data'}'\n"
    )
    from brecha.core.lake import read_env

    return {**os.environ, "BRECHA_HOME": str(tmp_path), **read_env(env_file)}, password


def test_a_lake_whose_catalog_is_down_says_to_start_it(tmp_path: Path) -> None:
    """Readers, writers and the comparison tool on a lake whose catalog server is down: one line naming the catalog
    (no password) and `make lake-up` / `. $BRECHA_HOME/lake.env`, no traceback, no hint about disks."""
    env, password = _closed_port_lake(tmp_path)
    duckdb.connect(str(tmp_path / "embedded.duckdb")).close()
    commands = [
        [BRECHA, "publish", "--list"],
        [BRECHA, "publish", "--rollback"],
        [BRECHA, "sql", "-c", "SELECT 1"],
        [BRECHA, "runs"],  # the lake's, not the home's (absent) embedded file
        [sys.executable, "-m", "tools.lake_compare", str(tmp_path / "embedded.duckdb"), str(tmp_path / "lake.env")],
    ]
    for command in commands:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[1])
        said = proc.stdout + proc.stderr
        assert proc.returncode != 0 and "Traceback" not in said, said
        assert "cannot be reached" in said and "Connection refused" in said, said
        assert "`make lake-up`" in said and "`. $BRECHA_HOME/lake.env`" in said, said
        assert password not in said and "check the disk" not in said, said


SQL_ON_THE_LAKE = """
import sys
from brecha.orchestrate.cli import _sql_on_the_lake
init = ".output /dev/null\\nCREATE TABLE secret AS SELECT 42 AS answer;\\n.output\\n"  # stands for the lake's attach
sys.exit(_sql_on_the_lake(init, tuple(sys.argv[1:])))
"""


def test_sql_on_the_lake_leaves_no_init_script_behind_even_on_sighup_or_sigterm(tmp_path: Path) -> None:
    """`brecha sql` on the lake hands DuckDB an init script holding the readers' password: read with `-cmd ".read"`
    (no "Loading resources" banner), deleted as soon as DuckDB has read it while the prompt stays open, and its
    private folder removed when DuckDB ends or when `brecha sql` gets SIGHUP (the terminal closed) or SIGTERM."""
    import signal
    import time

    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the private folder goes under tmp_path
    done = subprocess.run(
        [sys.executable, "-c", SQL_ON_THE_LAKE, "-csv", "-c", "SELECT answer FROM secret"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.split() == ["answer", "42"], done.stdout + done.stderr
    assert "Loading resources" not in done.stderr and done.stderr == "", done.stderr
    assert list(tmp_path.iterdir()) == []
    for sig in (signal.SIGHUP, signal.SIGTERM):
        prompt = subprocess.Popen(
            [sys.executable, "-c", SQL_ON_THE_LAKE], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 30
            while not list(tmp_path.glob("brecha-sql-*/read")):  # DuckDB has read the script
                assert time.monotonic() < deadline and prompt.poll() is None, "DuckDB never read the init script"
                time.sleep(0.05)
            while list(tmp_path.glob("brecha-sql-*/init.sql")):
                assert time.monotonic() < deadline, "the init script stays on disk while the prompt is open"
                time.sleep(0.05)
            assert prompt.poll() is None  # the prompt is still open, its script already gone
            prompt.send_signal(sig)
            prompt.communicate(timeout=30)
        finally:
            if prompt.poll() is None:
                prompt.kill()
        assert prompt.returncode == 128 + sig
        assert list(tmp_path.iterdir()) == [], f"after {sig.name}: {list(tmp_path.rglob('*'))}"
