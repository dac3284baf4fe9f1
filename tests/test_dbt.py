"""The dbt project: marts' grain and key facts checked against direct computations over the landed data.

The expected values are computed here, in pandas, straight from ``raw.*`` (restricted to the latest
successful batch, as staging is), never read back from the models under test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from conftest import settings_for

from brecha.core.db import session
from brecha.core.layouts import BOOKKEEPING_DDL, LAYOUTS, raw_table_ddl
from brecha.orchestrate import steps
from brecha.warehouse.selectors import PREDICTION_MARTS

MARTS = (
    "dim_districts",
    "fct_district_connectivity",
    "fct_department_adoption_yearly",
    "fct_fixed_connections_quarterly",
    "fct_department_mobile_lines",
    "mart_digital_divide_index",
)

LATEST_BATCH = """_source_sha256 in (
    select sha256 from raw._batch_files where batch_id = (select batch_id from raw._latest_ok_batch))"""


def connect(home: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(home / "brecha.duckdb"), read_only=True)


def raw(con: duckdb.DuckDBPyConnection, entity: str) -> pd.DataFrame:
    """Rows of one raw table that belong to the latest successful batch."""
    return con.sql(f"select * from raw.{entity} where {LATEST_BATCH}").df()


def mart(con: duckdb.DuckDBPyConnection, name: str) -> pd.DataFrame:
    return con.sql(f"select * from marts.{name}").df()


@pytest.fixture
def con(session_home: Path):
    """A read-only connection to the synthetic warehouse, closed after each test (dbt needs the file back)."""
    c = connect(session_home)
    yield c
    c.close()


# --- grain ---------------------------------------------------------------------------------------------------
def test_dim_districts_is_the_complete_reference(con):
    ref = raw(con, "inei__districts")
    complete = ref[ref.latitude.notna() & ref.longitude.notna()]
    dim = mart(con, "dim_districts")
    assert len(dim) == 1874 == len(complete)
    assert dim.ubigeo.is_unique
    assert set(dim.ubigeo) == set(complete.inei.str.zfill(6))
    assert dim.ubigeo.str.fullmatch(r"\d{6}").all()
    assert (dim.department_code == dim.ubigeo.str[:2]).all()
    assert (dim.province_code == dim.ubigeo.str[:4]).all()


def test_every_district_mart_has_one_row_per_district(con):
    districts = set(mart(con, "dim_districts").ubigeo)
    for name in ("fct_district_connectivity", "mart_digital_divide_index"):
        df = mart(con, name)
        assert len(df) == len(districts) and set(df.ubigeo) == districts, name


# --- key facts against direct computations ----------------------------------------------------------------------
def test_internet_pct_is_exactly_the_census_value(con):
    census = raw(con, "inei__census_indicators")[["ubigeo", "internet"]]
    census["ubigeo"] = census.ubigeo.str.zfill(6)
    got = mart(con, "fct_district_connectivity")[["ubigeo", "internet_pct"]].merge(census, on="ubigeo", how="left")
    assert (got.internet_pct.isna() == got.internet.isna()).all()
    both = got.dropna()
    assert len(both) > 1800
    assert (both.internet_pct == both.internet).all()


def test_coverage_shares_equal_a_direct_count(con):
    cov = raw(con, "osiptel__mobile_coverage")
    cov["centre"] = cov.ubigeo_ccpp.astype("int64").astype(str).str.zfill(10)
    cov["ubigeo"] = cov.centre.str[:6]
    cov["any_mobile"] = cov[["has_2g", "has_3g", "has_4g", "has_5g"]].max(axis=1)
    centres = cov.groupby(["ubigeo", "centre"]).agg(has_4g=("has_4g", "max"), any_mobile=("any_mobile", "max"))
    direct = centres.groupby("ubigeo").agg(
        pct_4g=("has_4g", "mean"), pct_any=("any_mobile", "mean"), n=("has_4g", "size")
    )
    stations = cov.groupby("ubigeo")[["cant_eb_2g", "cant_eb_3g", "cant_eb_4g", "cant_eb_5g"]].sum().sum(axis=1)
    got = mart(con, "fct_district_connectivity").set_index("ubigeo")
    j = got.join(direct, how="inner")
    assert len(j) > 0.9 * len(got)
    np.testing.assert_allclose(j.pct_centres_4g, 100 * j.pct_4g, atol=1e-9)
    np.testing.assert_allclose(j.pct_centres_any_mobile, 100 * j.pct_any, atol=1e-9)
    assert (j.populated_centres == j.n).all()
    np.testing.assert_array_equal(j.base_stations_total, stations.loc[j.index])
    without = got.index.difference(direct.index)
    assert got.loc[without, "pct_centres_4g"].isna().all()
    assert (got.loc[without, "populated_centres"] == 0).all()


def test_fixed_connections_latest_quarter_and_hhi(con):
    quarterly = mart(con, "fct_fixed_connections_quarterly")
    assert len(quarterly) > 1000
    assert quarterly.quarter.str.fullmatch(r"\d{4}-Q[1-4]").all()
    assert not quarterly.duplicated(["ubigeo", "quarter", "technology", "operator"]).any()
    latest = quarterly[quarterly.quarter_start == quarterly.quarter_start.max()]
    by_op = latest.groupby(["ubigeo", "operator"]).connections.sum()
    shares = 100 * by_op / by_op.groupby(level="ubigeo").transform("sum")
    hhi = (shares**2).groupby(level="ubigeo").sum()
    got = mart(con, "fct_district_connectivity").set_index("ubigeo")
    assert got.fixed_hhi.dropna().between(0, 10_000).all()
    np.testing.assert_allclose(got.loc[hhi.index, "fixed_hhi"], hhi, rtol=1e-9)
    totals = latest.groupby("ubigeo").connections.sum()
    np.testing.assert_array_equal(got.loc[totals.index, "fixed_connections"], totals)
    assert (got.drop(totals.index).fixed_connections == 0).all()  # a landed file: absent district = 0
    # a quarter is the stock of its last month in the data (PUNKU's monthly download), never a sum of months: the
    # connections of those months (and of quarterly periods) reach the mart, less the few whose names matched no
    # district
    fx = raw(con, "osiptel__fixed_connections")
    monthly = fx.periodo.str.fullmatch(r"\d{4}-\d{2}")
    assert monthly.any() and (~monthly).any()
    month = fx.periodo.str[5:7].where(monthly).astype(float)
    quarter = (
        fx.periodo.str[:4]
        + "-Q"
        + np.where(monthly, ((month - 1) // 3 + 1).fillna(0).astype(int).astype(str), fx.periodo.str[-1])
    )
    closing = month.groupby(quarter).transform("max")
    kept_raw = fx[~monthly | (month == closing)].conexiones.sum()
    kept = quarterly.connections.sum()
    assert 0.99 * kept_raw <= kept <= kept_raw
    # the months a quarter has: complete quarters show March/June/..., the last (two months) is flagged
    months = month.groupby(quarter).nunique()
    flags = quarterly.groupby("quarter").agg(
        incomplete=("is_quarter_incomplete", "max"),
        reported=("months_reported", "max"),
        closing=("closing_month", "max"),
    )
    for q, row in flags.iterrows():
        assert row.reported == months.get(q, 0)
        assert bool(row.incomplete) == (0 < months.get(q, 0) < 3)
        if months.get(q, 0) == 3:
            assert row.closing == 3 * int(q[-1])
    assert flags.incomplete.sum() >= 1


def test_name_matching_leaves_few_names_unmatched(con):
    matches = con.sql("select * from intermediate.int_fixed_connections__name_matches").df()
    unmatched = con.sql("select * from intermediate.int_fixed_connections__unmatched").df()
    assert len(matches) > 100
    assert len(unmatched) <= 0.01 * len(matches)
    assert (matches.match_method == "fuzzy").sum() >= 1  # the synthetic file carries spelling variants
    # a fuzzy match lands in a district of the same department as published
    fuzzy = matches[matches.match_method == "fuzzy"]
    assert (fuzzy.ubigeo.str[:2] == fuzzy.candidate_ubigeo.str[:2]).all()


def test_survey_shares_equal_a_weighted_mean_and_linearised_se(con):
    """Every share of fct_department_adoption_yearly against a direct computation from the raw households: complete
    interviews only (RESULT 1), weighted by FACTOR07; the standard error with ENAHO's design (PSU = CONGLOME,
    stratum = ESTRATO, a one-PSU stratum adding nothing); fixed internet from P1144 before 2023 and P114B1 after."""
    hh = raw(con, "inei__enaho_households")
    hh = hh[hh.factor07 > 0].assign(dep=hh.ubigeo.str.zfill(6).str[:2])
    hh["fixed"] = np.where(hh.anio >= 2023, hh.p114b1, hh.p1144)
    complete = hh.result.isna() | (hh.result == 1)
    got = mart(con, "fct_department_adoption_yearly").set_index(["department_code", "year"])
    assert len(got) >= 24 * 10
    for (dep, year), everyone in hh.groupby(["dep", "anio"]):
        g = everyone[complete.loc[everyone.index]]
        row = got.loc[(dep, year)]
        assert row.households_sampled == len(g) and row.households_incomplete == len(everyone) - len(g)
        assert row.questionnaire == ("desde 2023" if year >= 2023 else "hasta 2022")
        for column, good in (
            ("p1144", "internet"),
            ("fixed", "fixed_internet"),
            ("p1142", "mobile"),
            ("p1141", "fixed_phone"),
            ("p1143", "cable_tv"),
        ):
            a = g[g[column].notna()]
            w, y = a.factor07.to_numpy(), a[column].to_numpy(dtype=float)
            p = np.average(y, weights=w)
            assert row[f"{good}_pct"] == pytest.approx(100 * p, abs=1e-9)
            z = a.assign(s=w * (y - p) / w.sum()).groupby(["estrato", "conglome"]).s.sum()
            var = 0.0
            for _, zh in z.groupby(level="estrato"):
                n = len(zh)
                if n > 1:
                    var += n / (n - 1) * ((zh - zh.mean()) ** 2).sum()
            assert row[f"{good}_se"] == pytest.approx(100 * np.sqrt(var), rel=1e-6, abs=1e-9)
    # the break: marked once per department, in the first year of the new questionnaire
    marked = (
        got.reset_index()
        .groupby("department_code")
        .apply(lambda d: d.year[d.is_series_break].tolist(), include_groups=False)
    )
    assert (marked == [[2023]] * len(marked)).all()
    latest = got.reset_index().sort_values("year").groupby("department_code").tail(1).set_index("department_code")
    conn = mart(con, "fct_district_connectivity")
    expected = conn.ubigeo.str[:2].map(latest.internet_pct)
    np.testing.assert_allclose(conn.survey_internet_pct_department, expected)


def test_food_vulnerability_comes_from_the_census_with_the_reference_as_fallback(con):
    """fct_district_connectivity.food_vulnerability_pct: the census file's vulnAlim where the district has one,
    else 100 x the reference's indice_vulnerabilidad_alimentaria (the same index on a 0-1 scale)."""
    census = raw(con, "inei__census_indicators").assign(ubigeo=lambda d: d.ubigeo.astype(str).str.zfill(6))
    census = census.drop_duplicates("ubigeo").set_index("ubigeo").vuln_alim.astype(float)
    ref = raw(con, "inei__districts").dropna(subset=["inei"]).assign(ubigeo=lambda d: d.inei.astype(str).str.zfill(6))
    ref = ref.drop_duplicates("ubigeo").set_index("ubigeo").indice_vulnerabilidad_alimentaria.astype(float)
    got = mart(con, "fct_district_connectivity").set_index("ubigeo").food_vulnerability_pct
    expected = census.reindex(got.index).fillna(100 * ref.reindex(got.index))
    assert got.notna().mean() > 0.9, "the synthetic census carries vulnAlim for every complete district"
    np.testing.assert_allclose(got.to_numpy(float), expected.to_numpy(float), atol=1e-9)
    # the two sources agree (rounding of the same index): the fallback does not change the scale
    both = census.reindex(got.index).notna() & ref.reindex(got.index).notna()
    assert (census.reindex(got.index)[both] - 100 * ref.reindex(got.index)[both]).abs().median() < 10


def test_shares_and_scores_stay_in_range(con):
    conn = mart(con, "fct_district_connectivity")
    for col in [c for c in conn.columns if c.endswith("_pct")]:
        assert conn[col].dropna().between(0, 100).all(), col
    idx = mart(con, "mart_digital_divide_index")
    for col in ("infrastructure_score", "adoption_score", "socioeconomic_score", "divide_index"):
        assert idx[col].dropna().between(0, 100).all(), col
    assert idx.divide_index.min() == 0 and idx.divide_index.max() == 100
    assert sorted(idx.national_rank) == list(range(1, len(idx) + 1))
    assert idx.divide_quintile.value_counts().to_dict() == {q: len(idx) // 5 + (q <= len(idx) % 5) for q in range(1, 6)}
    # rank 1 has the widest divide; the widest fifth is quintile 5
    top = idx.sort_values("national_rank")
    assert top.divide_index.is_monotonic_decreasing
    assert (top.head(len(idx) // 5).divide_quintile == 5).all()


def _percentile(s: pd.Series) -> pd.Series:
    """100 x percent rank among the known values (ties share the lowest rank); unknown stays unknown."""
    return 100 * (s.rank(method="min") - 1) / (s.notna().sum() - 1)


def test_divide_index_equals_a_direct_computation(con):
    """The method of mart_digital_divide_index.yml recomputed from the connectivity mart: each component oriented
    so that higher is worse, as a percentile; pillars the mean of their known percentiles; the index the mean of
    the pillars rescaled to 0-100. Infrastructure is unknown where the coverage file has no populated centre."""
    c = mart(con, "fct_district_connectivity").set_index("ubigeo")
    covered = c.populated_centres > 0
    pillars = {
        "infrastructure_score": [
            (100 - c.pct_centres_4g),
            (100 - c.pct_centres_any_mobile),
            (100 - c.pct_centres_over_1mbps),
            -c.base_stations_per_10k_pop,
            -c.operators_present,
        ],
        "adoption_score": [100 - c.internet_pct, -c.fixed_connections_per_100_households],
        "socioeconomic_score": [c.poverty_pct, c.extreme_poverty_pct, 1 - c.idh, 100 - c.electricity_pct],
    }
    pillars["infrastructure_score"] = [s.where(covered) for s in pillars["infrastructure_score"]]
    scores = pd.DataFrame(
        {name: pd.concat([_percentile(s) for s in parts], axis=1).mean(axis=1) for name, parts in pillars.items()}
    )
    raw_index = scores.mean(axis=1)
    expected = 100 * (raw_index - raw_index.min()) / (raw_index.max() - raw_index.min())
    got = mart(con, "mart_digital_divide_index").set_index("ubigeo")
    assert len(got) == len(c) and got.infrastructure_score.isna().sum() == (~covered).sum()
    for name in pillars:
        np.testing.assert_allclose(got[name], scores.loc[got.index, name], atol=1e-9, err_msg=name)
    np.testing.assert_allclose(got.divide_index, expected.loc[got.index], atol=1e-9)
    assert got.divide_index.corr(c.internet_pct.loc[got.index], method="spearman") < -0.3


def test_mobile_lines_flag_rows_above_the_national_total(con):
    lines = raw(con, "osiptel__mobile_lines")
    yearly = lines[lines.granularity == "year"].assign(year=lambda d: pd.to_datetime(d.period).dt.year)
    total = yearly[yearly.departamento.str.strip() == "Total Perú"].groupby("year").lines.max()
    got = mart(con, "fct_department_mobile_lines")
    assert not got.duplicated(["department", "year"]).any()
    assert "Total Perú" not in set(got.department)
    above = got.lines > got.year.map(total)
    assert above.any(), "the synthetic hand-made csv carries a 10x 'Lima y Callao' row"
    assert got[above].is_outlier.all()
    assert got[got.is_outlier].outlier_reason.str.len().gt(0).all()
    assert got[~got.is_outlier].outlier_reason.isna().all()
    # when the xlsx gives a department-year, the mart uses it
    xlsx = yearly[yearly._source_file.str.endswith(".xlsx")]
    both = got.merge(
        xlsx[["departamento", "year"]].drop_duplicates(),
        left_on=["department", "year"],
        right_on=["departamento", "year"],
    )
    assert both.source_file.str.endswith(".xlsx").all()


# --- docs and lineage -------------------------------------------------------------------------------------------
def test_docs_generate_and_every_model_and_column_documented(session_home, use_home):
    use_home(session_home)
    index = Path(steps_docs())
    target = session_home / "dbt_target"
    assert index.is_file() and (target / "catalog.json").is_file()
    manifest = json.loads((target / "manifest.json").read_text())
    models = [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]
    assert len(models) >= 20
    for node in models:
        assert node["description"].strip(), f"{node['name']} has no description"
        assert node["columns"], f"{node['name']} documents no column"
        for col in node["columns"].values():
            assert col["description"].strip(), f"{node['name']}.{col['name']} has no description"
    catalog = json.loads((target / "catalog.json").read_text())
    for node in models:
        if node["unique_id"] in catalog["nodes"]:
            built = set(catalog["nodes"][node["unique_id"]]["columns"])
            assert {c.lower() for c in built} == {c.lower() for c in node["columns"]}, node["name"]
    exposures = manifest["exposures"].values()
    assert {e["type"] for e in exposures} == {"dashboard", "ml", "application"}  # application: the atlas and API
    assert sum(e["type"] == "dashboard" for e in exposures) == 4
    unit_tests = manifest.get("unit_tests", {})
    assert len(unit_tests) >= 3
    # every column the models write in Python (every table of ml/store.py, ml/clusters.py and ml/seeds.py: predictions,
    # intervals, gaps, scores, segments, clusters, metrics) is described in the dbt docs where it is born: its source,
    # with the same text as its staging model where there is one (one doc block)
    from brecha_ml import seeds
    from brecha_ml.clusters import DDL as CLUSTER_DDL
    from brecha_ml.store import DDL as ML_DDL
    from brecha_ml.store import LATER_DDL

    sources = {(s["source_name"], s["name"]): s for s in manifest["sources"].values()}
    staged = {n["name"]: n for n in models}
    written_by_python = [
        *(("ml", table, ddl) for table, ddl in {**ML_DDL, **LATER_DDL}.items()),
        ("ml", "seed_metrics", seeds.DDL),
        *(("ml_clusters", table, ddl) for table, ddl in CLUSTER_DDL.items()),
    ]
    assert len(written_by_python) == len(ML_DDL) + len(LATER_DDL) + 1 + len(CLUSTER_DDL) >= 12
    for src, table, ddl in written_by_python:
        written = set(re.findall(r"(?:^|,)\s*(\w+)\s+[A-Z]", ddl.split("PRIMARY KEY")[0]))
        assert len(written) >= 4, (table, written)
        assert (src, table) in sources, f"ml.{table} is written by Python but is no dbt source of {src!r}"
        described = sources[(src, table)]["columns"]
        missing = sorted(c for c in written if not described.get(c, {}).get("description", "").strip())
        assert missing == [], f"{src}.{table}: columns written by Python without a description: {missing}"
        assert sources[(src, table)]["description"].strip(), f"{src}.{table} has no description"
        for name, col in staged.get(f"stg_ml__{table}", {"columns": {}})["columns"].items():
            if name in described:  # a renamed column (selected -> is_selected) has its own text
                assert col["description"] == described[name]["description"], (table, name)


def steps_docs() -> str:
    from brecha.warehouse.dbt import docs

    return docs()


# --- other inputs: empty raw tables, the real extracts -----------------------------------------------------------
def test_build_on_empty_raw_tables(brecha_home: Path, monkeypatch: pytest.MonkeyPatch):
    """Empty raw tables give empty marts. dbt runs in this process (dbtRunner) and lets go of the warehouse when it is
    done: another process can write it and this one can read it read-only. Telemetry and colours are off by the
    project's own dbt flags, with no environment variable saying so. The environment dbt runs with (its home, project
    and profile folders) is set for the invocation only: the process's environment is the same afterwards."""
    monkeypatch.delenv("DBT_SEND_ANONYMOUS_USAGE_STATS", raising=False)
    monkeypatch.delenv("DBT_USE_COLORS", raising=False)
    monkeypatch.delenv("DBT_PROFILES_DIR", raising=False)
    environ_before = dict(os.environ)
    with session() as c:
        for ddl in BOOKKEEPING_DDL:
            c.execute(ddl)
        for layout in LAYOUTS:
            c.execute(raw_table_ddl(layout))
    summary = steps.dbt_build(settings_for(brecha_home), exclude=PREDICTION_MARTS)
    assert summary.failed == 0 and summary.models >= 20
    assert dict(os.environ) == environ_before
    from dbt.flags import get_flags

    assert (get_flags().SEND_ANONYMOUS_USAGE_STATS, get_flags().USE_COLORS) == (False, False)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; duckdb.connect(sys.argv[1]).close()",
            str(brecha_home / "brecha.duckdb"),
        ],
        check=True,
        timeout=60,
    )
    with connect(brecha_home) as c:
        for name in MARTS:
            assert c.sql(f"select count(*) from marts.{name}").fetchone()[0] == 0, name


# INEI's published national figures: the projection of Peru's population for 2025 (INEI, Día Mundial de la
# Población, 11 July 2025: "según las proyecciones al 2025, el Perú alcanzará los 34 350 244 habitantes") and the
# people counted by the 2017 census (INEI, Censos Nacionales 2017, as gob.pe/535 states them: 29,381,884 censados;
# 31,237,385 with the omission estimate)
INEI_POPULATION_2025 = 34_350_244
CENSUS_2017_COUNTED = 29_381_884


@pytest.mark.real
def test_real_extracts_after_a_synthetic_batch(session_home: Path, brecha_home: Path, real_dir: Path):
    """A synthetic batch (the session's, in a copy of its warehouse) then the real folder: the marts describe the real
    files only."""
    shutil.copyfile(session_home / "brecha.duckdb", brecha_home / "brecha.duckdb")
    settings = settings_for(brecha_home)
    steps.ingest(settings, real_dir)
    steps.dbt_build(settings, exclude=PREDICTION_MARTS)
    with connect(brecha_home) as c:
        assert c.sql("select count(*) from marts.dim_districts").fetchone()[0] == 1874
        got = mart(c, "fct_district_connectivity").set_index("ubigeo").internet_pct
        assert c.sql("select count(*) from marts.fct_fixed_connections_quarterly").fetchone()[0] == 0
        assert c.sql("select count(fixed_connections) from marts.fct_district_connectivity").fetchone()[0] == 0
        lines = mart(c, "fct_department_mobile_lines")
        dim = mart(c, "dim_districts").set_index("ubigeo")
    records = pd.DataFrame(json.loads((real_dir / "qhaway/indicadores-distrito.json").read_text()))
    # the population is INEI's 2025 projection, as the marts now say: the file's total is INEI's published figure
    # for 2025, and every person of it is in dim_districts or in a district the reference lacks
    assert records["pob"].sum() == INEI_POPULATION_2025
    assert (dim["population_source"] == "inei_projection_2025").all()
    assert (dim["population"] == dim["population_projected_2025"]).all()
    elsewhere = records.loc[~records["ubigeo"].isin(dim.index), "pob"].sum()
    assert dim["population_projected_2025"].sum() + elsewhere == INEI_POPULATION_2025
    assert dim["population"].sum() > 1.1 * CENSUS_2017_COUNTED  # not the census count the docs used to claim
    src = records
    src = src[src.internet.notna()].set_index("ubigeo").internet
    assert len(src) >= 1874
    common = src.index.intersection(got.index)
    assert len(common) == 1874
    assert (got.loc[common] == src.loc[common]).all()
    # the hand-made csv's 'Lima y Callao' row is ~10x too large: flagged wherever it is the only source
    lima = lines[lines.department == "Lima y Callao"].set_index("year").sort_index()  # label slices need order
    assert list(lima.index) == list(range(2003, 2019))
    assert lima.loc[2013:2018].is_outlier.all()
    assert lima.loc[2013:2018].source_file.str.endswith("IndMovil-C21.csv").all()
    assert lima.loc[2013:2018].outlier_reason.str.contains("national total").all()
    assert (~lima.loc[2003:2012].is_outlier).all()
    assert lima.loc[2003:2012].source_file.str.endswith("IndMovil-C21.xlsx").all()
    assert lima.loc[2010, "lines"] == 13_490_477  # the xlsx value, not the csv's 134,904,770
    assert lines.loc[lines.department == "Sin LAC", "department_code"].isna().all()
