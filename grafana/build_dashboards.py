"""Writes grafana/dashboards/*.json: the four Brecha dashboards, with their SQL kept readable here.

Run ``.venv/bin/python grafana/build_dashboards.py`` after changing a query or a panel; the JSON files are
committed (Grafana provisions them as they are) and tests/test_grafana.py checks that they match this script,
that every query runs on a published serving copy, and that the layout is valid.

How Grafana expands ``${var}`` for the DuckDB plugin (checked by tests/test_grafana.py with Grafana's own code,
grafana/harness/): panel SQL with the ``sqlstring`` format, so every value arrives already quoted
(``${department}`` -> ``'AMAZONAS'``; "All" -> ``'AMAZONAS','ANCASH',...``); variable queries with plugin-ui's
``interpolateVariable`` (quoted too, for a variable with "All"). Plugin 0.4.1 then replaced every ``''`` with ``'``,
0.4.3+ does not. Idioms that hold in both:

- filters ``department IN (${department})``: "All" has no custom value, so it expands to the quoted list of options;
- a custom variable used as a column is written ``${measure:raw}``; compared as a value it is ``${measure}``;
- never ``'${var}'`` (it becomes ``''X''``), and no ``''`` anywhere in panel SQL (0.4.1 would corrupt it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "motherduck-duckdb-datasource", "uid": "brecha-duckdb"}
OUT = Path(__file__).resolve().parent / "dashboards"


def dept_filter(column: str = "department") -> str:
    return f"{column} IN (${{department}})"


def place_filter(prefix: str = "") -> str:
    """Department and province filter on columns ``<prefix>department`` and ``<prefix>province``."""
    return f"{dept_filter(prefix + 'department')} AND {prefix}province IN (${{province}})"


# Sources that carry a department code but not INEI's department name (e.g. OSIPTEL's mobile lines).
DEPT_CODE_FILTER = "department_code IN (SELECT department_code FROM marts.dim_districts WHERE department IN (${department}))"


# --- building blocks ----------------------------------------------------------------------------------------

def target(sql: str, fmt: str = "table", ref: str = "A") -> dict[str, Any]:
    return {"refId": ref, "datasource": DATASOURCE, "editorMode": "code", "format": fmt, "rawQuery": True,
            "rawSql": " ".join(sql.split())}


def panel(kind: str, title: str, sql: str, pos: tuple[int, int, int, int], *, description: str = "",
          fmt: str = "table", fields: tuple[str, ...] = (), options: dict | None = None,
          defaults: dict | None = None, overrides: list | None = None, may_be_empty: str = "",
          empty_when_filtered: bool = False, numeric: tuple[str, ...] = ()) -> dict[str, Any]:
    """One panel; ``fields`` lists the columns the panel reads, ``may_be_empty`` says why no rows can be the
    healthy answer, ``empty_when_filtered`` that one department/province may have none, ``numeric`` the fields
    that must be numbers (checked by tests/test_grafana.py)."""
    x, y, w, h = pos
    return {
        "type": kind, "title": title, "description": description, "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [target(sql, fmt)],
        "fieldConfig": {"defaults": defaults or {}, "overrides": overrides or []},
        "options": options or {},
        "brecha": {"fields": list(fields), **({"numeric": list(numeric)} if numeric else {}),
                   **({"may_be_empty": may_be_empty} if may_be_empty else {}),
                   **({"empty_when_filtered": True} if empty_when_filtered else {})},
    }


def stat(title: str, sql: str, pos: tuple[int, int, int, int], field: str, unit: str = "none",
         description: str = "", decimals: int | None = None, thresholds: list | None = None) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit}
    if decimals is not None:
        defaults["decimals"] = decimals
    if thresholds:
        defaults["thresholds"] = {"mode": "absolute", "steps": thresholds}
        defaults["color"] = {"mode": "thresholds"}
    return panel("stat", title, sql, pos, description=description, fields=(field,), defaults=defaults,
                 options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": f"/^{field}$/", "values": False},
                          "colorMode": "background" if thresholds else "none", "graphMode": "none",
                          "textMode": "value"})


def query_var(name: str, label: str, sql: str, *, include_all: bool = True) -> dict[str, Any]:
    var: dict[str, Any] = {
        "type": "query", "name": name, "label": label, "datasource": DATASOURCE,
        "query": " ".join(sql.split()), "definition": " ".join(sql.split()),
        "refresh": 1, "sort": 1, "multi": False, "includeAll": include_all, "options": [], "regex": "",
    }
    if include_all:  # no custom allValue: "All" expands to the quoted list of every option
        var["current"] = {"selected": True, "text": "All", "value": "$__all"}
    return var


def custom_var(name: str, label: str, values: list[tuple[str, str]]) -> dict[str, Any]:
    """A fixed list of (value, text) choices; the first is the default."""
    options = [{"selected": i == 0, "text": text, "value": value} for i, (value, text) in enumerate(values)]
    return {
        "type": "custom", "name": name, "label": label, "multi": False, "includeAll": False,
        "query": ",".join(f"{text} : {value}" for value, text in values),
        "current": {"selected": True, "text": values[0][1], "value": values[0][0]}, "options": options,
    }


def dashboard(uid: str, title: str, description: str, panels: list[dict], variables: list[dict],
              time_from: str = "now-1y", tags: tuple[str, ...] = ()) -> dict[str, Any]:
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {
        "uid": uid, "title": title, "description": description, "tags": ["brecha", *tags],
        "editable": False, "graphTooltip": 1, "schemaVersion": 41, "version": 1, "refresh": "",
        "time": {"from": time_from, "to": "now"}, "timepicker": {}, "timezone": "utc",
        "templating": {"list": variables}, "annotations": {"list": []}, "links": [
            {"title": "Brecha dashboards", "type": "dashboards", "tags": ["brecha"], "asDropdown": True}],
        "panels": panels,
    }


DEPARTMENT_VAR = query_var("department", "Department",
                           "SELECT department FROM marts.dim_departments ORDER BY department")
PROVINCE_VAR = query_var("province", "Province",
                         f"SELECT DISTINCT province FROM marts.dim_districts WHERE {dept_filter()} ORDER BY province")


# --- 1. district map ------------------------------------------------------------------------------------------

def district_map() -> dict[str, Any]:
    # the cluster option: LISA of the internet share oriented as need, a low district among low neighbours (a region
    # lagging together) first, a low district among high ones next (no SQL comments: panel SQL is one line)
    measure = custom_var("measure", "Colour by", [
        ("internet_pct", "Households with internet (%, census)"),
        ("divide_index", "Digital divide index (0-100, higher = wider)"),
        ("gap_pp", "Gap vs. prediction (pp, negative = below expected)"),
        ("priority_rank", "Priority rank (1 = first)"),
        ("internet_cluster_need", "Where low internet clusters (LISA: 100 = low-low, lagging together)"),
    ])
    national = "FROM marts.fct_district_connectivity"
    panels = [
        stat("Districts", "SELECT count(*) AS districts FROM marts.dim_districts", (0, 0, 6, 4), "districts",
             description="Districts in the latest INEI reference (national)."),
        stat("Mean internet share (districts)", f"SELECT avg(internet_pct) AS mean_internet_pct {national}",
             (6, 0, 6, 4), "mean_internet_pct", unit="percent", decimals=1,
             description="Unweighted mean over districts of the census share of households with internet (national)."),
        stat("Internet share, population-weighted",
             "SELECT sum(internet_pct * population) / sum(population) AS weighted_internet_pct "
             f"{national} WHERE internet_pct IS NOT NULL AND population IS NOT NULL",
             (12, 0, 6, 4), "weighted_internet_pct", unit="percent", decimals=1,
             description="Census share of households with internet, each district weighted by its population (national)."),
        stat("Districts below 5 %", f"SELECT count(*) FILTER (WHERE internet_pct < 5) AS districts_below_5 {national}",
             (18, 0, 6, 4), "districts_below_5",
             description="Districts where fewer than 5 % of households had internet (census 2017), national.",
             thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}]),
        panel("geomap", "Districts coloured by ${measure:text}", f"""
            WITH d AS (
                SELECT ubigeo, district, province, department, latitude, longitude, population,
                       internet_pct, predicted_internet_pct, divide_index, gap_pp, priority_rank, segment_label,
                       internet_cluster, internet_cluster_need,
                       ${{measure:raw}} AS measure,
                       CASE ${{measure}} WHEN 'internet_pct' THEN -internet_pct WHEN 'divide_index' THEN divide_index
                            WHEN 'gap_pp' THEN -gap_pp WHEN 'priority_rank' THEN -priority_rank
                            WHEN 'internet_cluster_need' THEN internet_cluster_need END AS need,
                       round(population * (100 - coalesce(internet_pct, predicted_internet_pct)) / 100)
                           AS people_without_internet
                FROM (
                    SELECT p.*, c.internet_pct_cluster AS internet_cluster,
                           CASE c.internet_pct_cluster WHEN 'low-low' THEN 100 WHEN 'low-high' THEN 75
                                WHEN 'not significant' THEN 50 WHEN 'high-low' THEN 25 WHEN 'high-high' THEN 0
                           END::DOUBLE AS internet_cluster_need
                    FROM marts.mart_district_priorities AS p
                    LEFT JOIN marts.mart_district_clusters AS c ON c.ubigeo = p.ubigeo
                ) AS p
                WHERE latitude IS NOT NULL AND longitude IS NOT NULL AND {place_filter()}
            )
            SELECT ubigeo, district, province, department, latitude, longitude, population,
                   people_without_internet, internet_pct, predicted_internet_pct, divide_index, gap_pp,
                   priority_rank, segment_label, internet_cluster, measure,
                   CASE WHEN need IS NOT NULL
                        THEN round(100 * percent_rank() OVER (PARTITION BY need IS NULL ORDER BY need), 1)
                   END AS need_percentile
            FROM d
            ORDER BY need_percentile ASC NULLS FIRST, people_without_internet DESC""",
              (0, 4, 14, 20), fields=("latitude", "longitude", "measure", "need_percentile", "people_without_internet"),
              numeric=("latitude", "longitude", "measure", "need_percentile", "people_without_internet"),
              description="One marker per district at its centroid. Colour: where the district stands on the measure "
                          "chosen above among the districts shown, oriented so that red is always worse (low internet "
                          "share, wide divide, far below the model's expectation, first in priority, or, for the cluster "
                          "option, part of a region where internet is low together: LISA low-low); 100 = worst. "
                          "Size: people living in households without internet (population × (100 − internet "
                          "share) / 100, the model's prediction where the census share is missing). The worst "
                          "districts are drawn last, on top of their neighbours. Hover for the district's figures.",
              defaults={"color": {"mode": "continuous-GrYlRd"}, "min": 0, "max": 100, "unit": "none",
                        "displayName": "need percentile (100 = worst shown)"},
              overrides=[{"matcher": {"id": "byName", "options": "people_without_internet"},
                          "properties": [{"id": "unit", "value": "short"},
                                         {"id": "displayName", "value": "people without internet"},
                                         {"id": "min", "value": 0}, {"id": "max"}]}],
              options={
                  "view": {"id": "coords", "lat": -9.2, "lon": -75.0, "zoom": 5},
                  "controls": {"showZoom": True, "mouseWheelZoom": True, "showAttribution": True},
                  # the default basemap loads map tiles from the internet; see grafana/README.md to switch it off
                  "basemap": {"type": "default", "name": "Basemap"},
                  "layers": [{
                      "type": "markers", "name": "Districts", "tooltip": True,
                      "location": {"mode": "coords", "latitude": "latitude", "longitude": "longitude"},
                      "config": {
                          "showLegend": True,
                          "style": {
                              "color": {"field": "need_percentile", "fixed": "dark-green"},
                              "size": {"field": "people_without_internet", "fixed": 5, "min": 3, "max": 18},
                              "opacity": 0.8,
                              "symbol": {"mode": "fixed", "fixed": "img/icons/marker/circle.svg"},
                          },
                      },
                  }],
                  "tooltip": {"mode": "details"},
              }),
        panel("table", "Top-priority districts", f"""
            SELECT p.priority_rank, p.district, p.province, p.department,
                   round(p.internet_pct, 1) AS internet_pct, round(p.predicted_internet_pct, 1) AS predicted_pct,
                   round(p.lower_90, 1) AS lower_90, round(p.upper_90, 1) AS upper_90, round(p.gap_pp, 1) AS gap_pp,
                   round(p.divide_index, 1) AS divide_index, p.segment_label, s.description AS segment_profile
            FROM marts.mart_district_priorities AS p
            LEFT JOIN ml.segment_profiles AS s ON s.run_id = p.run_id AND s.segment_id = p.segment_id
            WHERE {place_filter('p.')}
            ORDER BY p.priority_rank
            LIMIT 25""",
              (14, 4, 10, 20), fields=("priority_rank", "district", "gap_pp", "lower_90", "upper_90", "segment_label"),
              description="Districts to act on first: priority rank from the model, census share vs. predicted share "
                          "with its 90 % interval, the gap in percentage points, and the district's segment "
                          "(its profile names the drivers shared by similar districts).",
              options={"showHeader": True, "cellHeight": "sm"}),
        panel("barchart", "What drives the prediction (selected model of the run behind the map)", """
            SELECT f.feature, f.importance_mean
            FROM ml.feature_importance AS f
            JOIN ml.model_runs AS r ON r.run_id = f.run_id AND r.model_name = f.model_name AND r.selected
            WHERE f.run_id = (SELECT any_value(run_id) FROM marts.mart_district_priorities)
            ORDER BY f.rank
            LIMIT 12""",
              (0, 24, 24, 8), fields=("feature", "importance_mean"),
              description="Permutation importance of each feature for the selected model of the latest run: "
                          "the national drivers of household internet adoption.",
              options={"orientation": "horizontal", "xField": "feature", "showValue": "never",
                       "legend": {"showLegend": False}}),
    ]
    return dashboard("brecha-district-map", "Brecha · District map",
                     "Where is connectivity missing? One marker per district; filter by department and province.",
                     panels, [DEPARTMENT_VAR, PROVINCE_VAR, measure], tags=("policymakers",))


# --- 2. department trends -------------------------------------------------------------------------------------

# The ENAHO series, split at the 2023 questionnaire change (P1144 counts any access from 2023, P114B1 is fixed
# internet): (field, Spanish label, mart column, years) -- each its own line, so none is drawn across the break.
SURVEY_SERIES = (
    ("hogar_hasta_2022", "Internet del hogar (P1144, hasta 2022)", "internet_pct", "year < 2023"),
    ("acceso_desde_2023", "Cualquier acceso a internet (P1144, desde 2023)", "internet_pct", "year >= 2023"),
    ("fijo_desde_2023", "Internet fijo (P114B1, desde 2023)", "fixed_internet_pct", "year >= 2023"),
)
PUNKU_SERIES = ("conexiones_fijas_por_100_hogares", "Conexiones fijas por 100 hogares (PUNKU)")


def _survey_band(field: str, label: str, color: str) -> list[dict[str, Any]]:
    """A series named in Spanish and its 90 % band (the two band lines hidden from the legend)."""
    fixed = {"id": "color", "value": {"mode": "fixed", "fixedColor": color}}
    hidden = {"id": "custom.hideFrom", "value": {"legend": True, "tooltip": False, "viz": False}}
    return [
        {"matcher": {"id": "byName", "options": field}, "properties": [{"id": "displayName", "value": label}, fixed]},
        {"matcher": {"id": "byName", "options": f"{field}_sup_90"},
         "properties": [{"id": "custom.fillBelowTo", "value": f"{field}_inf_90"}, {"id": "custom.lineWidth", "value": 0},
                        {"id": "custom.fillOpacity", "value": 20}, fixed, hidden]},
        {"matcher": {"id": "byName", "options": f"{field}_inf_90"},
         "properties": [{"id": "custom.lineWidth", "value": 0}, fixed, hidden]},
    ]


def department_trends() -> dict[str, Any]:
    z = 1.645
    colors = ("blue", "purple", "orange")
    overrides = [o for (field, label, _, _), color in zip(SURVEY_SERIES, colors, strict=True)
                 for o in _survey_band(field, label, color)]
    overrides.append({"matcher": {"id": "byName", "options": PUNKU_SERIES[0]},
                      "properties": [{"id": "displayName", "value": PUNKU_SERIES[1]},
                                     {"id": "color", "value": {"mode": "fixed", "fixedColor": "green"}},
                                     {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}]})
    combined = ",\n".join(
        f"sum(share * {column}) FILTER (WHERE {years}) AS {field}, "
        f"sqrt(sum(share * share * {column.replace('_pct', '_se')} * {column.replace('_pct', '_se')}) "
        f"FILTER (WHERE {years})) AS {field}_se" for field, _, column, years in SURVEY_SERIES)
    bands = ",\n".join(f"{field}, {field} - {z} * {field}_se AS {field}_inf_90, {field} + {z} * {field}_se AS {field}_sup_90"
                        for field, _, _, _ in SURVEY_SERIES)
    survey_fields = tuple(f for field, _, _, _ in SURVEY_SERIES for f in (field, f"{field}_inf_90", f"{field}_sup_90"))
    nulls = ", ".join(f"NULL::DOUBLE AS {f}" for f in survey_fields)
    # (a department-year surveyed in one conglomerate has no standard error, so no band: it is not drawn; the SQL is
    # sent as one line, so it carries no comment)
    panels = [
        panel("timeseries", "Hogares con internet (ENAHO) y conexiones fijas (PUNKU), ${department}", f"""
            WITH d AS (
                SELECT year, internet_pct, internet_se, fixed_internet_pct, fixed_internet_se,
                       households_weighted / sum(households_weighted) OVER (PARTITION BY year) AS share
                FROM marts.fct_department_adoption_yearly
                WHERE {dept_filter()} AND internet_pct IS NOT NULL AND internet_se IS NOT NULL
            ), y AS (
                SELECT year, {combined}
                FROM d GROUP BY year
            ), survey AS (
                SELECT make_date(year, 7, 1)::TIMESTAMP AS time, {bands}, NULL::DOUBLE AS {PUNKU_SERIES[0]}
                FROM y
            ), fixed AS (
                SELECT quarter_start::TIMESTAMP + INTERVAL 3 MONTH - INTERVAL 1 DAY AS time, {nulls},
                       100.0 * sum(connections) / sum(households_estimate) AS {PUNKU_SERIES[0]}
                FROM marts.fct_department_fixed_connections_quarterly
                WHERE {dept_filter()}
                GROUP BY quarter_start
            )
            SELECT * FROM (SELECT * FROM survey UNION ALL SELECT * FROM fixed)
            WHERE $__timeFilter(time) ORDER BY time""",
              (0, 0, 12, 10), fields=("time", *survey_fields, PUNKU_SERIES[0]),
              numeric=(*survey_fields, PUNKU_SERIES[0]),
              description=f"Encuesta ENAHO (INEI): porcentaje de hogares, ponderado por FACTOR07, con su banda de 90 % "
                          f"(valor ± {z}·error estándar de diseño). En 2023 cambió la pregunta: desde entonces P1144 "
                          "cuenta cualquier acceso a internet, incluidos los datos móviles de los miembros, y P114B1 "
                          "mide el internet fijo; por eso cada pregunta es una serie propia y ninguna línea cruza "
                          "2023 (las series no son comparables). La línea discontinua verde son las conexiones fijas "
                          "de OSIPTEL PUNKU por cada 100 hogares (población censal / 3,5) al cierre de cada "
                          "trimestre. 'All' combina departamentos ponderados por hogares. Un año con un solo conglomerado "
                          "encuestado en el departamento no tiene error estándar y no se dibuja.",
              # each series joins its own points across the other series' rows; a series has no value on the other
              # side of 2023, so no line crosses the break
              defaults={"unit": "percent", "min": 0, "custom": {"fillOpacity": 0, "lineWidth": 2, "spanNulls": True}},
              overrides=overrides),
        panel("timeseries", "Fixed internet connections by technology, ${department} / ${province}", f"""
            SELECT f.quarter_start::TIMESTAMP AS time, f.technology, sum(f.connections) AS connections
            FROM marts.fct_fixed_connections_quarterly AS f
            JOIN marts.dim_districts AS d USING (ubigeo)
            WHERE {place_filter('d.')}
              AND $__timeFilter(f.quarter_start::TIMESTAMP)
            GROUP BY ALL ORDER BY time, f.technology""",
              (12, 0, 12, 10), fmt="time_series", fields=("time", "technology", "connections"),
              description="OSIPTEL PUNKU fixed connections per quarter, summed over operators and segments. "
                          "Empty when no fixed-connections file was landed.", empty_when_filtered=True,
              defaults={"unit": "short", "custom": {"stacking": {"mode": "normal"}, "fillOpacity": 30}}),
        panel("timeseries", "Mobile lines in service by department (outliers excluded)", f"""
            SELECT make_date(year, 1, 1)::TIMESTAMP AS time, department, lines
            FROM marts.fct_department_mobile_lines
            WHERE NOT is_outlier AND department_code IS NOT NULL AND {DEPT_CODE_FILTER}
              AND $__timeFilter(make_date(year, 1, 1)::TIMESTAMP)
            ORDER BY time, department""",
              (0, 10, 16, 10), fmt="time_series", fields=("time", "department", "lines"),
              description="OSIPTEL Cuadro 2.1. Rows flagged as outliers are left out here and listed beside; "
                          "pseudo-departments such as 'Lima y Callao' (no department code) are left out too.",
              defaults={"unit": "short"}),
        panel("table", "Mobile lines flagged as outliers", f"""
            SELECT department, year, lines, outlier_reason, source_file
            FROM marts.fct_department_mobile_lines
            WHERE is_outlier AND {DEPT_CODE_FILTER}
            ORDER BY department, year""",
              (16, 10, 8, 10), fields=("department", "year", "lines", "outlier_reason"),
              description="Values the pipeline flagged and kept out of the chart, with the reason.",
              may_be_empty="a department may have no flagged value"),
        panel("table", "Adoption by department, latest survey year", """
            SELECT department, year, round(internet_pct, 1) AS internet_pct, round(internet_se, 2) AS internet_se,
                   round(fixed_internet_pct, 1) AS fixed_internet_pct, round(fixed_internet_se, 2) AS fixed_internet_se,
                   round(mobile_pct, 1) AS mobile_pct, households_sampled
            FROM marts.fct_department_adoption_yearly
            WHERE year = (SELECT max(year) FROM marts.fct_department_adoption_yearly)
            ORDER BY internet_pct""",
              (0, 20, 24, 9), fields=("department", "year", "internet_pct", "internet_se"),
              description="All departments in the latest ENAHO year, lowest internet share first. Desde 2023 "
                          "internet_pct (P1144) cuenta cualquier acceso, datos móviles incluidos; fixed_internet_pct "
                          "(P114B1) es el internet fijo."),
    ]
    return dashboard("brecha-department-trends", "Brecha · Department trends",
                     "How is adoption changing? ENAHO survey estimates, fixed connections and mobile lines over time.",
                     panels, [DEPARTMENT_VAR, PROVINCE_VAR], time_from="now-15y", tags=("policymakers",))


# --- 3. model performance -------------------------------------------------------------------------------------

def coverage_by_group(scope: str, title: str, label: str, pos: tuple[int, int, int, int],
                      description: str) -> dict[str, Any]:
    """A bar gauge of ml.interval_coverage_by_group for the selected model of the chosen run, one bar per group."""
    return panel("bargauge", title, f"""
        SELECT {label} AS group_label, round(100 * c.coverage, 1) AS coverage_pct, c.n_districts,
               round(c.mean_width_pp, 1) AS mean_width_pp
        FROM ml.interval_coverage_by_group AS c
        JOIN ml.model_runs AS r ON r.run_id = c.run_id AND r.model_name = c.model_name AND r.selected
        LEFT JOIN marts.dim_departments AS d
            ON d.department_code = c.group_value
        WHERE c.run_id = ${{run_id}} AND c.scope = '{scope}'
        ORDER BY c.coverage, group_label""",
                 pos, fields=("group_label", "coverage_pct", "n_districts"), numeric=("coverage_pct",),
                 description=description,
                 defaults={"unit": "percent", "min": 0, "max": 100, "color": {"mode": "thresholds"},
                           "thresholds": {"mode": "absolute", "steps": [
                               {"color": "red", "value": None}, {"color": "orange", "value": 85},
                               {"color": "green", "value": 88}]}},
                 options={"orientation": "horizontal", "displayMode": "gradient",
                          "reduceOptions": {"values": True, "calcs": [], "fields": "/^coverage_pct$/"}})


def model_performance() -> dict[str, Any]:
    run_var = query_var("run_id", "Run", "SELECT run_id FROM ml.model_runs GROUP BY run_id ORDER BY max(run_at) DESC",
                        include_all=False)
    run = "run_id = ${run_id}"
    coverage = "CASE WHEN interval_coverage <= 1 THEN 100 * interval_coverage ELSE interval_coverage END"
    panels = [
        panel("table", "Models of run ${run_id}", f"""
            SELECT model_name, model_family, selected, round(cv_r2, 3) AS cv_r2, round(cv_mae, 2) AS cv_mae,
                   round(cv_rmse, 2) AS cv_rmse, round({coverage}, 1) AS interval_coverage_pct,
                   round(cv_r2_household_weighted, 3) AS cv_r2_households,
                   round(cv_mae_household_weighted, 2) AS cv_mae_households, run_at, seed
            FROM ml.model_runs WHERE {run} ORDER BY cv_rmse""",
              (0, 0, 14, 8), fields=("model_name", "cv_r2", "cv_mae", "cv_rmse", "interval_coverage_pct"),
              description="Spatial cross-validation (departments held out): R², MAE and RMSE in percentage points; "
                          "the selected model feeds the priorities."),
        panel("bargauge", "Interval coverage (target 90 %)", f"""
            SELECT model_name, {coverage} AS interval_coverage_pct FROM ml.model_runs WHERE {run} ORDER BY model_name""",
              (14, 0, 10, 8), fields=("model_name", "interval_coverage_pct"),
              description="Share of held-out districts whose census value fell inside the 90 % interval.",
              defaults={"unit": "percent", "min": 0, "max": 100, "color": {"mode": "thresholds"},
                        "thresholds": {"mode": "absolute", "steps": [
                            {"color": "red", "value": None}, {"color": "orange", "value": 85},
                            {"color": "green", "value": 88}]}},
              options={"orientation": "horizontal", "displayMode": "gradient",
                       "reduceOptions": {"values": True, "calcs": [], "fields": "/^interval_coverage_pct$/"}}),
        panel("timeseries", "Cross-validated RMSE per run and model", """
            SELECT run_at AS time, model_name, cv_rmse FROM ml.model_runs WHERE $__timeFilter(run_at) ORDER BY time""",
              (0, 8, 12, 8), fmt="time_series", fields=("time", "model_name", "cv_rmse"),
              description="Lower is better; one series per model across runs.",
              defaults={"unit": "none", "custom": {"drawStyle": "line", "showPoints": "always"}}),
        panel("table", "Fold metrics, run ${run_id}", f"""
            SELECT model_name, fold, test_departments, n_test, round(r2, 3) AS r2, round(mae, 2) AS mae,
                   round(rmse, 2) AS rmse
            FROM ml.model_fold_metrics WHERE {run} ORDER BY model_name, fold""",
              (12, 8, 12, 8), fields=("model_name", "fold", "r2", "rmse"),
              description="One row per held-out fold of departments."),
        panel("barchart", "Feature importance (selected model), run ${run_id}", f"""
            SELECT f.feature, f.importance_mean, f.importance_std
            FROM ml.feature_importance AS f
            JOIN ml.model_runs AS r ON r.run_id = f.run_id AND r.model_name = f.model_name AND r.selected
            WHERE f.{run} ORDER BY f.rank LIMIT 20""",
              (0, 16, 12, 10), fields=("feature", "importance_mean"),
              description="Permutation importance (mean over repeats) of the selected model.",
              options={"orientation": "horizontal", "xField": "feature", "showValue": "never",
                       "legend": {"showLegend": False}}),
        panel("table", "Feature drift, run ${run_id}", f"""
            SELECT feature, round(psi_vs_previous, 3) AS psi_vs_previous, round(mean, 3) AS mean,
                   round(p50, 3) AS p50, round(null_share, 3) AS null_share,
                   CASE WHEN psi_vs_previous IS NULL THEN 'no previous run'
                        WHEN psi_vs_previous >= 0.25 THEN 'major shift'
                        WHEN psi_vs_previous >= 0.1 THEN 'moderate shift' ELSE 'stable' END AS drift
            FROM ml.feature_drift WHERE {run} ORDER BY psi_vs_previous DESC NULLS LAST, feature""",
              (12, 16, 12, 10), fields=("feature", "psi_vs_previous", "drift"),
              description="Population stability index of each feature against the previous run "
                          "(< 0.1 stable, 0.1–0.25 moderate, ≥ 0.25 major)."),
        coverage_by_group("department", "Interval coverage by department (selected model, out of fold), run ${run_id}",
                          "coalesce(d.department, c.group_value)", (0, 26, 12, 12),
                          "Share of each department's districts whose census value fell inside the 90 % interval "
                          "of a model that never saw the department. Below 85 % (red): the intervals are too "
                          "narrow there."),
        coverage_by_group("predicted_level", "Interval coverage by predicted level, run ${run_id}",
                          "c.group_value", (12, 26, 12, 12),
                          "The same coverage by the predicted share of households online (intervals are "
                          "calibrated per level and region, so every level should be near 90 %)."),
    ]
    return dashboard("brecha-model-performance", "Brecha · Model performance",
                     "How good are the predictions? Cross-validated metrics, interval coverage, drivers and drift.",
                     panels, [run_var], time_from="now-1y", tags=("operators",))


# --- 4. data quality ------------------------------------------------------------------------------------------

def data_quality() -> dict[str, Any]:
    latest_batch = "(SELECT max(batch_id) FROM raw._batches)"
    panels = [
        stat("Snapshot age (hours)", """
            SELECT (epoch(now()) - epoch(max(published_at))) / 3600.0 AS snapshot_age_hours
            FROM ops.snapshots WHERE action = 'publish'""",
             (0, 0, 6, 4), "snapshot_age_hours", decimals=1,
             description="Hours since the serving copy you are looking at was published.",
             thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 48},
                         {"color": "red", "value": 168}]),
        stat("Latest landing batch", f"""
            SELECT batch_id AS latest_batch FROM raw._batches WHERE batch_id = {latest_batch}""",
             (6, 0, 6, 4), "latest_batch", description="Batch id of the latest `brecha ingest`."),
        stat("Rows rejected, latest batch", f"""
            SELECT coalesce(sum(rows_rejected), 0) AS rows_rejected FROM raw._batch_files WHERE batch_id = {latest_batch}""",
             (12, 0, 6, 4), "rows_rejected",
             description="Rows that broke the layout contract and went to raw._rejects instead of the marts.",
             thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}]),
        stat("Failed expectations, latest validation", """
            WITH latest AS (SELECT gate, max(validated_at) AS at FROM ops.validation_results GROUP BY gate)
            SELECT count(*) FILTER (WHERE v.success = false) AS failed_expectations
            FROM ops.validation_results AS v JOIN latest AS l ON v.gate = l.gate AND v.validated_at = l.at""",
             (18, 0, 6, 4), "failed_expectations",
             description="Great Expectations results of the latest validation of each gate (landed, marts).",
             thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}]),
        panel("table", "Rows landed and rejected per source and batch", """
            SELECT batch_id, entity, source_file, rows_landed, rows_rejected,
                   round(100.0 * rows_rejected / nullif(rows_landed + rows_rejected, 0), 2) AS rejected_pct,
                   newly_landed
            FROM raw._batch_files ORDER BY batch_id DESC, entity, source_file""",
              (0, 4, 14, 10), fields=("batch_id", "entity", "rows_landed", "rows_rejected"),
              description="Every landed file: where it landed, how many rows, how many rejected "
                          "(newly_landed = false: the same bytes had been landed before)."),
        panel("barchart", "Rows rejected per source, latest batch", f"""
            SELECT entity, sum(rows_rejected) AS rows_rejected
            FROM raw._batch_files WHERE batch_id = {latest_batch} GROUP BY entity ORDER BY entity""",
              (14, 4, 10, 10), fields=("entity", "rows_rejected"),
              options={"orientation": "horizontal", "xField": "entity", "showValue": "auto",
                       "legend": {"showLegend": False}}),
        panel("table", "Reject reasons", """
            SELECT entity, reason, column_name, sum(rows_rejected) AS rows_rejected, min(example_value) AS example_value,
                   count(DISTINCT source_file) AS files
            FROM ops.rejects_summary GROUP BY ALL ORDER BY rows_rejected DESC""",
              (0, 14, 12, 9), fields=("entity", "reason", "rows_rejected"),
              description="Why rows were rejected at landing (raw._rejects, summarised at publish).",
              may_be_empty="a clean landing rejects nothing"),
        panel("table", "Validation results per gate and suite", """
            WITH gates AS (SELECT * FROM (VALUES ('landed'), ('marts')) AS g(gate)),
                 latest AS (SELECT gate, max(validated_at) AS at FROM ops.validation_results GROUP BY gate)
            SELECT g.gate, coalesce(v.suite, '(not validated)') AS suite, l.at AS validated_at,
                   count(v.expectation) AS expectations,
                   count(*) FILTER (WHERE v.success) AS passed,
                   count(*) FILTER (WHERE v.success = false) AS failed
            FROM gates AS g
            LEFT JOIN latest AS l ON l.gate = g.gate
            LEFT JOIN ops.validation_results AS v ON v.gate = g.gate AND v.validated_at = l.at
            GROUP BY ALL ORDER BY failed DESC, g.gate, suite""",
              (12, 14, 12, 9), fields=("gate", "suite", "expectations", "passed", "failed"),
              description="Latest Great Expectations run of each gate; a gate that never ran shows '(not validated)'."),
        panel("table", "Failed expectations (latest validation)", """
            WITH latest AS (SELECT gate, max(validated_at) AS at FROM ops.validation_results GROUP BY gate)
            SELECT v.gate, v.suite, v.expectation, v.column_name, v.observed_value, v.unexpected_count, v.why
            FROM ops.validation_results AS v JOIN latest AS l ON v.gate = l.gate AND v.validated_at = l.at
            WHERE v.success = false ORDER BY v.gate, v.suite""",
              (0, 23, 24, 7), fields=("gate", "suite", "expectation", "observed_value"),
              description="Empty when every expectation passed (a failure stops the pipeline before publishing).",
              may_be_empty="no failed expectation is the healthy state"),
        panel("table", "Publish history", """
            SELECT published_at, action, snapshot_id, run_id, batch_id, row_counts
            FROM ops.snapshots ORDER BY published_at DESC""",
              (0, 30, 24, 7), fields=("published_at", "snapshot_id", "run_id"),
              description="Every publish recorded up to this serving copy (rollbacks are recorded in the warehouse)."),
    ]
    return dashboard("brecha-data-quality", "Brecha · Data quality",
                     "Can I trust what I see? Landing, rejects, validation gates and the age of the serving copy.",
                     panels, [], time_from="now-30d", tags=("operators",))


DASHBOARDS = {
    "district_map.json": district_map,
    "department_trends.json": department_trends,
    "model_performance.json": model_performance,
    "data_quality.json": data_quality,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n" for name, build in DASHBOARDS.items()}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
