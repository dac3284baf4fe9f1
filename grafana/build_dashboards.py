"""Writes grafana/dashboards/*.json (Spanish, the default) and grafana/dashboards/en/*.json (English): the four Brecha
dashboards, with their SQL kept readable here and every text a reader sees written once in both languages.

Run ``.venv/bin/python grafana/build_dashboards.py`` after changing a query, a panel or a text; the JSON files are
committed (Grafana provisions them as they are: the Spanish set in the folder "Brecha", the English one in
"Brecha (English)") and tests/test_grafana.py checks that they match this script, that every query runs on a
published serving copy, that the layout is valid and that no raw column name reaches a reader.

One source, two languages: each dashboard is built by one function from a ``Tr`` (``t("Distritos", "Districts")``
picks the text of its language); the SQL, the layout and the options are the same in both sets. Column headers,
legends and tooltips come from ``COLUMNS`` (a displayName override per column a panel returns), feature names
from ``FEATURE_LABELS`` (a lookup joined in the panel SQL). Names of places stay as INEI writes them.

How Grafana expands ``${var}`` for the DuckDB plugin (checked by tests/test_grafana.py with Grafana's own code,
grafana/harness/): panel SQL with the ``sqlstring`` format, so every value arrives already quoted
(``${department}`` -> ``'AMAZONAS'``; "All" -> ``'AMAZONAS','ANCASH',...``); variable queries with plugin-ui's
``interpolateVariable`` (quoted too, for a variable with "All"). Plugin 0.4.1 then replaced every ``''`` with ``'``,
0.4.3+ does not. Idioms that hold in both:

- filters ``department IN (${department})``: "All" has no custom value, so it expands to the quoted list of options;
- a custom variable used as a column is written ``${measure:raw}``; compared as a value it is ``${measure}``;
- never ``'${var}'`` (it becomes ``''X''``), and no ``''`` anywhere in panel SQL (0.4.1 would corrupt it), so no
  text written into SQL may hold an apostrophe;
- a custom variable's options are parsed by Grafana from its ``query`` (commas escaped, see ``custom_var``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "motherduck-duckdb-datasource", "uid": "brecha-duckdb"}
OUT = Path(__file__).resolve().parent / "dashboards"
LANGS = ("es", "en")  # es: grafana/dashboards/*.json, the default; en: grafana/dashboards/en/*.json
Z90 = 1.645  # one interval level everywhere: 90 %


class Tr:
    """The texts of one language: ``t(es, en)`` returns the Spanish or the English one."""

    def __init__(self, lang: str) -> None:
        if lang not in LANGS:
            raise ValueError(f"language {lang!r}: expected one of {LANGS}")
        self.lang = lang

    def __call__(self, es: str, en: str) -> str:
        return es if self.lang == "es" else en


# What a reader sees for each column a panel returns (Spanish, English): a displayName override per panel. Mart
# column names stay English and stable; tests/test_grafana.py fails on a returned column without a label here.
COLUMNS: dict[str, tuple[str, str]] = {
    "time": ("Fecha", "Date"),
    "ubigeo": ("Ubigeo", "Ubigeo"),
    "district": ("Distrito", "District"),
    "province": ("Provincia", "Province"),
    "department": ("Departamento", "Department"),
    "latitude": ("Latitud", "Latitude"),
    "longitude": ("Longitud", "Longitude"),
    "population": ("Población", "Population"),
    "people_without_internet": ("Personas sin internet", "People without internet"),
    "internet_pct": ("Hogares con internet (%)", "Households with internet (%)"),
    "predicted_internet_pct": ("Predicción del modelo (%)", "Model prediction (%)"),
    "predicted_pct": ("Predicción del modelo (%)", "Model prediction (%)"),
    "lower_90": ("Límite inferior, intervalo 90 % (%)", "Lower bound, 90 % interval (%)"),
    "upper_90": ("Límite superior, intervalo 90 % (%)", "Upper bound, 90 % interval (%)"),
    "gap_pp": ("Brecha frente a la predicción (pp)", "Gap vs. prediction (pp)"),
    "divide_index": ("Índice de brecha digital (0-100)", "Digital divide index (0-100)"),
    "priority_rank": ("Prioridad", "Priority rank"),
    "segment_label": ("Segmento", "Segment"),
    "segment_profile": ("Perfil del segmento", "Segment profile"),
    "internet_cluster": ("Agrupamiento LISA del acceso a internet", "LISA cluster of internet access"),
    "measure": ("Valor de la medida elegida", "Value of the chosen measure"),
    "need_percentile": ("Percentil de necesidad (100 = peor de los mostrados)",
                        "Need percentile (100 = worst shown)"),
    "map_note": ("Nota del mapa", "Map note"),
    "feature": ("Variable", "Feature"),
    "importance_mean": ("Importancia (media)", "Importance (mean)"),
    "importance_std": ("Importancia (desviación estándar)", "Importance (standard deviation)"),
    "technology": ("Tecnología", "Technology"),
    "connections": ("Conexiones", "Connections"),
    "lines": ("Líneas móviles", "Mobile lines"),
    "year": ("Año", "Year"),
    "outlier_reason": ("Motivo del descarte", "Why it was flagged"),
    "source_file": ("Archivo de origen", "Source file"),
    "internet_se": ("Error estándar (pp)", "Standard error (pp)"),
    "fixed_internet_pct": ("Hogares con internet fijo (%)", "Households with fixed internet (%)"),
    "fixed_internet_se": ("Error estándar, internet fijo (pp)", "Standard error, fixed internet (pp)"),
    "mobile_pct": ("Hogares con celular (%)", "Households with a mobile phone (%)"),
    "households_sampled": ("Hogares encuestados", "Households sampled"),
    "model_name": ("Modelo", "Model"),
    "model_family": ("Familia", "Family"),
    "selected": ("Seleccionado", "Selected"),
    "cv_r2": ("R² (validación cruzada)", "R² (cross-validated)"),
    "cv_mae": ("MAE (pp, validación cruzada)", "MAE (pp, cross-validated)"),
    "cv_rmse": ("RMSE (pp, validación cruzada)", "RMSE (pp, cross-validated)"),
    "interval_coverage_pct": ("Cobertura del intervalo 90 % (%)", "Coverage of the 90 % interval (%)"),
    "cv_r2_households": ("R² ponderado por hogares", "R², household-weighted"),
    "cv_mae_households": ("MAE ponderado por hogares (pp)", "MAE, household-weighted (pp)"),
    "run_at": ("Fecha de la corrida", "Run at"),
    "seed": ("Semilla", "Seed"),
    "fold": ("Partición", "Fold"),
    "test_departments": ("Departamentos de prueba", "Test departments"),
    "n_test": ("Distritos de prueba", "Test districts"),
    "r2": ("R²", "R²"),
    "served": ("Publicado", "Served"),
    "seeds": ("Semillas", "Seeds"),
    "r2_mean": ("R² (media)", "R² (mean)"),
    "r2_sd": ("R² (DE)", "R² (SD)"),
    "mae_mean": ("MAE (pp, media)", "MAE (pp, mean)"),
    "mae_sd": ("MAE (pp, DE)", "MAE (pp, SD)"),
    "r2_households_mean": ("R² ponderado por hogares (media)", "Household-weighted R² (mean)"),
    "mae_lima_callao_mean": ("MAE Lima Metropolitana y Callao (pp, media)",
                             "MAE Lima Metropolitana and Callao (pp, mean)"),
    "coverage_pct_mean": ("Cobertura del intervalo de 90 % (%, media)", "Coverage of the 90 % interval (%, mean)"),
    "above_pct_mean": ("Sobre el intervalo de 90 % (%, media)", "Above the 90 % interval (%, mean)"),
    "below_pct_mean": ("Bajo el intervalo de 90 % (%, media)", "Below the 90 % interval (%, mean)"),
    "departments_below_85_max": ("Departamentos bajo 85 % (máx.)", "Departments below 85 % (max)"),
    "mae": ("MAE (pp)", "MAE (pp)"),
    "rmse": ("RMSE (pp)", "RMSE (pp)"),
    "psi_vs_previous": ("PSI frente a la corrida anterior", "PSI vs. previous run"),
    "mean": ("Media", "Mean"),
    "p50": ("Mediana", "Median"),
    "null_share": ("Proporción de nulos", "Null share"),
    "drift": ("Deriva", "Drift"),
    "group_label": ("Grupo", "Group"),
    "coverage_pct": ("Cobertura del intervalo 90 % (%)", "Coverage of the 90 % interval (%)"),
    "n_districts": ("Distritos", "Districts"),
    "mean_width_pp": ("Ancho medio del intervalo 90 % (pp)", "Mean width of the 90 % interval (pp)"),
    "batch_id": ("Lote", "Batch"),
    "entity": ("Fuente", "Source"),
    "rows_landed": ("Filas cargadas", "Rows landed"),
    "rows_rejected": ("Filas rechazadas", "Rows rejected"),
    "rejected_pct": ("Rechazadas (%)", "Rejected (%)"),
    "newly_landed": ("Cargado por primera vez", "Newly landed"),
    "reason": ("Motivo", "Reason"),
    "column_name": ("Columna", "Column"),
    "example_value": ("Valor de ejemplo", "Example value"),
    "files": ("Archivos", "Files"),
    "gate": ("Control", "Gate"),
    "suite": ("Conjunto de expectativas", "Suite"),
    "validated_at": ("Validado el", "Validated at"),
    "expectations": ("Expectativas", "Expectations"),
    "passed": ("Cumplidas", "Passed"),
    "failed": ("Fallidas", "Failed"),
    "expectation": ("Expectativa", "Expectation"),
    "observed_value": ("Valor observado", "Observed value"),
    "unexpected_count": ("Filas inesperadas", "Unexpected rows"),
    "why": ("Por qué", "Why"),
    "published_at": ("Publicado el", "Published at"),
    "action": ("Acción", "Action"),
    "snapshot_id": ("Copia publicada", "Snapshot"),
    "run_id": ("Corrida", "Run"),
    "row_counts": ("Filas por tabla", "Rows per table"),
}

# The models' features (ml/features.py FEATURE_NAMES) as a reader names them; tests/test_grafana.py fails on a
# feature without a label. No apostrophes: the labels are written into panel SQL.
FEATURE_LABELS: dict[str, tuple[str, str]] = {
    "electricity_pct": ("Hogares con electricidad (%, censo 2017)", "Households with electricity (%, census 2017)"),
    "water_pct": ("Hogares con agua por red pública (%, censo 2017)", "Households with piped water (%, census 2017)"),
    "sewage_pct": ("Hogares con desagüe por red pública (%, censo 2017)",
                   "Households on public sewage (%, census 2017)"),
    "poverty_pct": ("Pobreza monetaria (%)", "Monetary poverty (%)"),
    "extreme_poverty_pct": ("Pobreza extrema (%)", "Extreme poverty (%)"),
    "idh": ("Índice de desarrollo humano (0-1)", "Human development index (0-1)"),
    "log_population": ("Población del distrito (log10)", "District population (log10)"),
    "log_density": ("Densidad poblacional (log10 hab./km²)", "Population density (log10 per km²)"),
    "log_area": ("Superficie del distrito (log10 km²)", "District area (log10 km²)"),
    "altitude_m": ("Altitud de la capital (m)", "Altitude of the capital (m)"),
    "latitude": ("Latitud del centroide", "Centroid latitude"),
    "longitude": ("Longitud del centroide", "Centroid longitude"),
    "is_province_capital": ("Es capital de provincia", "Is a province capital"),
    "is_department_capital": ("Es capital de departamento", "Is a department capital"),
    "pct_centres_4g": ("Centros poblados con 4G (%)", "Populated centres with 4G (%)"),
    "pct_centres_3g_plus": ("Centros poblados con 3G o más (%)", "Populated centres with 3G or better (%)"),
    "pct_centres_over_1mbps": ("Centros poblados con más de 1 Mbps (%)", "Populated centres over 1 Mbps (%)"),
    "operators_present": ("Operadores móviles presentes", "Mobile operators present"),
    "log_populated_centres": ("Centros poblados (log10)", "Populated centres (log10)"),
    "centres_per_1k_pop": ("Centros poblados por 1000 habitantes", "Populated centres per 1,000 inhabitants"),
    "log_base_stations": ("Estaciones base (log10)", "Base stations (log10)"),
    "base_stations_per_10k_pop": ("Estaciones base por 10 000 habitantes", "Base stations per 10,000 inhabitants"),
    "share_base_stations_4g": ("Proporción de estaciones base 4G", "Share of 4G base stations"),
    "fixed_connections_per_100_households": ("Conexiones fijas por 100 hogares",
                                             "Fixed connections per 100 households"),
    "fibre_share_pct": ("Conexiones fijas por fibra óptica (%)", "Fixed connections over fibre (%)"),
    "survey_internet_pct_department": ("Hogares con internet en el departamento (%, ENAHO)",
                                       "Households with internet in the department (%, ENAHO)"),
    "nb_electricity_pct": ("Electricidad en los 8 distritos vecinos (%)", "Electricity in the 8 nearest districts (%)"),
    "nb_sewage_pct": ("Desagüe en los 8 distritos vecinos (%)", "Sewage in the 8 nearest districts (%)"),
    "nb_poverty_pct": ("Pobreza en los 8 distritos vecinos (%)", "Poverty in the 8 nearest districts (%)"),
    "nb_idh": ("IDH de los 8 distritos vecinos", "HDI of the 8 nearest districts"),
    "nb_log_density": ("Densidad de los 8 distritos vecinos (log10)", "Density of the 8 nearest districts (log10)"),
    "nb_pct_centres_4g": ("Centros poblados con 4G en los 8 distritos vecinos (%)",
                          "Populated centres with 4G in the 8 nearest districts (%)"),
    "log_catchment_population": ("Población en un radio de 30 km (log10)", "Population within 30 km (log10)"),
    "log_km_to_urban_centre": ("Distancia al centro urbano más cercano (log10 km)",
                               "Distance to the nearest urban centre (log10 km)"),
    "food_vulnerability_pct": ("Vulnerabilidad alimentaria (índice × 100)", "Food vulnerability (index × 100)"),
}


def feature_label_join(t: Tr, alias: str = "f") -> str:
    """A LEFT JOIN of ``<alias>.feature`` to its label (column ``fl.label``); an unknown feature keeps its name."""
    rows = ", ".join(f"('{name}', '{t(es, en)}')" for name, (es, en) in FEATURE_LABELS.items())
    return f"LEFT JOIN (VALUES {rows}) AS fl(feature, label) ON fl.feature = {alias}.feature"


# The words ml/segments.py builds segment labels from (SEGMENT_FEATURES, and its fallback), in Spanish: the segment
# of a district is shown in the reader's language (tests/test_grafana.py fails on a word without its translation).
SEGMENT_WORDS: dict[str, str] = {
    "high-altitude": "de altura", "lowland": "de tierras bajas", "poor": "pobres", "better-off": "menos pobres",
    "good 4G": "con buen 4G", "little 4G": "con poco 4G", "dense": "densos", "sparse": "dispersos",
    "well electrified": "bien electrificados", "poorly electrified": "poco electrificados",
    "sewered": "con desagüe", "unsewered": "sin desagüe", "high human development": "alto desarrollo humano",
    "low human development": "bajo desarrollo humano", "populous": "populosos", "small": "pequeños",
    "average on every covariate": "en el promedio en todo",
}
# Cluster classes of the local Moran's I (LISA), as ml/clusters.py writes them.
CLUSTER_WORDS: dict[str, tuple[str, str]] = {
    "low-low": ("bajo-bajo", "low-low"), "low-high": ("bajo-alto", "low-high"),
    "high-low": ("alto-bajo", "high-low"), "high-high": ("alto-alto", "high-high"),
    "not significant": ("no significativo", "not significant"),
}


def segment_label_sql(t: Tr, column: str) -> str:
    """``column`` (a segment label of ml/segments.py) in the reader's language: each word replaced, longest first
    (so "poorly electrified" before "poor")."""
    if t.lang == "en":
        return column
    for en, es in sorted(SEGMENT_WORDS.items(), key=lambda kv: -len(kv[0])):
        column = f"replace({column}, '{en}', '{es}')"
    return column


def segment_profile_sql(t: Tr, p: str = "p", s: str = "s") -> str:
    """The profile sentence of segment ``s`` (ml.segment_profiles): ml/segments.py writes it in English; the Spanish
    set composes the same sentence from the profile's columns."""
    if t.lang == "en":
        return f"{s}.description"
    return (f"coalesce(format('{{}} distritos ({{}}): altitud ~{{}} m, pobreza {{}} %, electricidad {{}} %, "
            f"desagüe {{}} %, 4G en {{}} % de los centros poblados, densidad ~{{}}/km²; internet (censo) {{}} "
            f"en promedio', {s}.n_districts, {segment_label_sql(t, p + '.segment_label')}, "
            f"round({s}.centroid_altitude_m)::BIGINT, round({s}.centroid_poverty_pct)::BIGINT, "
            f"round({s}.centroid_electricity_pct)::BIGINT, round({s}.centroid_sewage_pct)::BIGINT, "
            f"round({s}.centroid_pct_centres_4g)::BIGINT, round(pow(10, {s}.centroid_log_density))::BIGINT, "
            f"coalesce(printf('%.1f %%', {s}.mean_internet_pct), 'sin dato')), {s}.description)")


def cluster_sql(t: Tr, column: str) -> str:
    return "CASE " + column + " " + " ".join(f"WHEN '{k}' THEN '{t(*v)}'" for k, v in CLUSTER_WORDS.items()) + " END"


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
          empty_when_filtered: bool = False, numeric: tuple[str, ...] = (),
          more_targets: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """One panel; ``fields`` lists the columns the panel reads, ``may_be_empty`` says why no rows can be the
    healthy answer, ``empty_when_filtered`` that one department/province may have none, ``numeric`` the fields
    that must be numbers (checked by tests/test_grafana.py); ``more_targets`` are (refId, sql) of further queries
    returning the same columns. Column labels are added by ``dashboard``."""
    x, y, w, h = pos
    return {
        "type": kind, "title": title, "description": description, "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [target(sql, fmt), *(target(more, fmt, ref) for ref, more in more_targets)],
        "fieldConfig": {"defaults": defaults or {}, "overrides": overrides or []},
        "options": options or {},
        "brecha": {"fields": list(fields), **({"numeric": list(numeric)} if numeric else {}),
                   **({"may_be_empty": may_be_empty} if may_be_empty else {}),
                   **({"empty_when_filtered": True} if empty_when_filtered else {})},
    }


def display(column: str, label: str) -> dict[str, Any]:
    """A field override that shows ``column`` as ``label`` (headers, legends, tooltips)."""
    return {"matcher": {"id": "byName", "options": column}, "properties": [{"id": "displayName", "value": label}]}


def unlabelled(p: dict[str, Any]) -> set[str]:
    """Columns whose name is matched by the panel's own options (a bar gauge's reduce regex, a bar chart's x field):
    a display name would stop them matching, and the reader sees the values."""
    out = set(re.findall(r"\^(\w+)\$", p["options"].get("reduceOptions", {}).get("fields", "")))
    if "xField" in p["options"]:
        out.add(p["options"]["xField"])
    return out


def label_columns(p: dict[str, Any], t: Tr) -> None:
    """Give every column the panel's SQL names (outside its string literals) its display name from ``COLUMNS``,
    unless the panel set one itself. A stat shows one number under its title: no labels there."""
    if p["type"] == "stat":
        return
    sql = re.sub(r"'[^']*'", "''", " ".join(tg["rawSql"] for tg in p["targets"]))
    overrides = p["fieldConfig"]["overrides"]
    named = {o["matcher"]["options"] for o in overrides if o["matcher"]["id"] == "byName"
             and any(prop["id"] == "displayName" for prop in o["properties"])}
    skip = unlabelled(p) | named
    for column, (es, en) in COLUMNS.items():
        if column not in skip and re.search(rf"\b{column}\b", sql):
            overrides.append(display(column, t(es, en)))


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
    """A fixed list of (value, text) choices; the first is the default.

    Grafana does not read the ``options`` saved here: it parses the ``query`` string every time the dashboard loads
    (@grafana/scenes ``CustomVariable.getValueOptions``), splitting it on every comma not written ``\\,`` and then
    each piece on ``' : '``. So a comma in a label is escaped, and a label may not hold ``' : '`` itself.
    """
    for value, text in values:
        if " : " in text or not value.isidentifier():
            raise ValueError(f"custom variable {name}: option {text!r} : {value!r} would not parse in Grafana")
    options = [{"selected": i == 0, "text": text, "value": value} for i, (value, text) in enumerate(values)]
    return {
        "type": "custom", "name": name, "label": label, "multi": False, "includeAll": False,
        "query": ",".join(f"{text.replace(',', chr(92) + ',')} : {value}" for value, text in values),
        "current": {"selected": True, "text": values[0][1], "value": values[0][0]}, "options": options,
    }


def dashboard(t: Tr, uid: str, title: str, description: str, panels: list[dict], variables: list[dict],
              time_from: str = "now-1y", tags: tuple[str, ...] = ()) -> dict[str, Any]:
    """The dashboard of language ``t.lang``: the English set gets uids ending in ``-en``; each set's links list the
    dashboards of its own language (tags ``brecha`` and the language)."""
    for i, p in enumerate(panels, start=1):
        p["id"] = i
        label_columns(p, t)
    return {
        "uid": uid if t.lang == "es" else f"{uid}-en", "title": title, "description": description,
        "tags": ["brecha", t.lang, *tags],
        "editable": False, "graphTooltip": 1, "schemaVersion": 41, "version": 1, "refresh": "",
        "time": {"from": time_from, "to": "now"}, "timepicker": {}, "timezone": "utc",
        "templating": {"list": variables}, "annotations": {"list": []}, "links": [
            {"title": t("Paneles de Brecha", "Brecha dashboards"), "type": "dashboards", "tags": ["brecha", t.lang],
             "asDropdown": True}],
        "panels": panels,
    }


def department_var(t: Tr) -> dict[str, Any]:
    return query_var("department", t("Departamento", "Department"),
                     "SELECT department FROM marts.dim_departments ORDER BY department")


def province_var(t: Tr) -> dict[str, Any]:
    return query_var("province", t("Provincia", "Province"),
                     f"SELECT DISTINCT province FROM marts.dim_districts WHERE {dept_filter()} ORDER BY province")


# --- 1. district map ------------------------------------------------------------------------------------------

# The districts the map draws: one row per district of the reference (marts.mart_district_profile, the serving mart
# the atlas and the API read too), with whether the boundary file has its polygon (map_shape 'polygon' / 'marker')
# and where its marker goes.
MAP_PROFILE = "SELECT * FROM marts.mart_district_profile"
DISTRICTS_WITHOUT_POLYGON = "SELECT count(*) FILTER (WHERE map_shape = 'marker') AS districts_without_polygon " \
                            "FROM marts.mart_district_profile"
MARKER = "img/icons/marker/{}.svg"


def district_map(t: Tr) -> dict[str, Any]:
    # the cluster option: LISA of the internet share oriented as need, a low district among low neighbours (a region
    # lagging together) first, a low district among high ones next (no SQL comments: panel SQL is one line)
    measure = custom_var("measure", t("Colorear por", "Colour by"), [
        ("internet_pct", t("Hogares con internet (%, censo 2017)", "Households with internet (%, census 2017)")),
        ("divide_index", t("Índice de brecha digital (0-100, mayor = más brecha)",
                           "Digital divide index (0-100, higher = wider)")),
        ("gap_pp", t("Brecha frente a la predicción (pp, negativo = por debajo de lo esperado)",
                     "Gap vs. prediction (pp, negative = below expected)")),
        ("priority_rank", t("Orden de prioridad: lente de brecha (1 = primero)",
                            "Priority rank: divide lens (1 = first)")),
        ("internet_cluster_need", t("Donde el bajo acceso a internet se agrupa (LISA: 100 = bajo-bajo)",
                                    "Where low internet clusters (LISA: 100 = low-low, lagging together)")),
    ])
    note = t("Sin polígono en el archivo de límites: triángulo en el centroide de referencia del INEI",
             "No polygon in the boundary file: a triangle at the INEI reference centroid")
    national = "FROM marts.fct_district_connectivity"

    def map_sql(shapes: str) -> str:
        return f"""
            WITH profile AS ({MAP_PROFILE}
            ), d AS (
                SELECT ubigeo, district, province, department, map_shape, marker_latitude AS latitude,
                       marker_longitude AS longitude, population, internet_pct, predicted_internet_pct, divide_index,
                       gap_pp, priority_rank, segment_label, internet_pct_cluster AS internet_cluster,
                       CASE internet_pct_cluster WHEN 'low-low' THEN 100 WHEN 'low-high' THEN 75
                            WHEN 'not significant' THEN 50 WHEN 'high-low' THEN 25 WHEN 'high-high' THEN 0
                       END::DOUBLE AS internet_cluster_need
                FROM profile
                WHERE {place_filter()}
            ), m AS (
                SELECT *, ${{measure:raw}} AS measure,
                       CASE ${{measure}} WHEN 'internet_pct' THEN -internet_pct WHEN 'divide_index' THEN divide_index
                            WHEN 'gap_pp' THEN -gap_pp WHEN 'priority_rank' THEN -priority_rank
                            WHEN 'internet_cluster_need' THEN internet_cluster_need END AS need,
                       round(population * (100 - coalesce(internet_pct, predicted_internet_pct)) / 100)
                           AS people_without_internet
                FROM d
            ), r AS (
                SELECT ubigeo, district, province, department, latitude, longitude, population,
                       people_without_internet, internet_pct, predicted_internet_pct, divide_index, gap_pp,
                       priority_rank, {segment_label_sql(t, "segment_label")} AS segment_label,
                       {cluster_sql(t, "internet_cluster")} AS internet_cluster, measure,
                       CASE WHEN need IS NOT NULL
                            THEN round(100 * percent_rank() OVER (PARTITION BY need IS NULL ORDER BY need), 1)
                       END AS need_percentile,
                       CASE WHEN map_shape = 'marker' THEN '{note}' END AS map_note
                FROM m
            )
            SELECT * FROM r
            WHERE map_note IS {shapes}
            ORDER BY need_percentile ASC NULLS FIRST, people_without_internet DESC"""

    def layer(name: str, ref: str, symbol: str, size: dict) -> dict[str, Any]:
        return {
            "type": "markers", "name": name, "tooltip": True, "filterData": {"id": "byRefId", "options": ref},
            "location": {"mode": "coords", "latitude": "latitude", "longitude": "longitude"},
            "config": {"showLegend": ref == "A", "style": {
                "color": {"field": "need_percentile", "fixed": "dark-green"}, "size": size, "opacity": 0.8,
                "symbol": {"mode": "fixed", "fixed": MARKER.format(symbol)}}},
        }

    panels = [
        stat(t("Distritos", "Districts"), "SELECT count(*) AS districts FROM marts.mart_district_profile", (0, 0, 5, 4),
             "districts", description=t("Distritos de la referencia más reciente del INEI (nacional).",
                                        "Districts in the latest INEI reference (national).")),
        stat(t("Distritos sin polígono (triángulos)", "Districts without a polygon (triangles)"),
             DISTRICTS_WITHOUT_POLYGON, (5, 0, 5, 4), "districts_without_polygon",
             description=t("Distritos que el archivo de límites no dibuja (creados después de él, o con geometría "
                           "vacía): el mapa los muestra igual, como triángulo en el centroide de referencia del "
                           "INEI, con la nota en la ventana emergente (nacional).",
                           "Districts the boundary file does not draw (created after it, or with an empty "
                           "geometry): the map still shows them, as a triangle at the INEI reference centroid, "
                           "with the note in the tooltip (national)."),
             thresholds=[{"color": "green", "value": None}, {"color": "blue", "value": 1}]),
        stat(t("Hogares con internet, media de distritos", "Mean internet share (districts)"),
             f"SELECT avg(internet_pct) AS mean_internet_pct {national}",
             (10, 0, 5, 4), "mean_internet_pct", unit="percent", decimals=1,
             description=t("Media simple, sobre los distritos, del porcentaje de hogares con internet del censo "
                           "2017 (nacional).",
                           "Unweighted mean over districts of the census 2017 share of households with internet "
                           "(national).")),
        stat(t("Hogares con internet, ponderado por población", "Internet share, population-weighted"),
             "SELECT sum(internet_pct * population) / sum(population) AS weighted_internet_pct "
             f"{national} WHERE internet_pct IS NOT NULL AND population IS NOT NULL",
             (15, 0, 5, 4), "weighted_internet_pct", unit="percent", decimals=1,
             description=t("Porcentaje de hogares con internet del censo 2017, cada distrito ponderado por su "
                           "población (nacional).",
                           "Census 2017 share of households with internet, each district weighted by its "
                           "population (national).")),
        stat(t("Distritos bajo 5 %", "Districts below 5 %"),
             f"SELECT count(*) FILTER (WHERE internet_pct < 5) AS districts_below_5 {national}",
             (20, 0, 4, 4), "districts_below_5",
             description=t("Distritos donde menos del 5 % de los hogares tenía internet (censo 2017), nacional.",
                           "Districts where fewer than 5 % of households had internet (census 2017), national."),
             thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}]),
        panel("geomap", t("Distritos coloreados por ${measure:text}", "Districts coloured by ${measure:text}"),
              map_sql("NULL"), (0, 4, 14, 20), more_targets=(("B", map_sql("NOT NULL")),),
              fields=("ubigeo", "latitude", "longitude", "measure", "need_percentile", "people_without_internet",
                      "map_note"),
              numeric=("latitude", "longitude", "measure", "need_percentile", "people_without_internet"),
              description=t(
                  "Un marcador por distrito en su centroide: un círculo por cada distrito que el archivo de límites "
                  "dibuja y un triángulo por cada distrito sin polígono (creado después del archivo, o con geometría "
                  "vacía), con la nota en la ventana emergente; ningún distrito de la referencia queda fuera. "
                  "Color: la posición del distrito, entre los mostrados, en la medida elegida arriba, orientada para "
                  "que el rojo sea siempre peor (bajo acceso a internet, brecha amplia, muy por debajo de lo que "
                  "espera el modelo, primero en prioridad o, en la opción de agrupamiento, parte de una zona donde "
                  "el acceso es bajo en conjunto: LISA bajo-bajo); 100 = peor. Tamaño: personas en hogares sin "
                  "internet (población × (100 − % de hogares con internet) / 100, la predicción del modelo donde "
                  "falta el dato del censo). Los peores se dibujan al final, encima de sus vecinos.",
                  "One marker per district at its centroid: a circle for each district the boundary file draws and "
                  "a triangle for each district without a polygon (created after the file, or with an empty "
                  "geometry), with the note in the tooltip; no district of the reference is left out. Colour: "
                  "where the district stands on the measure chosen above among the districts shown, oriented so "
                  "that red is always worse (low internet share, wide divide, far below the model's expectation, "
                  "first in priority, or, for the cluster option, part of a region where internet is low together: "
                  "LISA low-low); 100 = worst. Size: people living in households without internet (population × "
                  "(100 − internet share) / 100, the model's prediction where the census share is missing). The "
                  "worst districts are drawn last, on top of their neighbours."),
              defaults={"color": {"mode": "continuous-GrYlRd"}, "min": 0, "max": 100, "unit": "none"},
              overrides=[{"matcher": {"id": "byName", "options": "people_without_internet"},
                          "properties": [{"id": "unit", "value": "short"}, {"id": "min", "value": 0},
                                         {"id": "max"}]}],
              options={
                  "view": {"id": "coords", "lat": -9.2, "lon": -75.0, "zoom": 5},
                  "controls": {"showZoom": True, "mouseWheelZoom": True, "showAttribution": True},
                  # the default basemap loads map tiles from the internet; see grafana/README.md to switch it off
                  "basemap": {"type": "default", "name": t("Mapa base", "Basemap")},
                  "layers": [
                      layer(t("Distritos", "Districts"), "A", "circle",
                            {"field": "people_without_internet", "fixed": 5, "min": 3, "max": 18}),
                      layer(t("Distritos sin polígono", "Districts without a polygon"), "B", "triangle",
                            {"fixed": 9}),
                  ],
                  "tooltip": {"mode": "details"},
              }),
        panel("table", t("Distritos de mayor prioridad: lente de brecha", "Top-priority districts: divide lens"),
              f"""
            SELECT p.priority_rank, p.district, p.province, p.department,
                   round(p.internet_pct, 1) AS internet_pct, round(p.predicted_internet_pct, 1) AS predicted_pct,
                   round(p.lower_90, 1) AS lower_90, round(p.upper_90, 1) AS upper_90, round(p.gap_pp, 1) AS gap_pp,
                   round(p.divide_index, 1) AS divide_index, {segment_label_sql(t, "p.segment_label")} AS segment_label,
                   {segment_profile_sql(t)} AS segment_profile
            FROM marts.mart_district_priorities AS p
            LEFT JOIN ml.segment_profiles AS s ON s.run_id = p.run_id AND s.segment_id = p.segment_id
            WHERE {place_filter('p.')}
            ORDER BY p.priority_rank
            LIMIT 25""",
              (14, 4, 10, 20), fields=("priority_rank", "district", "gap_pp", "lower_90", "upper_90", "segment_label"),
              description=t("Distritos donde actuar primero según la lente de brecha (priority_rank: brecha más "
                            "ancha y proporción censal muy por debajo de lo que predice el perfil; la lente de "
                            "hogares sin internet, offline_priority_rank, está en marts.mart_district_priorities): "
                            "orden de prioridad, porcentaje de hogares "
                            "con internet del censo frente al predicho con su intervalo de 90 %, la brecha en "
                            "puntos porcentuales y el segmento del distrito (su perfil nombra los factores que "
                            "comparten distritos parecidos).",
                            "Districts to act on first by the divide lens (priority_rank: widest divide and census "
                            "share far below what the profile predicts; the households-offline lens, "
                            "offline_priority_rank, is in marts.mart_district_priorities): priority rank, census "
                            "share vs. predicted "
                            "share with its 90 % interval, the gap in percentage points, and the district's segment "
                            "(its profile names the drivers shared by similar districts)."),
              options={"showHeader": True, "cellHeight": "sm"}),
        panel("barchart", t("Qué explica la predicción (modelo seleccionado de la corrida del mapa)",
                            "What drives the prediction (selected model of the run behind the map)"), f"""
            SELECT coalesce(fl.label, f.feature) AS feature, f.importance_mean
            FROM ml.feature_importance AS f
            JOIN ml.model_runs AS r ON r.run_id = f.run_id AND r.model_name = f.model_name AND r.selected
            {feature_label_join(t)}
            WHERE f.run_id = (SELECT any_value(run_id) FROM marts.mart_district_priorities)
            ORDER BY f.rank
            LIMIT 12""",
              (0, 24, 24, 8), fields=("feature", "importance_mean"),
              description=t("Importancia por permutación de cada variable en el modelo seleccionado de la última "
                            "corrida: los factores nacionales de la adopción de internet en los hogares.",
                            "Permutation importance of each feature for the selected model of the latest run: "
                            "the national drivers of household internet adoption."),
              options={"orientation": "horizontal", "xField": "feature", "showValue": "never",
                       "legend": {"showLegend": False}}),
    ]
    return dashboard(t, "brecha-district-map", t("Brecha · Mapa distrital", "Brecha · District map"),
                     t("¿Dónde falta conectividad? Un marcador por distrito; filtre por departamento y provincia.",
                       "Where is connectivity missing? One marker per district; filter by department and province."),
                     panels, [department_var(t), province_var(t), measure], tags=("policymakers",))


# --- 2. department trends -------------------------------------------------------------------------------------

# The ENAHO series, split at the 2023 questionnaire change (P1144 counts any access from 2023, P114B1 is fixed
# internet): (field, (Spanish, English) label, mart column, years) -- each its own line, so none is drawn across the
# break.
SURVEY_SERIES = (
    ("hogar_hasta_2022", ("Internet del hogar (P1144, hasta 2022)", "Household internet (P1144, to 2022)"),
     "internet_pct", "year < 2023"),
    ("acceso_desde_2023", ("Cualquier acceso a internet (P1144, desde 2023)", "Any internet access (P1144, from 2023)"),
     "internet_pct", "year >= 2023"),
    ("fijo_desde_2023", ("Internet fijo (P114B1, desde 2023)", "Fixed internet (P114B1, from 2023)"),
     "fixed_internet_pct", "year >= 2023"),
)
PUNKU_SERIES = ("conexiones_fijas_por_100_hogares",
                ("Conexiones fijas por 100 hogares (PUNKU)", "Fixed connections per 100 households (PUNKU)"))
COLUMNS.update({  # the band's two edges of each survey series, named in both languages
    f"{field}_{edge}_90": (f"{es}: límite {word} del intervalo de 90 %", f"{en}: {bound} 90 % bound")
    for field, (es, en), _, _ in SURVEY_SERIES
    for edge, word, bound in (("inf", "inferior", "lower"), ("sup", "superior", "upper"))
})


def _survey_band(field: str, label: str, color: str) -> list[dict[str, Any]]:
    """A series named in the dashboard's language and its 90 % band (the two band lines hidden from the legend)."""
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


def department_trends(t: Tr) -> dict[str, Any]:
    colors = ("blue", "purple", "orange")
    overrides = [o for (field, label, _, _), color in zip(SURVEY_SERIES, colors, strict=True)
                 for o in _survey_band(field, t(*label), color)]
    overrides.append({"matcher": {"id": "byName", "options": PUNKU_SERIES[0]},
                      "properties": [{"id": "displayName", "value": t(*PUNKU_SERIES[1])},
                                     {"id": "color", "value": {"mode": "fixed", "fixedColor": "green"}},
                                     {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}]})
    combined = ",\n".join(
        f"sum(share * {column}) FILTER (WHERE {years}) AS {field}, "
        f"sqrt(sum(share * share * {column.replace('_pct', '_se')} * {column.replace('_pct', '_se')}) "
        f"FILTER (WHERE {years})) AS {field}_se" for field, _, column, years in SURVEY_SERIES)
    bands = ",\n".join(f"{field}, {field} - {Z90} * {field}_se AS {field}_inf_90, "
                        f"{field} + {Z90} * {field}_se AS {field}_sup_90" for field, _, _, _ in SURVEY_SERIES)
    survey_fields = tuple(f for field, _, _, _ in SURVEY_SERIES for f in (field, f"{field}_inf_90", f"{field}_sup_90"))
    nulls = ", ".join(f"NULL::DOUBLE AS {f}" for f in survey_fields)
    # (a department-year surveyed in one conglomerate has no standard error, so no band: it is not drawn; the SQL is
    # sent as one line, so it carries no comment)
    panels = [
        panel("timeseries", t("Hogares con internet (ENAHO) y conexiones fijas (PUNKU), departamentos del filtro",
                              "Households with internet (ENAHO) and fixed connections (PUNKU), departments of the "
                              "filter"), f"""
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
              description=t(f"Encuesta ENAHO (INEI): porcentaje de hogares, ponderado por FACTOR07, con su banda de "
                            f"90 % (valor ± {Z90}·error estándar de diseño). En 2023 cambió la pregunta: desde entonces "
                            "P1144 cuenta cualquier acceso a internet, incluidos los datos móviles de los miembros, y "
                            "P114B1 mide el internet fijo; por eso cada pregunta es una serie propia y ninguna línea "
                            "cruza 2023 (las series no son comparables). La línea discontinua verde son las conexiones "
                            "fijas de OSIPTEL PUNKU por cada 100 hogares (población / 3,5) al cierre de cada "
                            "trimestre. «All» combina departamentos ponderados por hogares. Un año con un solo "
                            "conglomerado encuestado en el departamento no tiene error estándar y no se dibuja.",
                            f"ENAHO survey (INEI): share of households, weighted by FACTOR07, with its 90 % band "
                            f"(value ± {Z90}·design standard error). In 2023 the question changed: since then P1144 "
                            "counts any internet access, members' mobile data included, and P114B1 measures fixed "
                            "internet; so each question is its own series and no line crosses 2023 (the series are not "
                            "comparable). The dashed green line is OSIPTEL PUNKU fixed connections per 100 households "
                            "(population / 3.5) at the end of each quarter. 'All' combines departments weighted by "
                            "households. A year with a single surveyed conglomerate in the department has no standard "
                            "error and is not drawn."),
              # each series joins its own points across the other series' rows; a series has no value on the other
              # side of 2023, so no line crosses the break
              defaults={"unit": "percent", "min": 0, "custom": {"fillOpacity": 0, "lineWidth": 2, "spanNulls": True}},
              overrides=overrides),
        panel("timeseries", t("Conexiones fijas a internet por tecnología, lugares del filtro",
                              "Fixed internet connections by technology, places of the filter"), f"""
            SELECT f.quarter_start::TIMESTAMP AS time, f.technology, sum(f.connections) AS connections
            FROM marts.fct_fixed_connections_quarterly AS f
            JOIN marts.dim_districts AS d USING (ubigeo)
            WHERE {place_filter('d.')}
              AND $__timeFilter(f.quarter_start::TIMESTAMP)
            GROUP BY ALL ORDER BY time, f.technology""",
              (12, 0, 12, 10), fmt="time_series", fields=("time", "technology", "connections"),
              description=t("Conexiones fijas de OSIPTEL PUNKU por trimestre, sumadas sobre empresas y segmentos. "
                            "Vacío cuando no se cargó un archivo de conexiones fijas.",
                            "OSIPTEL PUNKU fixed connections per quarter, summed over operators and segments. "
                            "Empty when no fixed-connections file was landed."), empty_when_filtered=True,
              defaults={"unit": "short", "custom": {"stacking": {"mode": "normal"}, "fillOpacity": 30}},
              overrides=[display("connections", "${__field.labels.technology}")]),
        panel("timeseries", t("Líneas móviles en servicio por departamento (sin valores atípicos)",
                              "Mobile lines in service by department (outliers excluded)"), f"""
            SELECT make_date(year, 1, 1)::TIMESTAMP AS time, department, lines
            FROM marts.fct_department_mobile_lines
            WHERE NOT is_outlier AND department_code IS NOT NULL AND {DEPT_CODE_FILTER}
              AND $__timeFilter(make_date(year, 1, 1)::TIMESTAMP)
            ORDER BY time, department""",
              (0, 10, 16, 10), fmt="time_series", fields=("time", "department", "lines"),
              description=t("OSIPTEL Cuadro 2.1. Los valores marcados como atípicos se excluyen aquí y se listan al "
                            "lado; los seudodepartamentos como «Lima y Callao» (sin código de departamento) también.",
                            "OSIPTEL Cuadro 2.1. Rows flagged as outliers are left out here and listed beside; "
                            "pseudo-departments such as 'Lima y Callao' (no department code) are left out too."),
              defaults={"unit": "short"}, overrides=[display("lines", "${__field.labels.department}")]),
        panel("table", t("Líneas móviles marcadas como atípicas", "Mobile lines flagged as outliers"), f"""
            SELECT department, year, lines, outlier_reason, source_file
            FROM marts.fct_department_mobile_lines
            WHERE is_outlier AND {DEPT_CODE_FILTER}
            ORDER BY department, year""",
              (16, 10, 8, 10), fields=("department", "year", "lines", "outlier_reason"),
              description=t("Valores que el pipeline marcó y dejó fuera del gráfico, con el motivo.",
                            "Values the pipeline flagged and kept out of the chart, with the reason."),
              may_be_empty="a department may have no flagged value"),
        panel("table", t("Adopción por departamento, último año de la encuesta",
                         "Adoption by department, latest survey year"), """
            SELECT department, year, round(internet_pct, 1) AS internet_pct, round(internet_se, 2) AS internet_se,
                   round(fixed_internet_pct, 1) AS fixed_internet_pct, round(fixed_internet_se, 2) AS fixed_internet_se,
                   round(mobile_pct, 1) AS mobile_pct, households_sampled
            FROM marts.fct_department_adoption_yearly
            WHERE year = (SELECT max(year) FROM marts.fct_department_adoption_yearly)
            ORDER BY internet_pct""",
              (0, 20, 24, 9), fields=("department", "year", "internet_pct", "internet_se"),
              description=t("Todos los departamentos en el último año de la ENAHO, primero el de menor porcentaje "
                            "de hogares con internet. Desde 2023 el porcentaje de hogares con internet (P1144) cuenta "
                            "cualquier acceso, datos móviles incluidos; el de internet fijo (P114B1) es el fijo.",
                            "All departments in the latest ENAHO year, lowest internet share first. From 2023 the "
                            "internet share (P1144) counts any access, mobile data included; fixed internet (P114B1) "
                            "is fixed access only.")),
    ]
    return dashboard(t, "brecha-department-trends",
                     t("Brecha · Tendencias por departamento", "Brecha · Department trends"),
                     t("¿Cómo cambia la adopción? Estimaciones de la ENAHO, conexiones fijas y líneas móviles en el "
                       "tiempo.",
                       "How is adoption changing? ENAHO survey estimates, fixed connections and mobile lines over "
                       "time."),
                     panels, [department_var(t), province_var(t)], time_from="now-15y", tags=("policymakers",))


# --- 3. model performance -------------------------------------------------------------------------------------

COVERAGE_THRESHOLDS = {"mode": "absolute", "steps": [
    {"color": "red", "value": None}, {"color": "orange", "value": 85}, {"color": "green", "value": 88}]}


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
                           "thresholds": COVERAGE_THRESHOLDS},
                 options={"orientation": "horizontal", "displayMode": "gradient",
                          "reduceOptions": {"values": True, "calcs": [], "fields": "/^coverage_pct$/"}})


def model_performance(t: Tr) -> dict[str, Any]:
    run_var = query_var("run_id", t("Corrida", "Run"),
                        "SELECT run_id FROM ml.model_runs GROUP BY run_id ORDER BY max(run_at) DESC",
                        include_all=False)
    run = "run_id = ${run_id}"
    coverage = "CASE WHEN interval_coverage <= 1 THEN 100 * interval_coverage ELSE interval_coverage END"
    panels = [
        panel("table", t("Modelos de la corrida ${run_id}", "Models of run ${run_id}"), f"""
            SELECT model_name, model_family, selected, round(cv_r2, 3) AS cv_r2, round(cv_mae, 2) AS cv_mae,
                   round(cv_rmse, 2) AS cv_rmse, round({coverage}, 1) AS interval_coverage_pct,
                   round(cv_r2_household_weighted, 3) AS cv_r2_households,
                   round(cv_mae_household_weighted, 2) AS cv_mae_households, run_at, seed
            FROM ml.model_runs WHERE {run} ORDER BY cv_rmse""",
              (0, 0, 14, 8), fields=("model_name", "cv_r2", "cv_mae", "cv_rmse", "interval_coverage_pct"),
              description=t("Validación cruzada espacial (se reservan departamentos enteros): R², MAE y RMSE en "
                            "puntos porcentuales; el modelo seleccionado alimenta las prioridades.",
                            "Spatial cross-validation (departments held out): R², MAE and RMSE in percentage "
                            "points; the selected model feeds the priorities.")),
        panel("bargauge", t("Cobertura del intervalo de 90 % (meta: 90 %)", "Coverage of the 90 % interval (target 90 %)"), f"""
            SELECT model_name, {coverage} AS interval_coverage_pct FROM ml.model_runs WHERE {run} ORDER BY model_name""",
              (14, 0, 10, 8), fields=("model_name", "interval_coverage_pct"),
              description=t("Proporción de distritos reservados cuyo valor del censo cayó dentro del intervalo de "
                            "90 %.",
                            "Share of held-out districts whose census value fell inside the 90 % interval."),
              defaults={"unit": "percent", "min": 0, "max": 100, "color": {"mode": "thresholds"},
                        "thresholds": COVERAGE_THRESHOLDS},
              options={"orientation": "horizontal", "displayMode": "gradient",
                       "reduceOptions": {"values": True, "calcs": [], "fields": "/^interval_coverage_pct$/"}}),
        panel("timeseries", t("RMSE de validación cruzada por corrida y modelo",
                              "Cross-validated RMSE per run and model"), """
            SELECT run_at AS time, model_name, cv_rmse FROM ml.model_runs WHERE $__timeFilter(run_at) ORDER BY time""",
              (0, 8, 12, 8), fmt="time_series", fields=("time", "model_name", "cv_rmse"),
              description=t("Menor es mejor; una serie por modelo a lo largo de las corridas.",
                            "Lower is better; one series per model across runs."),
              defaults={"unit": "none", "custom": {"drawStyle": "line", "showPoints": "always"}},
              overrides=[display("cv_rmse", "${__field.labels.model_name}")]),
        panel("table", t("Métricas por partición, corrida ${run_id}", "Fold metrics, run ${run_id}"), f"""
            SELECT model_name, fold, test_departments, n_test, round(r2, 3) AS r2, round(mae, 2) AS mae,
                   round(rmse, 2) AS rmse
            FROM ml.model_fold_metrics WHERE {run} ORDER BY model_name, fold""",
              (12, 8, 12, 8), fields=("model_name", "fold", "r2", "rmse"),
              description=t("Una fila por partición de departamentos reservados.",
                            "One row per held-out fold of departments.")),
        panel("barchart", t("Importancia de las variables (modelo seleccionado), corrida ${run_id}",
                            "Feature importance (selected model), run ${run_id}"), f"""
            SELECT coalesce(fl.label, f.feature) AS feature, f.importance_mean, f.importance_std
            FROM ml.feature_importance AS f
            JOIN ml.model_runs AS r ON r.run_id = f.run_id AND r.model_name = f.model_name AND r.selected
            {feature_label_join(t)}
            WHERE f.{run} ORDER BY f.rank LIMIT 20""",
              (0, 16, 12, 10), fields=("feature", "importance_mean"),
              description=t("Importancia por permutación (media de las repeticiones) del modelo seleccionado.",
                            "Permutation importance (mean over repeats) of the selected model."),
              options={"orientation": "horizontal", "xField": "feature", "showValue": "never",
                       "legend": {"showLegend": False}}),
        panel("table", t("Deriva de las variables, corrida ${run_id}", "Feature drift, run ${run_id}"), f"""
            SELECT coalesce(fl.label, f.feature) AS feature, round(f.psi_vs_previous, 3) AS psi_vs_previous,
                   round(f.mean, 3) AS mean, round(f.p50, 3) AS p50, round(f.null_share, 3) AS null_share,
                   CASE WHEN f.psi_vs_previous IS NULL THEN '{t("sin corrida anterior", "no previous run")}'
                        WHEN f.psi_vs_previous >= 0.25 THEN '{t("cambio mayor", "major shift")}'
                        WHEN f.psi_vs_previous >= 0.1 THEN '{t("cambio moderado", "moderate shift")}'
                        ELSE '{t("estable", "stable")}' END AS drift
            FROM ml.feature_drift AS f
            {feature_label_join(t)}
            WHERE f.{run} ORDER BY f.psi_vs_previous DESC NULLS LAST, f.feature""",
              (12, 16, 12, 10), fields=("feature", "psi_vs_previous", "drift"),
              description=t("Índice de estabilidad poblacional (PSI) de cada variable frente a la corrida anterior "
                            "(< 0,1 estable, 0,1–0,25 moderado, ≥ 0,25 mayor).",
                            "Population stability index of each feature against the previous run "
                            "(< 0.1 stable, 0.1–0.25 moderate, ≥ 0.25 major).")),
        coverage_by_group("department", t("Cobertura del intervalo de 90 % por departamento (modelo seleccionado, "
                                          "fuera de la partición), corrida ${run_id}",
                                          "Coverage of the 90 % interval by department (selected model, out of "
                                          "fold), run ${run_id}"),
                          "coalesce(d.department, c.group_value)", (0, 26, 12, 12),
                          t("Proporción de los distritos de cada departamento cuyo valor del censo cayó dentro del "
                            "intervalo de 90 % de un modelo que nunca vio el departamento. Bajo 85 % (rojo): ahí los "
                            "intervalos de 90 % son demasiado estrechos.",
                            "Share of each department's districts whose census value fell inside the 90 % interval "
                            "of a model that never saw the department. Below 85 % (red): the 90 % intervals are too "
                            "narrow there.")),
        coverage_by_group("predicted_level", t("Cobertura del intervalo de 90 % por nivel predicho, corrida ${run_id}",
                                               "Coverage of the 90 % interval by predicted level, run ${run_id}"),
                          "c.group_value", (12, 26, 12, 12),
                          t("La misma cobertura según el porcentaje predicho de hogares con internet (los intervalos de 90 % "
                            "se calibran por nivel predicho y tramo de pobreza del distrito, así que todo nivel debería acercarse al 90 %).",
                            "The same coverage by the predicted share of households online (the 90 % intervals are "
                            "calibrated per predicted level and poverty group of the district, so every level should be near 90 %).")),
        panel("table", t("Cifras sobre varias semillas (media ± DE), datos de la corrida ${run_id}",
                          "Figures over seeds (mean ± SD), data of run ${run_id}"), f"""
            SELECT model_name, bool_or(selected) AS served, count(DISTINCT seed) AS seeds,
                   round(avg(r2), 4) AS r2_mean, round(stddev_samp(r2), 4) AS r2_sd,
                   round(avg(mae), 3) AS mae_mean, round(stddev_samp(mae), 3) AS mae_sd,
                   round(avg(r2_household_weighted), 3) AS r2_households_mean,
                   round(avg(mae_lima_callao), 2) AS mae_lima_callao_mean,
                   round(100 * avg(interval_coverage), 1) AS coverage_pct_mean,
                   round(100 * avg(share_above_interval), 1) AS above_pct_mean,
                   round(100 * avg(share_below_interval), 1) AS below_pct_mean,
                   max(departments_below_85) AS departments_below_85_max
            FROM ml.seed_metrics
            WHERE data_fingerprint = (SELECT any_value(data_fingerprint) FROM ml.model_runs WHERE {run})
            GROUP BY model_name ORDER BY mae_mean""",
              (0, 38, 24, 8), fields=("model_name", "seeds", "r2_mean", "r2_sd", "mae_mean", "mae_sd"),
              description=t("Una corrida es una semilla. Validación cruzada espacial repetida con varias semillas "
                            "(`brecha seeds`; el entrenamiento añade la suya) sobre los mismos datos: media y "
                            "desviación estándar (DE) por modelo; publicado = el modelo que sirven las corridas; "
                            "cobertura del intervalo de 90 %.",
                            "One run is one seed. Spatial CV repeated over seeds (`brecha seeds`; training adds its "
                            "own) on the same data: mean and SD per model; served = the model the runs serve; "
                            "coverage of the 90 % interval.")),
    ]
    return dashboard(t, "brecha-model-performance", t("Brecha · Desempeño del modelo", "Brecha · Model performance"),
                     t("¿Qué tan buenas son las predicciones? Métricas de validación cruzada, cobertura de los "
                       "intervalos de 90 %, factores y deriva.",
                       "How good are the predictions? Cross-validated metrics, coverage of the 90 % intervals, "
                       "drivers and drift."),
                     panels, [run_var], time_from="now-1y", tags=("operators",))


# --- 4. data quality ------------------------------------------------------------------------------------------

def data_quality(t: Tr) -> dict[str, Any]:
    latest_batch = "(SELECT max(batch_id) FROM raw._batches)"
    panels = [
        stat(t("Antigüedad de la copia publicada (horas)", "Snapshot age (hours)"), """
            SELECT (epoch(now()) - epoch(max(published_at))) / 3600.0 AS snapshot_age_hours
            FROM ops.snapshots WHERE action = 'publish'""",
             (0, 0, 6, 4), "snapshot_age_hours", decimals=1,
             description=t("Horas desde que se publicó la copia que está mirando.",
                           "Hours since the serving copy you are looking at was published."),
             thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 48},
                         {"color": "red", "value": 168}]),
        stat(t("Último lote de carga", "Latest landing batch"), f"""
            SELECT batch_id AS latest_batch FROM raw._batches WHERE batch_id = {latest_batch}""",
             (6, 0, 6, 4), "latest_batch", description=t("Número del último `brecha ingest`.",
                                                         "Batch id of the latest `brecha ingest`.")),
        stat(t("Filas rechazadas, último lote", "Rows rejected, latest batch"), f"""
            SELECT coalesce(sum(rows_rejected), 0) AS rows_rejected FROM raw._batch_files WHERE batch_id = {latest_batch}""",
             (12, 0, 6, 4), "rows_rejected",
             description=t("Filas que no cumplieron el formato del archivo y fueron a raw._rejects en lugar de los "
                           "marts.",
                           "Rows that broke the layout contract and went to raw._rejects instead of the marts."),
             thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}]),
        stat(t("Expectativas fallidas, última validación", "Failed expectations, latest validation"), """
            WITH latest AS (SELECT gate, max(validated_at) AS at FROM ops.validation_results GROUP BY gate)
            SELECT count(*) FILTER (WHERE v.success = false) AS failed_expectations
            FROM ops.validation_results AS v JOIN latest AS l ON v.gate = l.gate AND v.validated_at = l.at""",
             (18, 0, 6, 4), "failed_expectations",
             description=t("Resultados de Great Expectations de la última validación de cada control (datos "
                           "cargados, marts).",
                           "Great Expectations results of the latest validation of each gate (landed, marts)."),
             thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}]),
        panel("table", t("Filas cargadas y rechazadas por fuente y lote", "Rows landed and rejected per source and batch"), """
            SELECT batch_id, entity, source_file, rows_landed, rows_rejected,
                   round(100.0 * rows_rejected / nullif(rows_landed + rows_rejected, 0), 2) AS rejected_pct,
                   newly_landed
            FROM raw._batch_files ORDER BY batch_id DESC, entity, source_file""",
              (0, 4, 14, 10), fields=("batch_id", "entity", "rows_landed", "rows_rejected"),
              description=t("Cada archivo cargado: dónde se cargó, cuántas filas y cuántas rechazadas (cargado por "
                            "primera vez = falso: los mismos bytes ya se habían cargado).",
                            "Every landed file: where it landed, how many rows, how many rejected "
                            "(newly_landed = false: the same bytes had been landed before).")),
        panel("barchart", t("Filas rechazadas por fuente, último lote", "Rows rejected per source, latest batch"), f"""
            SELECT entity, sum(rows_rejected) AS rows_rejected
            FROM raw._batch_files WHERE batch_id = {latest_batch} GROUP BY entity ORDER BY entity""",
              (14, 4, 10, 10), fields=("entity", "rows_rejected"),
              options={"orientation": "horizontal", "xField": "entity", "showValue": "auto",
                       "legend": {"showLegend": False}}),
        panel("table", t("Motivos de rechazo", "Reject reasons"), """
            SELECT entity, reason, column_name, sum(rows_rejected) AS rows_rejected, min(example_value) AS example_value,
                   count(DISTINCT source_file) AS files
            FROM ops.rejects_summary GROUP BY ALL ORDER BY rows_rejected DESC""",
              (0, 14, 12, 9), fields=("entity", "reason", "rows_rejected"),
              description=t("Por qué se rechazaron filas al cargar (raw._rejects, resumido al publicar).",
                            "Why rows were rejected at landing (raw._rejects, summarised at publish)."),
              may_be_empty="a clean landing rejects nothing"),
        panel("table", t("Resultados de validación por control y conjunto", "Validation results per gate and suite"), f"""
            WITH gates AS (SELECT * FROM (VALUES ('landed'), ('marts')) AS g(gate)),
                 latest AS (SELECT gate, max(validated_at) AS at FROM ops.validation_results GROUP BY gate)
            SELECT g.gate, coalesce(v.suite, '{t("(sin validar)", "(not validated)")}') AS suite, l.at AS validated_at,
                   count(v.expectation) AS expectations,
                   count(*) FILTER (WHERE v.success) AS passed,
                   count(*) FILTER (WHERE v.success = false) AS failed
            FROM gates AS g
            LEFT JOIN latest AS l ON l.gate = g.gate
            LEFT JOIN ops.validation_results AS v ON v.gate = g.gate AND v.validated_at = l.at
            GROUP BY ALL ORDER BY failed DESC, g.gate, suite""",
              (12, 14, 12, 9), fields=("gate", "suite", "expectations", "passed", "failed"),
              description=t("Última corrida de Great Expectations de cada control; un control que nunca corrió "
                            "muestra «(sin validar)».",
                            "Latest Great Expectations run of each gate; a gate that never ran shows "
                            "'(not validated)'.")),
        panel("table", t("Expectativas fallidas (última validación)", "Failed expectations (latest validation)"), """
            WITH latest AS (SELECT gate, max(validated_at) AS at FROM ops.validation_results GROUP BY gate)
            SELECT v.gate, v.suite, v.expectation, v.column_name, v.observed_value, v.unexpected_count, v.why
            FROM ops.validation_results AS v JOIN latest AS l ON v.gate = l.gate AND v.validated_at = l.at
            WHERE v.success = false ORDER BY v.gate, v.suite""",
              (0, 23, 24, 7), fields=("gate", "suite", "expectation", "observed_value"),
              description=t("Vacío cuando toda expectativa se cumplió (un fallo detiene el pipeline antes de "
                            "publicar).",
                            "Empty when every expectation passed (a failure stops the pipeline before publishing)."),
              may_be_empty="no failed expectation is the healthy state"),
        panel("table", t("Historial de publicaciones", "Publish history"), """
            SELECT published_at, action, snapshot_id, run_id, batch_id, row_counts
            FROM ops.snapshots ORDER BY published_at DESC""",
              (0, 30, 24, 7), fields=("published_at", "snapshot_id", "run_id"),
              description=t("Cada publicación registrada hasta esta copia (las vueltas atrás se registran en el "
                            "almacén).",
                            "Every publish recorded up to this serving copy (rollbacks are recorded in the "
                            "warehouse).")),
    ]
    return dashboard(t, "brecha-data-quality", t("Brecha · Calidad de datos", "Brecha · Data quality"),
                     t("¿Puedo confiar en lo que veo? Carga, rechazos, controles de validación y antigüedad de la "
                       "copia publicada.",
                       "Can I trust what I see? Landing, rejects, validation gates and the age of the serving copy."),
                     panels, [], time_from="now-30d", tags=("operators",))


DASHBOARDS = {
    "district_map.json": district_map,
    "department_trends.json": department_trends,
    "model_performance.json": model_performance,
    "data_quality.json": data_quality,
}


def path_of(name: str, lang: str) -> str:
    """Where a dashboard's JSON goes, relative to grafana/dashboards: Spanish at the top, English under en/."""
    return name if lang == "es" else f"{lang}/{name}"


def render() -> dict[str, str]:
    """Path under grafana/dashboards -> JSON text, for every dashboard in every language."""
    return {path_of(name, lang): json.dumps(build(Tr(lang)), indent=2, ensure_ascii=False) + "\n"
            for lang in LANGS for name, build in DASHBOARDS.items()}


def main() -> None:
    for name, text in render().items():
        path = OUT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
