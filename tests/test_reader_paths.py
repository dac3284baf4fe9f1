"""What analysts open and run day to day: the static dbt docs site in a browser from a file, the read-only SQL prompt
on the serving copy, rescored predictions in a table and `brecha runs`, and the run summary naming empty marts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from browser import dump_dom, visible_text
from click.testing import CliRunner
from conftest import TEST_SEED, own_home

from brecha.core.settings import current
from brecha.orchestrate.cli import cli

BRECHA = str(Path(sys.executable).with_name("brecha"))


@pytest.fixture(scope="module")
def published(pipeline_run, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy of the trained session warehouse in a home of our own, rescored once and published."""
    from brecha.orchestrate import steps
    from brecha.warehouse import publish

    home_src, train = pipeline_run.home, pipeline_run.train
    # `brecha predict` reloads the run's artifacts; the session run recorded every gate publish requires
    with own_home(home_src, tmp_path_factory.mktemp("reader_home"), artifacts="copy") as own:
        rescored = steps.predict(current(), train.run_id)
        result = publish.publish()
    return {"home": own, "train": train, "rescored": rescored, "serving": result.serving_db}


def _brecha(args: list[str], home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BRECHA_HOME": str(home)}
    return subprocess.run([BRECHA, *args], env=env, input=stdin, capture_output=True, text=True, timeout=300)


def test_rescored_predictions_are_a_table_with_run_and_time(published: dict) -> None:
    run_id, rescored = published["train"].run_id, published["rescored"]
    with duckdb.connect(str(published["serving"]), read_only=True) as con:
        rows = con.execute(
            """SELECT count(*), count(DISTINCT ubigeo),
                                     max(abs(r.predicted_internet_pct - p.predicted_internet_pct))
                              FROM ml.rescored_predictions r JOIN ml.district_predictions p USING (run_id, ubigeo)
                              WHERE run_id = ? AND rescored_at = ?""",
            [run_id, rescored.rescored_at],
        ).fetchone()
        districts = con.execute("SELECT count(*) FROM marts.dim_districts").fetchone()[0]
    assert rows[0] == rows[1] == districts  # one row per district for this rescoring (earlier ones are kept too)
    assert rows[2] < 1e-9  # the same artifact on the same marts gives the stored predictions
    assert "ml.rescored_predictions" in str(rescored)


def test_brecha_runs_lists_runs_with_metrics(published: dict) -> None:
    home, run_id = published["home"], published["train"].run_id
    with duckdb.connect(str(home / "brecha.duckdb"), read_only=True) as con:
        name, mae = con.execute(
            "SELECT model_name, cv_mae FROM ml.model_runs WHERE run_id = ? AND selected", [run_id]
        ).fetchone()
        times = con.execute(
            "SELECT count(DISTINCT rescored_at) FROM ml.rescored_predictions WHERE run_id = ?", [run_id]
        ).fetchone()[0]
    proc = _brecha(["runs"], home)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith(run_id))
    assert name in line and f"{mae:.3f}" in line
    assert times >= 1 and line.split()[-3] == str(times), line  # the fixture rescored it (other tests may have too)


def test_brecha_runs_shows_mean_and_sd_over_seeds(published: dict, use_home) -> None:
    """Training recorded its own seed in ml.seed_metrics; one more seed (the FAST settings, to keep the test short)
    and `brecha runs` prints the mean ± SD over both for the latest run's data."""
    from brecha_ml import multiseed, seeds
    from brecha_ml.config import FAST

    home = published["home"]
    use_home(home)
    multiseed.run((1,), FAST)
    with duckdb.connect(str(home / "brecha.duckdb"), read_only=True) as con:
        rows = seeds.latest(con)
    assert sorted(set(rows["seed"])) == sorted({1, TEST_SEED})
    r2 = rows.loc[rows["selected"].astype(bool)].groupby("seed")["r2"].first()
    proc = _brecha(["runs"], home)
    assert proc.returncode == 0, proc.stderr
    assert "spatial CV over 2 seed(s)" in proc.stdout
    served = next(x for x in proc.stdout.splitlines() if x.startswith(" * "))
    name = rows.loc[rows["selected"].astype(bool) & (rows["seed"] == 1), "model_name"].iloc[0]
    mean = rows.loc[rows["model_name"] == name, "r2"]
    assert f"R² {mean.mean():.4f} ± {mean.std():.4f}" in proc.stdout
    assert len(r2) == 2 and served.split()[1] in set(rows["model_name"])


def test_sql_prompt_reads_the_serving_copy_and_cannot_write(published: dict) -> None:
    home = published["home"]
    with duckdb.connect(str(published["serving"]), read_only=True) as con:
        n = con.execute("SELECT count(*) FROM marts.mart_district_priorities").fetchone()[0]
    one = _brecha(["sql", "-csv", "-c", "select count(*) as n from marts.mart_district_priorities"], home)
    assert one.returncode == 0, one.stderr
    assert one.stdout.split() == ["n", str(n)]
    piped = _brecha(["sql", "-csv"], home, stdin="select count(*) as n from marts.dim_districts;\n")
    assert piped.returncode == 0 and piped.stdout.split()[0] == "n", piped.stderr
    write = _brecha(["sql", "-c", "create table marts.x as select 1"], home)
    assert write.returncode != 0 and "read-only" in (write.stdout + write.stderr)


def test_sql_without_a_serving_copy_says_what_to_do(brecha_home: Path) -> None:
    proc = _brecha(["sql", "-c", "select 1"], brecha_home)
    assert proc.returncode == 1 and "brecha run" in proc.stderr


def test_static_docs_site_renders_models_from_a_file(session_home: Path, tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["docs"])
    assert out.exit_code == 0, out.output
    site = Path(out.output.strip().rsplit(" ", 1)[-1])
    assert site.name == "static_index.html" and site.is_file()
    seen = visible_text(dump_dom(site.as_uri() + "#!/model/model.brecha.mart_digital_divide_index", tmp_path))
    # the sidebar lists the marts and the model page shows the model's documented description and columns
    for name in ("dim_districts", "fct_district_connectivity", "mart_district_priorities", "national_rank"):
        assert name in seen, f"{name} not rendered"
    assert "Grain: one row per district" in seen


def test_docs_serve_serves_the_site(session_home: Path, tmp_path: Path) -> None:
    import time
    import urllib.request

    from conftest import free_port

    port = free_port()
    proc = subprocess.Popen(
        [BRECHA, "docs", "--serve", "--no-generate", "--port", str(port)],
        env={**os.environ, "BRECHA_HOME": str(session_home)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert f"http://127.0.0.1:{port}/" in proc.stderr.readline()
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/manifest.json", timeout=5) as r:
                    assert b"model.brecha.mart_digital_divide_index" in r.read()
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("brecha docs --serve did not answer")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_run_summary_names_empty_marts_and_the_file_that_fills_them(session_home: Path, tmp_path: Path) -> None:
    """A batch without the ENAHO files (as on the real extracts): the mart they fill is named, with the layout, an
    example file name and the dashboard panels that will be empty."""
    from brecha.warehouse.coverage import gaps

    db = tmp_path / "brecha.duckdb"
    shutil.copyfile(session_home / "brecha.duckdb", db)
    with duckdb.connect(str(db)) as con:
        assert gaps(con, session_home / "dbt_target" / "manifest.json") == []  # every layout present: nothing empty
        con.execute("""DELETE FROM raw._batch_files WHERE entity = 'inei__enaho_households'
                       AND batch_id = (SELECT batch_id FROM raw._latest_ok_batch)""")
        con.execute("DELETE FROM marts.fct_department_adoption_yearly")
        con.execute(
            "UPDATE marts.fct_district_connectivity SET survey_internet_pct_department = NULL, survey_year = NULL"
        )
        found = {g.relation: g for g in gaps(con, session_home / "dbt_target" / "manifest.json")}
    adoption = found.pop("marts.fct_department_adoption_yearly")
    assert "ENAHO module 01" in str(adoption) and "906-Modulo01.zip" in str(adoption)
    # the panels as a reader finds them in Grafana's default (Spanish) set
    assert adoption.panels and all(p.startswith('Tendencias por departamento: "') for p in adoption.panels)
    columns = found.pop("marts.fct_district_connectivity columns survey_internet_pct_department, survey_year")
    assert "ENAHO" in str(columns) and "have no value" in str(columns)
    assert found == {}


@pytest.mark.parametrize("readme", ["README.md", "grafana/README.md"])
def test_readme_python_snippets_print_when_run_as_scripts(published: dict, tmp_path: Path, readme: str) -> None:
    """Each ```python block of the README, saved as a file and run from a project folder as a new user does."""
    import re

    blocks = re.findall(r"```python\n(.*?)```", (Path(__file__).parents[1] / readme).read_text(), re.S)
    assert blocks
    (tmp_path / "warehouse" / "serving").mkdir(parents=True)
    (tmp_path / "warehouse" / "serving" / "brecha.duckdb").symlink_to(published["serving"])
    with duckdb.connect(str(published["serving"]), read_only=True) as con:
        first = con.execute("SELECT district FROM marts.mart_digital_divide_index WHERE national_rank = 1").fetchone()[
            0
        ]
    for i, code in enumerate(blocks):
        script = tmp_path / f"snippet{i}.py"
        script.write_text(code)
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert len(proc.stdout.strip().splitlines()) >= 10, f"{readme} snippet {i} prints too little:\n{proc.stdout}"
        if "mart_digital_divide_index" in code:
            assert first in proc.stdout
