"""Grafana provisioning and dashboards: structure, and every query as Grafana would send it, run on a published copy.

No Grafana server runs here (none installs on these machines). Template variables are expanded by Grafana's own
code in node (grafana/harness/expand.js: @grafana/scenes' interpolation, @grafana/plugin-ui's SqlDatasource as the
DuckDB plugin uses it), in many dashboard states and under both plugin behaviours (0.4.1 with the ''->' clean-up,
0.4.3+ without); the backend's SQL macros are expanded as grafana-plugin-sdk-go's sqlutil and the plugin's Go code
do; the serving copy is opened as the plugin opens it (path DSN options, initSql).
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
from urllib.parse import parse_qsl, urlsplit

import duckdb
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
GRAFANA = REPO / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").rglob("*.json"))  # Spanish at the top, English under en/
SPANISH = [p for p in DASHBOARDS if p.parent.name == "dashboards"]
BUILTIN_VARS = {
    "__interval",
    "__interval_ms",
    "__range",
    "__timeFilter",
    "__timeFrom",
    "__timeTo",
    "__all",
    "__unixEpochFilter",
    "__dashboard",
    "__org",
    "__user",
    "__from",
    "__to",
}
VAR_RE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)")
PERU = {"latitude": (-18.5, 0.1), "longitude": (-81.5, -68.5)}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def datasource() -> dict:
    return yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "brecha.yaml").read_text())["datasources"][0]


def compose() -> dict:
    return yaml.safe_load((GRAFANA / "docker-compose.yml").read_text())["services"]["grafana"]


def dsn(path: str) -> tuple[str, dict[str, str]]:
    """What the plugin hands DuckDB: the path plus '?custom_user_agent=grafana' (or '&...'), which duckdb-go splits
    with url.Parse into the file and its config options (pkg/plugin/duckdb_driver.go, duckdb-go connector.go)."""
    full = path.strip() + ("&" if "?" in path else "?") + "custom_user_agent=grafana"
    parsed = urlsplit(full)
    return parsed.path, dict(parse_qsl(parsed.query))


def panels_of(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows
    return out


# --- static checks --------------------------------------------------------------------------------------------


def builder():
    sys.path.insert(0, str(GRAFANA))
    try:
        import build_dashboards
    finally:
        sys.path.remove(str(GRAFANA))
    return build_dashboards


def name_of(path: Path) -> str:
    """A dashboard's path under grafana/dashboards: ``district_map.json`` (Spanish) or ``en/district_map.json``."""
    return path.relative_to(GRAFANA / "dashboards").as_posix()


def test_four_dashboards_in_two_languages_generated_from_the_script() -> None:
    rendered = builder().render()
    assert sorted(rendered) == sorted(name_of(p) for p in DASHBOARDS) and len(SPANISH) == 4 and len(DASHBOARDS) == 8
    assert {name_of(p) for p in DASHBOARDS} == {p.name for p in SPANISH} | {f"en/{p.name}" for p in SPANISH}
    for path in DASHBOARDS:
        assert path.read_text() == rendered[name_of(path)], f"{path} differs from grafana/build_dashboards.py: rerun it"


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
            assert p["datasource"]["uid"] == ds["uid"] and p["datasource"]["type"] == ds["type"], (
                path.name,
                p["title"],
            )
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


def reader_texts(dash: dict) -> list[str]:
    """Every text a reader of the dashboard sees: titles, descriptions, variable and option labels, column labels."""
    texts = [dash["title"], dash["description"], *(link["title"] for link in dash["links"])]
    for p in panels_of(dash):
        texts += [p["title"], p.get("description", "")]
        texts += [
            prop["value"]
            for o in p["fieldConfig"]["overrides"]
            for prop in o["properties"]
            if prop["id"] == "displayName"
        ]
        texts += [layer["name"] for layer in p["options"].get("layers", [])]
    for v in dash["templating"]["list"]:
        texts += [v["label"], *(o["text"] for o in v.get("options", []))]
    return [t for t in texts if t]


ENGLISH_WORDS = re.compile(
    r"\b(the|of|and|with|per|by|without|where|districts?|households?|share|rank|run|model)\b", re.IGNORECASE
)


def test_spanish_by_default_with_english_as_a_second_set() -> None:
    """The default set (grafana/dashboards/*.json, the home dashboard) reads in Spanish; en/ holds the same dashboards
    (same SQL, layout and options) in English under their own uids; every text differs between the two."""
    for es_path in SPANISH:
        es, en = load(es_path), load(es_path.parent / "en" / es_path.name)
        assert en["uid"] == f"{es['uid']}-en" and "es" in es["tags"] and "en" in en["tags"]
        assert [p["gridPos"] for p in panels_of(es)] == [p["gridPos"] for p in panels_of(en)]
        for a, b in (
            [(es["title"], en["title"]), (es["description"], en["description"])]
            + [(p["title"], q["title"]) for p, q in zip(panels_of(es), panels_of(en), strict=True)]
            + [
                (v["label"], w["label"])
                for v, w in zip(es["templating"]["list"], en["templating"]["list"], strict=True)
            ]
        ):
            assert a != b, f"{es_path.name}: {a!r} is not translated"
        english = [t for t in reader_texts(es) if ENGLISH_WORDS.search(t.replace("${", "{"))]
        assert not english, f"{es_path.name}: English left in the Spanish set: {english}"


def test_one_interval_level_everywhere_printed_next_to_it() -> None:
    """Every interval or band a reader is told about is the 90 % one, and says so within the same phrase."""
    for path in DASHBOARDS:
        for text in reader_texts(load(path)):
            for m in re.finditer(r"interval|intervalo|band|banda", text, re.IGNORECASE):
                near = text[max(0, m.start() - 40) : m.end() + 40]
                assert "90 %" in near and not re.search(r"\b(80|95|99) ?%", text), f"{name_of(path)}: {text!r}"


def test_every_feature_of_the_models_has_a_label() -> None:
    from brecha_ml.features import FEATURE_NAMES

    labels = builder().FEATURE_LABELS
    assert not set(FEATURE_NAMES) - set(labels), f"features without a label: {set(FEATURE_NAMES) - set(labels)}"
    for es, en in labels.values():
        assert "'" not in es + en and es != en


def test_segment_and_cluster_words_have_their_spanish() -> None:
    from brecha_ml.segments import SEGMENT_FEATURES

    build = builder()
    words = {w for pair in SEGMENT_FEATURES.values() for w in pair}
    assert not words - set(build.SEGMENT_WORDS), f"segment words without Spanish: {words - set(build.SEGMENT_WORDS)}"
    assert all("'" not in w for w in build.SEGMENT_WORDS.values())


def test_readers_see_labels_not_column_names(serving_db: Path, harness: Harness) -> None:
    """Every column a panel returns is shown under a label (a displayName override), never under its raw name
    (``gap_pp``, ``lower_90``, ``segment_label``); stats show their title, bar gauges and bar charts the values of
    the columns their options name; feature names are shown as labels."""
    from brecha_ml.features import FEATURE_NAMES

    build = builder()
    unlabelled = build.unlabelled
    english_values = [*build.SEGMENT_WORDS, *build.CLUSTER_WORDS]
    checked = 0
    for q in run_all(serving_db, harness):
        if not q["panel"] or q["error"] or q["panel"]["type"] == "stat":
            continue
        p = q["panel"]
        labels = {
            o["matcher"]["options"]: prop["value"]
            for o in p["fieldConfig"]["overrides"]
            for prop in o["properties"]
            if o["matcher"]["id"] == "byName" and prop["id"] == "displayName"
        }
        for column, _ in q["columns"]:
            if column in unlabelled(p):
                continue
            assert column in labels and labels[column] != column, (
                f"{q['dashboard']} / {p['title']}: column {column} is shown under its raw name"
            )
            checked += 1
        columns = [c for c, _ in q["columns"]]
        if "feature" in columns:
            shown = {r[columns.index("feature")] for r in q["rows"]}
            assert not shown & set(FEATURE_NAMES), f"{q['dashboard']} / {p['title']}: raw feature names {shown}"
        if not q["dashboard"].startswith("en/"):  # values written by the pipeline in English, shown in Spanish
            for column in {"segment_label", "segment_profile", "internet_cluster"} & set(columns):
                values = " ".join(str(r[columns.index(column)]) for r in q["rows"])
                english = [w for w in [*english_values, "districts"] if re.search(rf"\b{w}\b", values)]
                assert not english, f"{q['dashboard']} / {p['title']}: {column} shows {english}"
    assert checked > 500


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


def test_provisioning_points_read_only_at_the_mounted_serving_copy() -> None:
    ds, svc = datasource(), compose()
    assert ds["editable"] is False and "readOnly" not in ds["jsonData"]  # the plugin has no such setting
    mounts = {}  # container path -> the whole mount (sources may hold ':' in ${VAR:?message})
    for m in svc["volumes"]:
        parts = m.rsplit(":", 2)
        mounts[parts[-2] if parts[-1] in ("ro", "rw") else parts[-1]] = m
    serving_mount = mounts["/var/lib/brecha/serving"]
    assert serving_mount.endswith(":ro") and "BRECHA_HOME" in serving_mount and "/serving:" in serving_mount
    file, options = dsn(ds["jsonData"]["path"])
    assert Path(file).parent == Path("/var/lib/brecha/serving")
    assert Path(file).name == "brecha.duckdb"  # = paths().serving_db.name
    assert options["access_mode"] == "read_only" and options["enable_external_access"] == "false"
    assert options["lock_configuration"] == "true"  # in the path: initSql does not run on a reopen
    assert (
        "current_setting('lock_configuration')" in ds["jsonData"]["initSql"]
    )  # checks it (tests/test_grafana_lockdown.py)
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "brecha.yaml").read_text())["providers"]
    es, en = providers  # Spanish (the default, the home dashboard) and English, each in its own folder
    assert mounts[es["options"]["path"]].startswith("./dashboards:")
    assert mounts[en["options"]["path"]].startswith("./dashboards/en:")
    assert es["folderUid"] != en["folderUid"] and es["folder"] != en["folder"]
    # Grafana's file provider walks sub-folders: the English set inside the Spanish mount is hidden by an empty tmpfs
    assert f"{es['options']['path']}/en" in svc["tmpfs"]
    assert (
        svc["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == f"{es['options']['path']}/district_map.json"
    )
    assert mounts["/etc/grafana/provisioning"].startswith("./provisioning:")
    env = svc["environment"]
    assert "DUCKDB_PLUGIN_VERSION:-0.4.5}" in env["GF_PLUGINS_PREINSTALL_SYNC"]  # embeds DuckDB 1.5.4
    assert re.fullmatch(r"grafana/grafana:\$\{GRAFANA_VERSION:-\d+\.\d+\.\d+\}-ubuntu", svc["image"])
    assert env["GF_PLUGINS_ALLOW_LOADING_UNSIGNED_PLUGINS"] == "motherduck-duckdb-datasource"
    assert env["GF_PLUGINS_PREINSTALL_SYNC"].startswith("motherduck-duckdb-datasource@")
    assert (
        env["GF_AUTH_ANONYMOUS_ENABLED"] == "${GRAFANA_ANONYMOUS:-false}"
        and env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    )
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")  # from the environment only


# --- Grafana's own expansion, the plugin's macros and connection -------------------------------------------------

HARNESS = GRAFANA / "harness"
PLUGIN_DUCKDB = "1.5.4"  # embedded by plugin 0.4.5 (go.mod: duckdb-go v2.10504.0)
APOSTROPHE = {"department": "O'HIGGINS", "province": "D'ARCY", "run_id": "run'x"}
BEHAVIOURS = ("v041", "v043")  # plugin 0.4.1: plugin-ui's applyTemplateVariables with clean(); 0.4.3+: without
NUMERIC = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
)


class Harness:
    """One node process for the whole session; one JSON line per dashboard state."""

    def __init__(self) -> None:
        if not (HARNESS / "node_modules" / "@grafana" / "scenes").is_dir():
            pytest.fail(
                f"{HARNESS}/node_modules is missing: run `make test` (it runs `npm ci` there) or "
                f"`cd {HARNESS} && npm ci`"
            )
        self.proc = subprocess.Popen(
            ["node", str(HARNESS / "expand.js")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.requests = 0

    def expand(self, dash: dict, values: dict, options: dict) -> dict:
        req = {"dashboard": dash, "values": values, "options": options, "from": dash["time"]["from"], "to": "now"}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        self.requests += 1
        assert "error" not in answer, answer.get("error")
        return answer

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="session")
def harness():
    h = Harness()
    yield h
    h.close()


def time_range(time_from: str) -> tuple[datetime, datetime]:
    now = datetime.now(UTC).replace(microsecond=0)
    amount, unit = re.fullmatch(r"now-(\d+)([dy])", time_from).groups()
    return now - timedelta(days=int(amount) * (365 if unit == "y" else 1)), now


def macros(sql: str, time_from: str) -> str:
    """The backend's macros: grafana-plugin-sdk-go data/sqlutil (v0.274.0, the plugin's) macroTimeFilter
    (`col >= 'RFC3339' AND col <= 'RFC3339'`), $__interval(_ms), and the plugin's own argument-less
    $__timeFrom / $__timeTo (`'RFC3339'`, pkg/plugin/duckdb_driver.go)."""
    start, end = (t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in time_range(time_from))
    while (i := sql.find("$__timeFilter(")) >= 0:
        depth, j = 0, i + len("$__timeFilter")
        while True:  # the closing parenthesis of the macro (sqlutil's parseArgs counts nesting the same way)
            depth += {"(": 1, ")": -1}.get(sql[j], 0)
            if depth == 0:
                break
            j += 1
        column = sql[i + len("$__timeFilter(") : j]
        sql = sql[:i] + f"{column} >= '{start}' AND {column} <= '{end}'" + sql[j + 1 :]
    sql = re.sub(r"\$__timeFrom\b(\(\))?", f"'{start}'", sql)
    sql = re.sub(r"\$__timeTo\b(\(\))?", f"'{end}'", sql)
    sql = re.sub(r"\$__interval_ms\b", "3600000", sql)
    sql = re.sub(r"\$__interval\b", "1h", sql)
    assert "$__" not in sql and "${" not in sql, f"unexpanded macro or variable in {sql}"
    return sql


_CONNECTIONS: dict[Path, duckdb.DuckDBPyConnection] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_plugin_connections():
    """Close the plugin-style connections when this module is done. Each keeps its file's DuckDB instance open with
    the plugin's settings (access_mode, lock_configuration, ...), and DuckDB refuses any other connection to that
    file from this process with other settings ("Can't open a connection to same database file with a different
    configuration"): tests run after these (test_api's on the real run's serving copy) must be able to open it."""
    yield
    while _CONNECTIONS:
        _CONNECTIONS.popitem()[1].close()


def plugin_connection(db: Path) -> duckdb.DuckDBPyConnection:
    """Open ``db`` as the provisioned datasource makes the plugin open it: DSN options, then initSql (once per
    file: within one process DuckDB reuses the open instance, whose configuration initSql has locked)."""
    if db not in _CONNECTIONS:
        ds = datasource()["jsonData"]
        _, options = dsn(ds["path"])
        con = duckdb.connect(str(db), config=options)
        con.execute(ds["initSql"])
        _CONNECTIONS[db] = con
    return _CONNECTIONS[db]


def states(dash: dict, harness: Harness, con: duckdb.DuckDBPyConnection) -> list[tuple[str, dict, dict]]:
    """(name, values, options) for many dashboard states. Query variables' options come from running their
    expanded queries, as Grafana does; the chosen values follow from them."""
    variables = dash["templating"]["list"]

    def options_for(values: dict) -> dict:
        options: dict[str, list[str]] = {}
        for var in variables:
            if var["type"] == "query":
                sql = harness.expand(dash, values, options)["variables"][var["name"]]
                options[var["name"]] = [str(r[0]) for r in con.execute(macros(sql, "now-1d")).fetchall()]
        return options

    base: dict[str, str] = {}
    for var in variables:
        if var.get("includeAll"):
            base[var["name"]] = "$__all"
        elif var["type"] == "custom":
            base[var["name"]] = var["current"]["value"]
    opts = options_for(base)
    for var in variables:  # a query variable without "All" starts at its first option
        if var["type"] == "query" and not var.get("includeAll"):
            assert opts[var["name"]], f"{var['name']}: its query returns no option"
            base[var["name"]] = opts[var["name"]][0]
    out = [("defaults", base, opts)]
    custom = custom_options(dash, harness)
    names = {v["name"] for v in variables}
    if "department" in names:
        for pick in (0, -1):  # the first and the last department, alone and with one of its provinces
            dept = {**base, "department": opts["department"][pick]}
            dept_opts = options_for(dept)
            out.append((f"department {dept['department']}", dept, dept_opts))
            if "province" in names:
                both = {**dept, "province": dept_opts["province"][pick]}
                out.append((f"{both['department']} / {both['province']}", both, dept_opts))
    if "run_id" in names:
        for run in opts["run_id"][1:3]:
            out.append((f"run {run}", {**base, "run_id": run}, opts))
    for name, parsed in custom.items():  # every option Grafana parses from the query, not the JSON's options array
        out += [(f"{name}={o['value']}", {**base, name: o["value"]}, opts) for o in parsed if o["value"] != base[name]]
    quoted = {k: v for k, v in APOSTROPHE.items() if k in names}
    if quoted:
        values = {**base, **quoted}
        out.append(("apostrophe", values, options_for(values)))
    return out


def custom_options(dash: dict, harness: Harness) -> dict[str, list[dict]]:
    """Each custom variable's options as Grafana lists them: @grafana/scenes' CustomVariable.getValueOptions parses
    the variable's ``query`` string (the harness answers them; the JSON's ``options`` array is not what Grafana shows)."""
    values = {v["name"]: v["current"]["value"] for v in dash["templating"]["list"] if v["type"] == "custom"}
    return harness.expand(dash, values, {})["custom"]


def test_custom_variable_options_parsed_by_grafana_are_the_intended_ones(harness: Harness) -> None:
    """Grafana splits a custom variable's query on every unescaped comma, then on ' : ': the options it parses must be
    the ones the JSON saves (same labels, same values, same order), each value a column name, the default among them."""
    checked = 0
    for path in DASHBOARDS:
        dash = load(path)
        parsed = custom_options(dash, harness)
        for var in dash["templating"]["list"]:
            if var["type"] != "custom":
                continue
            where = f"{name_of(path)} / {var['name']}"
            saved = [{"label": o["text"], "value": o["value"]} for o in var["options"]]
            assert parsed[var["name"]] == saved, (
                f"{where}: Grafana parses {parsed[var['name']]}, the JSON saves {saved}"
            )
            assert all(re.fullmatch(r"[a-z_][a-z0-9_]*", o["value"]) for o in parsed[var["name"]]), where
            assert {"label": var["current"]["text"], "value": var["current"]["value"]} in parsed[var["name"]], where
            checked += 1
    assert checked >= 1


def expanded_queries(db: Path, harness: Harness) -> list[dict]:
    """Every variable and panel query of every dashboard, expanded in every state under both behaviours."""
    out = []
    con = plugin_connection(db)
    for path in DASHBOARDS:
        dash = load(path)
        meta = {p["title"]: p for p in panels_of(dash)}
        for name, values, options in states(dash, harness, con):
            answer = harness.expand(dash, values, options)
            for var, sql in answer["variables"].items():
                for b in BEHAVIOURS:  # variable queries: interpolateVariable in every version, no clean()
                    out.append(
                        {
                            "dashboard": name_of(path),
                            "state": name,
                            "behaviour": b,
                            "panel": None,
                            "variable": var,
                            "refId": None,
                            "sql": macros(sql, "now-1d"),
                        }
                    )
            for p in answer["panels"]:
                for b in BEHAVIOURS:
                    out.append(
                        {
                            "dashboard": name_of(path),
                            "state": name,
                            "behaviour": b,
                            "panel": meta[p["title"]],
                            "refId": p["refId"],
                            "values": values,
                            "sql": macros(p[b], dash["time"]["from"]),
                            "shown_title": p["shownTitle"],
                        }
                    )
    return out


_RESULTS: dict[Path, list[dict]] = {}


def run_all(db: Path, harness: Harness) -> list[dict]:
    """Run every expanded query on ``db`` opened the plugin's way (cached per copy for the session). The copy is
    read-only, so a text both behaviours (or several states) expand to alike runs once and its answer is shared."""
    if db not in _RESULTS:
        results = []
        con = plugin_connection(db)
        answers: dict[str, dict] = {}
        for q in expanded_queries(db, harness):
            if q["sql"] not in answers:
                try:
                    rel = con.execute(q["sql"])
                    answers[q["sql"]] = {
                        "columns": [(d[0], str(d[1])) for d in rel.description],
                        "rows": rel.fetchall(),
                        "error": None,
                    }
                except duckdb.Error as err:
                    answers[q["sql"]] = {"error": str(err).splitlines()[0]}
            q.update(answers[q["sql"]])
            results.append(q)
        _RESULTS[db] = results
    return _RESULTS[db]


def check_results(results: list[dict], *, real: bool = False) -> None:
    """The fields each panel reads exist, with numbers where the panel needs them; the two plugin behaviours
    send the same SQL (no '' survives to be corrupted); a value with an apostrophe works from 0.4.3 on."""
    by_key: dict[tuple, dict] = {}
    for q in results:
        where = (
            f"{q['dashboard']} / {q['panel']['title'] if q['panel'] else 'variable ' + q['variable']} "
            f"[{q['state']}, {q['behaviour']}]"
        )
        by_key[
            (
                q["dashboard"],
                q["state"],
                q["panel"]["title"] if q["panel"] else q["variable"],
                q["refId"],
                q["behaviour"],
            )
        ] = q
        if q["state"] == "apostrophe" and q["behaviour"] == "v041":
            continue  # 0.4.1 turns 'O''HIGGINS' into 'O'HIGGINS': the reason 0.4.5 is pinned (asserted below)
        assert q["error"] is None, f"{where}: {q['error']}\n{q['sql']}"
        if q["panel"] is None:
            continue
        # the title as Grafana shows it: a variable in it must read as a value ("All" would list every option)
        assert not re.search(r"[${}]", q["shown_title"]) and len(q["shown_title"]) < 140, f"{where}: {q['shown_title']}"
        meta = q["panel"].get("brecha", {})
        types = dict(q["columns"])
        missing = set(meta.get("fields", [])) - set(types)
        assert not missing, f"{where}: columns {missing} missing from {list(types)}"
        for field in meta.get("numeric", []):
            assert types[field].startswith(NUMERIC), f"{where}: {field} is {types[field]}, not a number"
        if q["panel"]["type"] == "stat" and q["rows"]:
            assert len(q["rows"]) == 1, where
        if q["panel"]["type"] == "geomap":  # each query's layer draws columns it returns, on the colour scale
            layer = next(la for la in q["panel"]["options"]["layers"] if la["filterData"]["options"] == q["refId"])
            scale, style = q["panel"]["fieldConfig"]["defaults"], layer["config"]["style"]
            drawn = {
                layer["location"]["latitude"],
                layer["location"]["longitude"],
                style["color"]["field"],
                *([style["size"]["field"]] if "field" in style["size"] else []),
            }
            assert drawn <= set(types), f"{where}: the layer draws {drawn - set(types)}, not in {list(types)}"
            colour = [r[list(types).index(layer["config"]["style"]["color"]["field"])] for r in q["rows"]]
            assert all(scale["min"] <= v <= scale["max"] for v in colour if v is not None), f"{where}: colour off scale"
        if q["panel"]["type"] == "geomap" and q["rows"]:
            rows = [dict(zip(types, r, strict=True)) for r in q["rows"]]
            for field, (lo, hi) in PERU.items():
                assert all(lo <= r[field] <= hi for r in rows), f"{where}: {field} outside Peru"
            shown = [r["need_percentile"] for r in rows]
            assert shown == sorted(shown, key=lambda v: (v is not None, v or 0)), f"{where}: worst not drawn last"
        if q["state"] == "defaults" and not real and not meta.get("may_be_empty"):
            assert q["rows"], f"{where}: no rows"
    for (dash, state, name, ref, behaviour), q in by_key.items():
        if behaviour == "v041" and state != "apostrophe":
            assert q["sql"] == by_key[(dash, state, name, ref, "v043")]["sql"], (
                f"{dash} / {name} [{state}]: 0.4.1 differs"
            )
    broken = [q for q in results if q["state"] == "apostrophe" and q["behaviour"] == "v041" and q["error"]]
    assert broken, "plugin 0.4.1's clean() should break a quoted apostrophe"


@pytest.fixture(scope="module")
def serving_db(session_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Publish a copy of the trained, clustered synthetic warehouse in a home of our own (the shared one stays)."""
    return _publish_copy(session_home, tmp_path_factory.mktemp("grafana_home"))


def _publish_copy(home: Path, own: Path) -> Path:
    from conftest import own_home

    from brecha.warehouse import publish

    with own_home(home, own):
        return publish.publish().serving_db  # the session fixtures ran (and recorded) every gate


def test_every_query_expanded_by_grafana_runs_in_every_state_and_behaviour(serving_db: Path, harness: Harness) -> None:
    results = run_all(serving_db, harness)
    check_results(results)
    states_run = {(q["dashboard"], q["state"]) for q in results}
    assert len(states_run) >= 30 and len(results) >= 500, (len(states_run), len(results))
    # every option Grafana parses from the "Colour by" query gives a numeric measure with values, in both languages
    for dash in ("district_map.json", "en/district_map.json"):
        parsed = custom_options(load(GRAFANA / "dashboards" / dash), harness)["measure"]
        measured = {
            q["state"]
            for q in results
            if q["dashboard"] == dash
            and q["panel"]
            and q["panel"]["type"] == "geomap"
            and q["behaviour"] == "v043"
            and q["refId"] == "A"
            and any(r[[c for c, _ in q["columns"]].index("measure")] is not None for r in q["rows"])
        }
        assert {"defaults"} | {f"measure={o['value']}" for o in parsed[1:]} <= measured, (dash, measured)


def map_rows(results: list[dict], state: str, dashboard: str = "district_map.json") -> dict[str, list[dict]]:
    """The map's rows in one state, per query (A: districts with a polygon, B: without), as dicts."""
    out = {}
    for q in results:
        if (
            q["dashboard"] == dashboard
            and q["state"] == state
            and q["behaviour"] == "v043"
            and q["panel"]
            and q["panel"]["type"] == "geomap"
        ):
            out[q["refId"]] = [dict(zip([c for c, _ in q["columns"]], r, strict=True)) for r in q["rows"]]
    assert sorted(out) == ["A", "B"], f"{dashboard} [{state}]: map queries {sorted(out)}"
    return out


def check_every_district_on_the_map(results: list[dict], con: duckdb.DuckDBPyConnection) -> None:
    """Every district of the reference (marts.dim_districts) is in the map's result, once: a circle (query A) where
    the map's district source (build_dashboards.MAP_PROFILE) has its polygon, else a triangle (query B) with a
    visible note, in both languages; the stat above the map counts the triangles."""
    reference = {u for (u,) in con.execute("SELECT ubigeo FROM marts.dim_districts").fetchall()}
    build = builder()
    shapes = dict(con.execute(f"SELECT ubigeo, map_shape FROM ({build.MAP_PROFILE})").fetchall())
    assert set(shapes.values()) <= {"polygon", "marker"} and "polygon" in shapes.values()
    without = con.execute(build.DISTRICTS_WITHOUT_POLYGON).fetchone()[0]
    for dash in ("district_map.json", "en/district_map.json"):
        rows = map_rows(results, "defaults", dash)
        drawn = [r["ubigeo"] for rs in rows.values() for r in rs]
        assert len(drawn) == len(set(drawn)), f"{dash}: a district drawn twice"
        missing = sorted(reference - set(drawn))
        assert not missing, f"{dash}: {len(missing)} districts of the reference not on the map, e.g. {missing[:5]}"
        assert {r["ubigeo"] for r in rows["B"]} == {u for u, shape in shapes.items() if shape == "marker"}
        assert all(r["map_note"] for r in rows["B"]) and not any(r["map_note"] for r in rows["A"])
        assert len(rows["B"]) == without
        stat = next(
            q
            for q in results
            if q["dashboard"] == dash
            and q["state"] == "defaults"
            and q["panel"]
            and "districts_without_polygon" in q["panel"]["brecha"]["fields"]
        )
        assert stat["rows"] == [(without,)]


def test_every_district_of_the_reference_is_on_the_map(serving_db: Path, harness: Harness) -> None:
    con = plugin_connection(serving_db)
    check_every_district_on_the_map(run_all(serving_db, harness), con)
    # a district of the reference without a polygon of its own or of an older code is a marker on the map
    shapes = dict(con.execute(f"SELECT ubigeo, map_shape FROM ({builder().MAP_PROFILE})").fetchall())
    no_boundary = {
        u for (u,) in con.execute("SELECT ubigeo FROM marts.dim_districts WHERE NOT has_boundary").fetchall()
    }
    assert no_boundary and no_boundary <= {u for u, shape in shapes.items() if shape == "marker"}


def test_filters_narrow_the_map_to_the_chosen_department(serving_db: Path, harness: Harness) -> None:
    results = run_all(serving_db, harness)
    total = plugin_connection(serving_db).execute("SELECT count(*) FROM marts.mart_district_profile").fetchone()[0]
    assert sum(len(rows) for rows in map_rows(results, "defaults").values()) == total
    both_state = next(q["state"] for q in results if q["dashboard"] == "district_map.json" and " / " in q["state"])
    both = [r for rows in map_rows(results, both_state).values() for r in rows]
    assert 0 < len(both) < total and len({(r["department"], r["province"]) for r in both}) == 1
    assert both_state.endswith(f"{both[0]['department']} / {both[0]['province']}")
    assert all(rows == [] for rows in map_rows(results, "apostrophe").values())


def test_map_size_is_people_without_internet(serving_db: Path, harness: Harness) -> None:
    results = run_all(serving_db, harness)
    q = next(
        q
        for q in results
        if q["dashboard"] == "district_map.json"
        and q["panel"]
        and q["panel"]["type"] == "geomap"
        and q["state"] == "defaults"
    )
    circles, triangles = q["panel"]["options"]["layers"]
    assert (circles["config"]["style"]["size"]["field"], circles["config"]["style"]["color"]["field"]) == (
        "people_without_internet",
        "need_percentile",
    )
    assert triangles["config"]["style"]["color"]["field"] == "need_percentile"
    assert triangles["config"]["style"]["symbol"]["fixed"].endswith("triangle.svg")
    shown = map_rows(results, "defaults")
    for r in shown["A"] + shown["B"]:
        share = r["internet_pct"] if r["internet_pct"] is not None else r["predicted_internet_pct"]
        if r["population"] is not None and share is not None:
            assert abs(r["people_without_internet"] - r["population"] * (100 - share) / 100) <= 0.5
    rows = shown["A"]
    worst = max(r["need_percentile"] for r in rows if r["need_percentile"] is not None)
    assert rows[-1]["need_percentile"] == worst > 80  # the worst district is drawn last, on top


def tables_read(sql: str, con: duckdb.DuckDBPyConnection) -> set[str]:
    """The ``schema.table`` names a query reads, from DuckDB's own parse tree (``json_serialize_sql``): every
    base table in every FROM, JOIN and subquery, without the query's CTEs. An unqualified name that is not a
    CTE is kept as it is (and matches no dbt node)."""
    tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    assert not tree["error"], f"DuckDB cannot parse {sql!r}: {tree.get('error_message')}"
    tables: set[tuple[str, str]] = set()
    ctes: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "BASE_TABLE":
                tables.add((node["schema_name"], node["table_name"]))
            for entry in (node.get("cte_map") or {}).get("map", []):
                ctes.add(entry["key"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree["statements"])
    return {f"{schema}.{name}" if schema else name for schema, name in tables if schema or name not in ctes}


def test_exposures_declare_what_each_dashboard_reads(serving_db: Path, harness: Harness) -> None:
    """Each dashboard's exposure in dbt (exposures.yml, as dbt's manifest resolves it) depends on exactly the
    models and sources that the dashboard's queries read, once Grafana has expanded them."""
    from brecha.warehouse.dbt import parse_project

    manifest = json.loads(parse_project().read_text())
    relation = {
        f"{n['schema']}.{n.get('alias') or n['name']}": uid
        for uid, n in manifest["nodes"].items()
        if n["resource_type"] in ("model", "seed", "snapshot")
    }
    relation |= {f"{s['schema']}.{s.get('identifier') or s['name']}": uid for uid, s in manifest["sources"].items()}
    exposures = {Path(e["url"]).name: e for e in manifest["exposures"].values() if e["type"] == "dashboard"}
    assert sorted(exposures) == [p.name for p in SPANISH], "one dashboard exposure per dashboard (url)"
    assert all((REPO / e["url"]).is_file() for e in exposures.values())

    con = duckdb.connect()
    read: dict[str, set[str]] = {p.name: set() for p in SPANISH}  # a dashboard and its English copy together
    for q in run_all(serving_db, harness):
        if q["error"] is None:  # plugin 0.4.1 breaks a quoted apostrophe on purpose (checked by check_results)
            read[Path(q["dashboard"]).name] |= tables_read(q["sql"], con)
    for name, tables in read.items():
        unknown = sorted(t for t in tables if t not in relation)
        assert not unknown, f"{name} reads {unknown}, which no dbt model or source declares"
        declared = set(exposures[name]["depends_on"]["nodes"])
        used = {relation[t] for t in tables}
        assert declared == used, (
            f"exposure {exposures[name]['name']}: declared but not read "
            f"{sorted(declared - used)}, read but not declared {sorted(used - declared)}"
        )


def test_viewers_sql_cannot_read_server_files_but_marts_read(serving_db: Path) -> None:
    """The datasource's DSN options and initSql, as a non-root user on a 0444 file: marts read, files do not,
    the settings cannot be undone, and today's provisioning (no DSN options) cannot open the file at all."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="brecha-plugin-", dir="/tmp") as tmp:
        _check_viewers_sql(serving_db, Path(tmp))


def _check_viewers_sql(serving_db: Path, work: Path) -> None:
    import os

    db = work / "brecha.duckdb"
    shutil.copyfile(serving_db, db)
    os.chmod(db, 0o444)
    secret = work / "secret.csv"
    secret.write_text("password\nhunter2\n")
    os.chmod(work, 0o755)  # under /tmp (1777): the unprivileged user can reach the file
    os.chmod(secret, 0o644)
    ds = datasource()["jsonData"]
    code = f"""
import json, sys, duckdb
sys.path.insert(0, {str(Path(__file__).parent)!r})
from urllib.parse import parse_qsl, urlsplit
def dsn(path):
    full = path.strip() + ("&" if "?" in path else "?") + "custom_user_agent=grafana"
    p = urlsplit(full)
    return p.path, dict(parse_qsl(p.query))
out = {{}}
for name, path, init in [("old", "/var/lib/brecha/serving/brecha.duckdb", ""),
                         ("provisioned", {ds["path"]!r}, {ds["initSql"]!r})]:
    file, options = dsn(path.replace("/var/lib/brecha/serving", {str(work)!r}))
    try:
        con = duckdb.connect(file, config=options)
        if init:
            con.execute(init)
    except duckdb.Error as err:
        out[name] = {{"open": str(err).splitlines()[0]}}
        continue
    res = {{"open": None}}
    for q in ["SELECT count(*) FROM marts.dim_districts", "SELECT * FROM read_csv({str(secret)!r})",
              "SELECT * FROM read_text('/etc/passwd')", "ATTACH {str(work / "x.duckdb")!r} AS x",
              "COPY (SELECT 1) TO {str(work / "leak.csv")!r}", "SET enable_external_access = true",
              "SET lock_configuration = false", "INSTALL httpfs"]:
        try:
            res[q] = ["ok", con.execute(q).fetchall()]
        except duckdb.Error as err:
            res[q] = ["error", str(err).splitlines()[0]]
    out[name] = res
print(json.dumps(out))
"""
    cmd = [sys.executable, "-c", code]
    if os.geteuid() == 0:  # CI runs as root, which ignores file modes: run as nobody, as Grafana is not root
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert "Permission denied" in out["old"]["open"], out["old"]  # what today's provisioning would get
    res = out["provisioned"]
    assert res["open"] is None and res["SELECT count(*) FROM marts.dim_districts"][0] == "ok", res
    assert res["SELECT count(*) FROM marts.dim_districts"][1][0][0] > 0
    refused = {q: v for q, v in res.items() if q not in ("open", "SELECT count(*) FROM marts.dim_districts")}
    assert len(refused) == 7
    for q, (status, detail) in refused.items():
        assert status == "error", f"{q} should be refused: {detail}"
    assert not (work / "leak.csv").exists()


def plugin_duckdb_site() -> Path:
    """The plugin's DuckDB installed apart from the project's, in .venv/plugin-duckdb-<version>: `make test` puts
    it there (``make plugin-duckdb``, alongside npm) and keeps it, so a test run pays for it once per venv.
    The test imports it first on sys.path in a plain subprocess of this interpreter (and checks its version)."""
    site = Path(sys.prefix) / f"plugin-duckdb-{PLUGIN_DUCKDB}"
    assert (site / "duckdb").is_dir(), (
        f"{site} is missing: the Grafana plugin's DuckDB {PLUGIN_DUCKDB} is installed by `make plugin-duckdb` "
        "(run by `make test`); run the tests with `make test`, or `make plugin-duckdb` once before pytest"
    )
    return site


def test_dashboard_queries_run_in_the_plugins_duckdb(
    serving_db: Path, harness: Harness, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Plugin 0.4.5 embeds DuckDB 1.5.4: the serving copy opens there as the plugin opens it, and every expanded
    query of the default and one-department states runs."""
    site = plugin_duckdb_site()
    queries = [
        q["sql"] for q in run_all(serving_db, harness) if q["behaviour"] == "v043" and q["state"] != "apostrophe"
    ]
    job = tmp_path_factory.mktemp("plugin_duckdb") / "job.json"
    ds = datasource()["jsonData"]
    job.write_text(
        json.dumps(
            {
                "db": str(serving_db),
                "options": dsn(ds["path"])[1],
                "init": ds["initSql"],
                "queries": sorted(set(queries)),
            }
        )
    )
    code = f"""
import json, sys
sys.path.insert(0, {str(site)!r})
import duckdb
assert duckdb.__version__ == {PLUGIN_DUCKDB!r}, duckdb.__version__
job = json.load(open({str(job)!r}))
con = duckdb.connect(job["db"], config=job["options"])
con.execute(job["init"])
for q in job["queries"]:
    con.execute(q).fetchall()
print(len(job["queries"]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) == len(set(queries)) > 50


@pytest.fixture(scope="module")
def real_serving_db(real_run) -> Path:
    """The real extracts through the whole pipeline once (the session's real_run), published (skips when ../shared
    is absent)."""
    return real_run.home / "serving" / "brecha.duckdb"


def test_every_query_runs_on_the_real_extracts(real_serving_db: Path, harness: Harness) -> None:
    results = run_all(real_serving_db, harness)
    check_results(results, real=True)
    check_every_district_on_the_map(results, plugin_connection(real_serving_db))
    shown = map_rows(results, "defaults")
    assert len(shown["A"]) > 1000 and len(shown["B"]) >= 50  # the real boundary file lacks 50 districts or more
    assert {"050511", "150137"} <= {r["ubigeo"] for r in shown["B"]}  # Oronccoy, Santa Anita: a marker with its note
