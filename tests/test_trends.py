"""Trends a policymaker reads: the ENAHO series on the department-trends dashboard and in the atlas never draw a line
across the 2023 questionnaire change, carry their 90 % band, and PUNKU's connections per 100 households sit beside
them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from brecha.serve.atlas import NEW_QUESTIONNAIRE, Z90, trend_svg

DASHBOARD = Path(__file__).resolve().parents[1] / "grafana" / "dashboards" / "department_trends.json"


def _survey_panel() -> dict:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return next(p for p in panels if "ENAHO" in p["title"] and p["type"] == "timeseries")


def _run(sql: str, con: duckdb.DuckDBPyConnection, department: str | None) -> pd.DataFrame:
    """The panel's SQL with the dashboard's variables as Grafana expands them (a department, or All)."""
    chosen = f"'{department}'" if department else "SELECT department FROM marts.dim_departments"
    sql = sql.replace("${department}", chosen).replace("$__timeFilter(time)", "time IS NOT NULL")
    return con.execute(sql).df()


@pytest.mark.parametrize("department", [None, "LIMA"])
def test_dashboard_series_stay_on_their_side_of_2023(session_home: Path, department: str | None) -> None:
    panel = _survey_panel()
    with duckdb.connect(str(session_home / "brecha.duckdb"), read_only=True) as con:
        df = _run(panel["targets"][0]["rawSql"], con, department)
        years = con.execute("SELECT min(year), max(year) FROM marts.fct_department_adoption_yearly").fetchone()
    assert years[0] < NEW_QUESTIONNAIRE <= years[1], "the synthetic default spans the break"
    assert set(panel["brecha"]["fields"]) <= set(df.columns)
    year = df.time.dt.year
    for field, side in (("hogar_hasta_2022", "before"), ("acceso_desde_2023", "after"), ("fijo_desde_2023", "after")):
        drawn = year[df[field].notna()]
        assert len(drawn) >= 2, field
        assert (drawn < NEW_QUESTIONNAIRE).all() if side == "before" else (drawn >= NEW_QUESTIONNAIRE).all(), field
        # its 90 % band surrounds it
        rows = df[df[field].notna()]
        assert ((rows[f"{field}_inf_90"] <= rows[field]) & (rows[field] <= rows[f"{field}_sup_90"])).all()
        assert (rows[f"{field}_sup_90"] - rows[f"{field}_inf_90"] > 0).all()
    # no false jump: the last year before and the first year after are drawn by different series
    assert df.loc[year == NEW_QUESTIONNAIRE - 1, "acceso_desde_2023"].isna().all()
    assert df.loc[year == NEW_QUESTIONNAIRE, "hogar_hasta_2022"].isna().all()
    # PUNKU beside it, per 100 households, from the department mart
    punku = df.conexiones_fijas_por_100_hogares.dropna()
    assert len(punku) >= 8 and punku.between(0, 200).all()
    overrides = {o["matcher"]["options"]: o["properties"] for o in panel["fieldConfig"]["overrides"]}
    labels = {
        k: next(p["value"] for p in v if p["id"] == "displayName")
        for k, v in overrides.items()
        if any(p["id"] == "displayName" for p in v)
    }
    assert labels["hogar_hasta_2022"].endswith("hasta 2022)") and "desde 2023" in labels["fijo_desde_2023"]
    assert "2023" in panel["description"] and "no son comparables" in panel["description"]


def test_atlas_trend_draws_each_question_on_its_side_with_the_break_marked() -> None:
    trend = pd.DataFrame(
        {
            "department_code": "01",
            "year": [2021, 2022, 2023, 2024],
            "internet_pct": [50.0, 55.0, 90.0, 91.0],
            "internet_se": [2.0, 2.0, 1.0, 1.0],
            "fixed_internet_pct": [50.0, 55.0, 30.0, 32.0],
            "fixed_internet_se": [2.0, 2.0, 1.5, 1.5],
            "households_sampled": 100,
        }
    )
    fixed = pd.DataFrame(
        {
            "department_code": "01",
            "t": [2021.25, 2022.25, 2023.25, 2024.25],
            "connections_per_100_households": [20.0, 22.0, 24.0, 26.0],
        }
    )
    svg = trend_svg(trend, "es", fixed)
    by_class = {
        css: [tuple(map(float, p.split(","))) for p in pts.split()]
        for pts, css in re.findall(r'<polyline points="([^"]+)" class="line (s-[a-z]+)"', svg)
    }
    assert set(by_class) == {"s-hogar", "s-acceso", "s-fijo", "s-punku"}
    brk = float(re.search(r'<line x1="([0-9.]+)"[^>]*class="break"', svg).group(1))
    assert all(x < brk for x, _ in by_class["s-hogar"]) and len(by_class["s-hogar"]) == 2
    assert all(x > brk for x, _ in by_class["s-acceso"] + by_class["s-fijo"])
    assert "cambio de cuestionario" in svg and "Conexiones fijas por 100 hogares" in svg
    # the band is ± 1.645 standard errors: its height at 2021 is 2 * 1.645 * 2 points on the chart's scale
    band = re.search(r'<polygon points="([^"]+)" class="band s-hogar"', svg).group(1).split()
    ys = [float(p.split(",")[1]) for p in band]
    (_, y55), (_, y50) = by_class["s-hogar"][1], by_class["s-hogar"][0]
    scale = (y50 - y55) / 5.0  # chart units per percentage point
    assert ys[-1] - ys[0] == pytest.approx(2 * Z90 * 2.0 * scale, abs=0.2)  # coordinates have one decimal
