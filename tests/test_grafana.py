"""Grafana provisioning and dashboards: structure, and every panel query run on a published serving copy.

No Grafana server runs here: Grafana's macros and template variables are expanded the way the DuckDB plugin
(sqlds default macros) and Grafana do, and each query runs on the serving copy of the synthetic warehouse,
with the variables at their defaults and at one specific department/province.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from itertools import product
from pathlib import Path

import duckdb
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
GRAFANA = REPO / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
BUILTIN_VARS = {"__interval", "__interval_ms", "__range", "__timeFilter", "__timeFrom", "__timeTo", "__all",
                "__unixEpochFilter", "__dashboard", "__org", "__user", "__from", "__to"}
VAR_RE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)")
PERU = {"latitude": (-18.5, 0.1), "longitude": (-81.5, -68.5)}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def datasource() -> dict:
    return yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "brecha.yaml").read_text())["datasources"][0]


def compose() -> dict:
    return yaml.safe_load((GRAFANA / "docker-compose.yml").read_text())["services"]["grafana"]


def panels_of(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows
    return out


# --- static checks --------------------------------------------------------------------------------------------

def test_four_dashboards_generated_from_the_script() -> None:
    sys.path.insert(0, str(GRAFANA))
    try:
        import build_dashboards
    finally:
        sys.path.remove(str(GRAFANA))
    rendered = build_dashboards.render()
    assert sorted(rendered) == [p.name for p in DASHBOARDS] and len(DASHBOARDS) == 4
    for path in DASHBOARDS:
        assert path.read_text() == rendered[path.name], f"{path} differs from grafana/build_dashboards.py: rerun it"


def test_dashboard_uids_unique_and_datasource_is_the_provisioned_one() -> None:
    ds = datasource()
    assert ds["type"] == "motherduck-duckdb-datasource" and ds["uid"] == "brecha-duckdb"
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    for path in DASHBOARDS:
        dash = load(path)
        assert dash["title"] and dash["panels"]
        for p in panels_of(dash):
            if p["type"] == "row":
                continue
            assert p["datasource"]["uid"] == ds["uid"] and p["datasource"]["type"] == ds["type"], (path.name, p["title"])
            assert p["targets"], (path.name, p["title"])
            for t in p["targets"]:
                assert t["datasource"]["uid"] == ds["uid"] and t["rawSql"].strip(), (path.name, p["title"])
        for var in dash["templating"]["list"]:
            if var["type"] == "query":
                assert var["datasource"]["uid"] == ds["uid"], (path.name, var["name"])


def test_panels_fit_the_grid_without_overlap() -> None:
    for path in DASHBOARDS:
        cells: dict[tuple[int, int], str] = {}
        for p in panels_of(load(path)):
            g = p["gridPos"]
            assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0, (path.name, p["title"])
            assert g["x"] + g["w"] <= 24, f"{path.name}: '{p['title']}' leaves the 24-column grid"
            for cell in product(range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])):
                assert cell not in cells, f"{path.name}: '{p['title']}' overlaps '{cells[cell]}' at {cell}"
                cells[cell] = p["title"]


def used_variables(dash: dict) -> set[str]:
    texts = [p.get("title", "") for p in panels_of(dash)]
    texts += [t["rawSql"] for p in panels_of(dash) for t in p.get("targets", [])]
    texts += [v.get("query", "") for v in dash["templating"]["list"] if v["type"] == "query"]
    names = {a or b for text in texts for a, b in VAR_RE.findall(text)}
    return names - BUILTIN_VARS


def test_every_variable_used_is_defined() -> None:
    for path in DASHBOARDS:
        dash = load(path)
        defined = {v["name"] for v in dash["templating"]["list"]}
        assert used_variables(dash) <= defined, f"{path.name}: undefined {used_variables(dash) - defined}"


def test_map_dashboard_has_the_promised_controls() -> None:
    dash = load(GRAFANA / "dashboards" / "district_map.json")
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert {o["value"] for o in variables["measure"]["options"]} == {"internet_pct", "divide_index", "gap_pp", "priority_rank"}
    assert variables["department"]["includeAll"] and variables["province"]["includeAll"]
    geomap = next(p for p in dash["panels"] if p["type"] == "geomap")
    layer = geomap["options"]["layers"][0]
    assert layer["type"] == "markers"
    assert layer["location"] == {"mode": "coords", "latitude": "latitude", "longitude": "longitude"}
    assert layer["config"]["style"]["color"]["field"] == "measure"
    assert layer["config"]["style"]["size"]["field"] == "population"
    assert sum(p["type"] == "stat" for p in dash["panels"]) == 4


def test_provisioning_points_read_only_at_the_mounted_serving_copy() -> None:
    ds, svc = datasource(), compose()
    assert ds["jsonData"]["readOnly"] is True and ds["editable"] is False
    mounts = {}  # container path -> the whole mount (sources may hold ':' in ${VAR:?message})
    for m in svc["volumes"]:
        parts = m.rsplit(":", 2)
        mounts[parts[-2] if parts[-1] in ("ro", "rw") else parts[-1]] = m
    serving_mount = mounts["/var/lib/brecha/serving"]
    assert serving_mount.endswith(":ro") and "BRECHA_HOME" in serving_mount and "/serving:" in serving_mount
    assert Path(ds["jsonData"]["path"]).parent == Path("/var/lib/brecha/serving")
    assert Path(ds["jsonData"]["path"]).name == "brecha.duckdb"  # = paths().serving_db.name
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "brecha.yaml").read_text())["providers"][0]
    assert provider["options"]["path"] in mounts and mounts[provider["options"]["path"]].startswith("./dashboards:")
    assert mounts["/etc/grafana/provisioning"].startswith("./provisioning:")
    env = svc["environment"]
    assert re.fullmatch(r"grafana/grafana:\$\{GRAFANA_VERSION:-\d+\.\d+\.\d+\}-ubuntu", svc["image"])
    assert env["GF_PLUGINS_ALLOW_LOADING_UNSIGNED_PLUGINS"] == "motherduck-duckdb-datasource"
    assert env["GF_PLUGINS_PREINSTALL_SYNC"].startswith("motherduck-duckdb-datasource@")
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")  # from the environment only


# --- queries on a published serving copy ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def serving_db(trained_home, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Publish a copy of the trained synthetic warehouse in a home of our own (the shared one stays as it is)."""
    import os

    from brecha import publish

    home, _ = trained_home
    own = tmp_path_factory.mktemp("grafana_home")
    shutil.copyfile(home / "brecha.duckdb", own / "brecha.duckdb")
    old = os.environ["BRECHA_HOME"]
    os.environ["BRECHA_HOME"] = str(own)
    try:
        # publish requires every gate passed for the batch: the fixtures' `steps.dbt_build` recorded the dbt
        # builds; the Great Expectations gates pass on this warehouse (test_validate runs them), not re-run here
        from brecha import gates

        gates.record(("landed", "marts"), True, "validated by tests/test_validate.py on the same warehouse")
        return publish.publish().serving_db
    finally:
        os.environ["BRECHA_HOME"] = old


def expand(sql: str, variables: dict[str, str], time_from: str) -> str:
    """Grafana's interpolation: sqlds default macros with the dashboard's range, then ${var} / $var."""
    now = datetime.now(UTC).replace(microsecond=0)
    amount, unit = re.fullmatch(r"now-(\d+)([dy])", time_from).groups()
    start = now - timedelta(days=int(amount) * (365 if unit == "y" else 1))
    rfc = {"from": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "to": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
    while (i := sql.find("$__timeFilter(")) >= 0:
        depth, j = 0, i + len("$__timeFilter")
        while True:  # find the closing parenthesis of the macro
            depth += {"(": 1, ")": -1}.get(sql[j], 0)
            if depth == 0:
                break
            j += 1
        column = sql[i + len("$__timeFilter("):j]
        sql = sql[:i] + f"{column} >= '{rfc['from']}' AND {column} <= '{rfc['to']}'" + sql[j + 1:]
    sql = sql.replace("$__timeFrom", f"'{rfc['from']}'").replace("$__timeTo", f"'{rfc['to']}'")
    assert "$__" not in sql, f"unexpanded macro in {sql}"
    return VAR_RE.sub(lambda m: variables[m.group(1) or m.group(2)], sql)


def variable_settings(dash: dict, con: duckdb.DuckDBPyConnection) -> list[dict[str, str]]:
    """Defaults first, then one specific department and province (and every choice of custom variables)."""
    defaults: dict[str, str] = {}
    for var in dash["templating"]["list"]:
        if var.get("includeAll"):
            defaults[var["name"]] = var["allValue"]
        elif var["type"] == "custom":
            defaults[var["name"]] = var["current"]["value"]
        else:  # a query variable without "All" defaults to its first value
            rows = con.execute(expand(var["query"], defaults, "now-1d")).fetchall()
            assert rows, f"variable {var['name']} has no values"
            defaults[var["name"]] = str(rows[0][0])
    settings = [defaults]
    names = {v["name"] for v in dash["templating"]["list"]}
    if "department" in names:
        department, province = con.execute(
            "SELECT department, min(province) FROM marts.dim_districts GROUP BY department ORDER BY department LIMIT 1"
        ).fetchone()
        settings.append({**defaults, "department": department, "province": province})
    for var in dash["templating"]["list"]:
        if var["type"] == "custom":
            settings += [{**defaults, var["name"]: o["value"]} for o in var["options"][1:]]
    return settings


def run_dashboard_queries(db: Path) -> dict[tuple[str, str], list[tuple[dict, list[str], int]]]:
    out: dict[tuple[str, str], list] = {}
    with duckdb.connect(str(db), read_only=True) as con:
        for path in DASHBOARDS:
            dash = load(path)
            for setting in variable_settings(dash, con):
                for var in dash["templating"]["list"]:
                    if var["type"] == "query":
                        assert con.execute(expand(var["query"], setting, "now-1d")).fetchall(), (path.name, var["name"])
                for p in panels_of(dash):
                    for t in p.get("targets", []):
                        rel = con.execute(expand(t["rawSql"], setting, dash["time"]["from"]))
                        columns = [d[0] for d in rel.description]
                        rows = rel.fetchall()
                        out.setdefault((path.name, p["title"]), []).append((setting, columns, rows))
    return out


def test_every_panel_query_runs_and_returns_its_fields(serving_db: Path) -> None:
    results = run_dashboard_queries(serving_db)
    for path in DASHBOARDS:
        for p in panels_of(load(path)):
            meta = p.get("brecha", {})
            for setting, columns, rows in results[(path.name, p["title"])]:
                where = f"{path.name} / '{p['title']}' with {setting}"
                missing = set(meta.get("fields", [])) - set(columns)
                assert not missing, f"{where}: columns {missing} missing from {columns}"
                filtered = setting.get("department", "__all") != "__all"
                if not meta.get("may_be_empty") and not (filtered and meta.get("empty_when_filtered")):
                    assert rows, f"{where}: no rows"
                if p["type"] == "geomap":
                    values = [dict(zip(columns, r, strict=True)) for r in rows]
                    for field, (lo, hi) in PERU.items():
                        assert all(lo <= v[field] <= hi for v in values), f"{where}: {field} outside Peru"
                    assert any(v["measure"] is not None for v in values), f"{where}: measure all null"
                if p["type"] == "stat":
                    assert len(rows) == 1 and rows[0][columns.index(meta["fields"][0])] is not None, where


def test_filters_narrow_the_map_to_the_chosen_department(serving_db: Path) -> None:
    results = run_dashboard_queries(serving_db)
    (all_setting, columns, all_rows), (dep_setting, _, dep_rows) = results[("district_map.json", "Districts: ${measure}")][:2]
    dept_col, prov_col = columns.index("department"), columns.index("province")
    with duckdb.connect(str(serving_db), read_only=True) as con:
        total = con.execute("SELECT count(*) FROM marts.mart_district_priorities WHERE latitude IS NOT NULL").fetchone()[0]
    assert len(all_rows) == total
    assert 0 < len(dep_rows) < len(all_rows)
    assert {(r[dept_col], r[prov_col]) for r in dep_rows} == {(dep_setting["department"], dep_setting["province"])}


def test_dashboard_queries_run_in_the_plugins_duckdb(serving_db: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The plugin embeds DuckDB 1.4.4: the serving copy must open read-only there and every query must run."""
    venv = tmp_path_factory.mktemp("duckdb144")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "duckdb==1.4.4"], capture_output=True, text=True)
    if pip.returncode != 0:
        pytest.skip(f"could not install duckdb==1.4.4 from the package registry: {pip.stderr.strip()[-300:]}")
    import site

    # the side venv's duckdb comes first; pytest and yaml (imported by this module) from the project's venv
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
sys.path += {site.getsitepackages()!r}
import duckdb, test_grafana
assert duckdb.__version__ == "1.4.4", duckdb.__version__
results = test_grafana.run_dashboard_queries(__import__("pathlib").Path({str(serving_db)!r}))
print(len(results))
"""
    done = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip()) == sum(len([p for p in panels_of(load(d)) if p.get("targets")]) for d in DASHBOARDS)
