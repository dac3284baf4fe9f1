"""`brecha atlas`: a self-contained, printable HTML atlas of the districts, from the serving copy only.

Why inline SVG written here (and not a plotting library): the atlas must open from a file with no network
(no CDN, no tiles), print one department per page, be byte-for-byte the same for the same serving copy, and
stay small. Each district polygon is projected once (equirectangular around Peru's mean latitude, 0.001° grid,
integer coordinates, relative path commands, simplified by 1.5 grid units ≈ 150 m) into a hidden ``<defs>``;
every map (six national maps, one per department) then places ``<use href="#d-<ubigeo>" fill="…">`` elements,
so a polygon's outline is written once however many maps draw it. There is no script at all: the maps are
static SVG, readable by any browser and by print-to-PDF.

Colour direction: on every map, darker red = worse (less internet, wider divide, further below the model's
prediction); grey = no value; districts without a polygon are listed in a note, not drawn.
"""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from brecha.config import paths
from brecha.db import table_exists
from brecha.errors import BrechaError
from brecha.files import write_atomic
from brecha.publish import current_snapshot
from brecha_ml.priority import persons_per_household

GRID = 1000.0  # grid units per degree of latitude
SIMPLIFY = 1.5  # grid units
TOP_PER_DEPARTMENT = 6
NO_VALUE = "#d9d9d9"
# ColorBrewer sequential YlOrRd (5 classes): index 0 = best, 4 = worst
WORSE_SCALE = ("#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026")
# ColorBrewer diverging RdBu (6 classes), from far below the prediction (red) to far above (blue)
GAP_SCALE = ("#b2182b", "#ef8a62", "#fddbc7", "#d1e5f0", "#67a9cf", "#2166ac")
GAP_BREAKS = (-10.0, -5.0, 0.0, 5.0, 10.0)
# LISA colours by meaning, so red is "worse" as on the choropleths: a region that lags together is dark red, one
# that does well together dark blue, a lagging district among better ones orange, the reverse light blue.
LAGGING_TOGETHER, AHEAD_TOGETHER, LAGGING_OUTLIER, AHEAD_OUTLIER = "#d7191c", "#2c7bb6", "#fdae61", "#abd9e9"
NOT_SIGNIFICANT_COLOUR = "#f2f2f2"


def cluster_colours(worse_when_high: bool) -> dict[str, str]:
    worse, better = ("high", "low") if worse_when_high else ("low", "high")
    return {f"{worse}-{worse}": LAGGING_TOGETHER, f"{better}-{better}": AHEAD_TOGETHER,
            f"{worse}-{better}": LAGGING_OUTLIER, f"{better}-{worse}": AHEAD_OUTLIER,
            "not significant": NOT_SIGNIFICANT_COLOUR}


@dataclass(frozen=True)
class Measure:
    column: str
    title: str
    unit: str
    worse_when_high: bool
    meaning: dict[str, str] = field(default_factory=dict)  # cluster label -> what it means for this measure


MEASURES = (
    Measure("internet_pct", "Households with internet (Census 2017)", "%", False,
            {"low-low": "a region lagging together (low share among low neighbours)",
             "high-high": "a connected region", "low-high": "a lagging district among connected ones",
             "high-low": "a connected district among lagging ones"}),
    Measure("divide_index", "Digital divide index (0 = narrowest, 100 = widest)", "", True,
            {"high-high": "a region where the divide is wide together", "low-low": "a region with a narrow divide",
             "high-low": "a wide divide among narrow ones", "low-high": "a narrow divide among wide ones"}),
    Measure("gap_pp", "Gap: census share minus the model's prediction (pp)", " pp", False,
            {"low-low": "districts below what the model expects, together",
             "high-high": "districts above what the model expects, together",
             "low-high": "below the model among districts above it", "high-low": "above the model among districts below it"}),
)


@dataclass
class AtlasResult:
    path: Path
    size_bytes: int
    departments: int
    drawn: int
    without_polygon: int
    seconds: float

    def __str__(self) -> str:
        return (f"atlas {self.path} ({self.size_bytes / 1e6:.2f} MB): {self.departments} department pages, "
                f"{self.drawn:,} district polygons, {self.without_polygon} districts without a polygon, "
                f"{self.seconds:.1f} s")


# --- geometry ---------------------------------------------------------------------------------------------------

@dataclass
class Projection:
    lon0: float
    lat1: float  # northernmost latitude (y = 0)
    kx: float

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        return (lon - self.lon0) * self.kx * GRID, (self.lat1 - lat) * GRID


def _polygons(geojson: dict) -> list[list[list[list[float]]]]:
    if geojson["type"] == "Polygon":
        return [geojson["coordinates"]]
    if geojson["type"] == "MultiPolygon":
        return list(geojson["coordinates"])
    return []


def _ring_path(points: list[tuple[int, int]]) -> str:
    out = [f"M{points[0][0]} {points[0][1]}"]
    px, py = points[0]
    steps = []
    for x, y in points[1:]:
        if (x, y) != (px, py):
            steps.append(f"{x - px} {y - py}")
            px, py = x, y
    out.append("l" + " ".join(steps) + "z")
    return "".join(out)


def svg_path(geojson: dict, proj: Projection) -> tuple[str, tuple[float, float, float, float]]:
    """SVG path data of a (Multi)Polygon on the integer grid, and its bounding box in grid units."""
    from shapely.geometry import Polygon

    parts, xs, ys = [], [], []
    for poly in _polygons(geojson):
        rings = [[proj.xy(lon, lat) for lon, lat, *_ in ring] for ring in poly if len(ring) >= 4]
        if not rings:
            continue
        simple = Polygon(rings[0], rings[1:]).simplify(SIMPLIFY, preserve_topology=True)
        if simple.is_empty:
            simple = Polygon(rings[0])
        for ring in [simple.exterior, *simple.interiors]:
            pts = [(round(x), round(y)) for x, y in ring.coords]
            if len(set(pts)) < 3:
                continue
            xs += [p[0] for p in pts]
            ys += [p[1] for p in pts]
            parts.append(_ring_path(pts))
    if not parts:
        return "", (0, 0, 0, 0)
    return "".join(parts), (min(xs), min(ys), max(xs), max(ys))


# --- data -------------------------------------------------------------------------------------------------------

def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> set[str]:
    return {r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE schema_name = ? "
                                      "AND table_name = ?", [schema, table]).fetchall()}


@dataclass
class AtlasData:
    districts: pd.DataFrame
    boundaries: dict[str, str]
    departments: pd.DataFrame
    department_outlines: dict[str, str]
    trend: pd.DataFrame
    moran: pd.DataFrame
    snapshot: str
    proj: Projection
    paths: dict[str, str]
    bbox: dict[str, tuple[float, float, float, float]]
    fixed: pd.DataFrame = field(default_factory=pd.DataFrame)  # PUNKU connections per 100 households by quarter


def load(con: duckdb.DuckDBPyConnection) -> AtlasData:
    """Everything the atlas shows, from the marts of ``con`` (the serving copy)."""
    for table in ("dim_districts", "mart_digital_divide_index", "dim_district_boundaries"):
        if not table_exists(con, "marts", table):
            raise BrechaError(f"the serving copy has no marts.{table}: run `brecha run` (or `brecha build` then "
                              "`brecha publish`) first")
    has_priorities = table_exists(con, "marts", "mart_district_priorities")
    has_clusters = table_exists(con, "marts", "mart_district_clusters")
    pcols = _columns(con, "marts", "mart_district_priorities") if has_priorities else set()
    oof = "p.is_out_of_fold" if "is_out_of_fold" in pcols else "NULL::BOOLEAN"
    pri = ("p.predicted_internet_pct, p.lower_90, p.upper_90, p.gap_pp, p.priority_rank, " + oof + " AS is_out_of_fold"
           if has_priorities else "NULL::DOUBLE AS predicted_internet_pct, NULL::DOUBLE AS lower_90, "
           "NULL::DOUBLE AS upper_90, NULL::DOUBLE AS gap_pp, NULL::INTEGER AS priority_rank, "
           "NULL::BOOLEAN AS is_out_of_fold")
    clu = ("c.internet_pct_cluster, c.divide_index_cluster, c.gap_pp_cluster" if has_clusters else
           "NULL::VARCHAR AS internet_pct_cluster, NULL::VARCHAR AS divide_index_cluster, "
           "NULL::VARCHAR AS gap_pp_cluster")
    districts = con.execute(f"""
        SELECT d.ubigeo, d.district, d.province, d.department, d.department_code, d.longitude, d.latitude,
               d.population, f.internet_pct, x.divide_index, x.national_rank, x.infrastructure_score,
               x.adoption_score, x.socioeconomic_score, {pri}, {clu}
        FROM marts.dim_districts d
        LEFT JOIN marts.fct_district_connectivity f USING (ubigeo)
        LEFT JOIN marts.mart_digital_divide_index x USING (ubigeo)
        {"LEFT JOIN marts.mart_district_priorities p USING (ubigeo)" if has_priorities else ""}
        {"LEFT JOIN marts.mart_district_clusters c USING (ubigeo)" if has_clusters else ""}
        ORDER BY d.ubigeo""").df()
    boundaries = dict(con.execute("SELECT ubigeo, geometry_geojson FROM marts.dim_district_boundaries "
                                  "ORDER BY ubigeo").fetchall())
    outlines = (dict(con.execute("SELECT department_code, geometry_geojson FROM marts.dim_department_boundaries "
                                 "ORDER BY department_code").fetchall())
                if table_exists(con, "marts", "dim_department_boundaries") else {})
    departments = (districts.groupby(["department_code", "department"], as_index=False)
                   .agg(n_districts=("ubigeo", "size"), population=("population", "sum"))
                   .sort_values("department_code").reset_index(drop=True))
    trend = (con.execute("SELECT department_code, year, internet_pct, internet_se, fixed_internet_pct, "
                         "fixed_internet_se, households_sampled "
                         "FROM marts.fct_department_adoption_yearly WHERE internet_pct IS NOT NULL "
                         "AND internet_se IS NOT NULL "  # one conglomerate: no standard error, no band; not drawn
                         "ORDER BY department_code, year").df()
             if table_exists(con, "marts", "fct_department_adoption_yearly") else pd.DataFrame())
    fixed = (con.execute("SELECT department_code, year(quarter_start) + (month(quarter_start) + 2) / 12.0 AS t, "
                         "connections_per_100_households FROM marts.fct_department_fixed_connections_quarterly "
                         "ORDER BY department_code, t").df()
             if table_exists(con, "marts", "fct_department_fixed_connections_quarterly") else pd.DataFrame())
    moran = (con.execute("SELECT * FROM marts.mart_spatial_autocorrelation ORDER BY measure").df()
             if table_exists(con, "marts", "mart_spatial_autocorrelation") else pd.DataFrame())
    current = current_snapshot(con)
    snapshot = "" if current is None else (
        f"snapshot {current['snapshot_id']}" + (f", model run {current['run_id']}" if current["run_id"] else ""))

    geo = {u: json.loads(t) for u, t in boundaries.items() if t}
    lats = [lat for g in geo.values() for p in _polygons(g) for ring in p for _, lat, *_ in ring]
    lons = [lon for g in geo.values() for p in _polygons(g) for ring in p for lon, *_ in ring]
    if not lats:
        raise BrechaError("marts.dim_district_boundaries has no polygon: land the district boundaries GeoJSON")
    mid = (min(lats) + max(lats)) / 2
    proj = Projection(lon0=min(lons), lat1=max(lats), kx=math.cos(math.radians(mid)))
    svg_paths, bbox = {}, {}
    for u, g in geo.items():
        d, b = svg_path(g, proj)
        if d:
            svg_paths[u], bbox[u] = d, b
    outline_paths = {}
    for code, text in outlines.items():
        if text:
            d, _ = svg_path(json.loads(text), proj)
            if d:
                outline_paths[code] = d
    return AtlasData(districts=districts, boundaries=boundaries, departments=departments,
                     department_outlines=outline_paths, trend=trend, moran=moran, snapshot=snapshot, proj=proj,
                     paths=svg_paths, bbox=bbox, fixed=fixed)


# --- colours and words ------------------------------------------------------------------------------------------

def quantile_breaks(values: pd.Series, classes: int = 5) -> list[float]:
    """Inner class breaks at the quantiles of the known values (duplicates dropped: skewed shares)."""
    v = values.dropna().astype(float)
    if v.empty:
        return []
    qs = [float(v.quantile(i / classes)) for i in range(1, classes)]
    return sorted(set(round(q, 1) for q in qs))


def colour_for(value: float | None, breaks: list[float], worse_when_high: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NO_VALUE
    idx = sum(value > b for b in breaks)  # 0 .. len(breaks)
    n = len(breaks) + 1
    scale = WORSE_SCALE if n == len(WORSE_SCALE) else _resample(WORSE_SCALE, n)
    return scale[idx] if worse_when_high else scale[n - 1 - idx]


def _resample(scale: tuple[str, ...], n: int) -> tuple[str, ...]:
    if n == 1:
        return (scale[-1],)
    return tuple(scale[round(i * (len(scale) - 1) / (n - 1))] for i in range(n))


def gap_colour(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NO_VALUE
    return GAP_SCALE[sum(value > b for b in GAP_BREAKS)]


def _fmt(v: float | None, digits: int = 1, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:,.{digits}f}{unit}"


def reason(row: pd.Series, persons: float = 3.5) -> str:
    """Why a district ranks high, in words: how many households are offline, how far its census share falls
    below what the model expects from its profile (against the 90 % interval), whether its neighbours lag
    too, and the divide index with its weakest part."""
    words = []
    share = row.internet_pct if pd.notna(row.internet_pct) else row.predicted_internet_pct
    if pd.notna(row.population) and pd.notna(share):
        offline = row.population / persons * (1 - share / 100)
        words.append(f"about {offline:,.0f} households offline")
    if pd.notna(row.gap_pp) and pd.notna(row.internet_pct):
        if row.gap_pp < 0:
            edge = (" — below its 90 % interval" if pd.notna(row.lower_90) and row.internet_pct < row.lower_90
                    else " (within its 90 % interval)")
            words.append(f"{-row.gap_pp:.1f} pp below the {row.predicted_internet_pct:.1f} % its profile predicts{edge}")
        else:
            words.append("online share at or above what its profile predicts")
    elif pd.isna(row.internet_pct):
        words.append("no census share: the prediction stands in")
    if row.internet_pct_cluster == "low-low":
        words.append("its neighbours lag too (low-low internet cluster)")
    elif row.internet_pct_cluster == "low-high":
        words.append("lags while its neighbours are connected (low-high)")
    if pd.notna(row.divide_index):
        words.append(f"divide index {row.divide_index:.0f}/100 (rank {int(row.national_rank):,} of Peru)")
    scores = {"infrastructure": row.infrastructure_score, "adoption": row.adoption_score,
              "socioeconomic conditions": row.socioeconomic_score}
    known = {k: v for k, v in scores.items() if pd.notna(v)}
    if known:
        worst = max(known, key=lambda k: (known[k], k))
        if known[worst] >= 50:  # only a weakness when worse than the median district
            words.append(f"weakest on {worst} (worse than {known[worst]:.0f} % of districts)")
    text = "; ".join(words)
    return text[:1].upper() + text[1:] + "."


# --- rendering --------------------------------------------------------------------------------------------------

def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def _viewbox(boxes: list[tuple[float, float, float, float]], pad: float = 0.03) -> str:
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    w, h = max(x1 - x0, 1), max(y1 - y0, 1)
    return f"{x0 - w * pad:.0f} {y0 - h * pad:.0f} {w * (1 + 2 * pad):.0f} {h * (1 + 2 * pad):.0f}"


def map_svg(data: AtlasData, fills: dict[str, str], *, map_id: str, ubigeos: list[str] | None = None,
            titles: dict[str, str] | None = None, outlines: list[str] | None = None,
            labels: dict[str, str] | None = None) -> str:
    """One map: a ``<use>`` per district polygon, filled; optional department outlines and point labels."""
    drawn = [u for u in (ubigeos if ubigeos is not None else sorted(data.paths)) if u in data.paths]
    if not drawn:
        return '<p class="note">No district of this department has a polygon in the boundaries file.</p>'
    vb = _viewbox([data.bbox[u] for u in drawn])
    out = [f'<svg class="map" id="{map_id}" viewBox="{vb}" role="img" preserveAspectRatio="xMidYMid meet">']
    for u in drawn:
        title = f"<title>{_esc(titles[u])}</title>" if titles and u in titles else ""
        out.append(f'<use href="#d-{u}" data-ubigeo="{u}" fill="{fills.get(u, NO_VALUE)}">{title}</use>')
    for code in outlines or []:
        if code in data.department_outlines:
            out.append(f'<use href="#o-{code}" class="outline"/>')
    if labels:
        vw = float(vb.split()[2])
        r = vw / 90
        for u, text in labels.items():
            row = data.districts.loc[data.districts.ubigeo == u].iloc[0]
            x, y = data.proj.xy(row.longitude, row.latitude)
            out.append(f'<g class="label"><circle cx="{x:.0f}" cy="{y:.0f}" r="{r:.0f}"/>'
                       f'<text x="{x:.0f}" y="{y:.0f}" font-size="{r * 1.3:.0f}" dy="{r * 0.45:.0f}">{_esc(text)}</text></g>')
    out.append("</svg>")
    return "".join(out)


def legend(items: list[tuple[str, str]]) -> str:
    return '<ul class="legend">' + "".join(
        f'<li><span class="swatch" style="background:{c}"></span>{_esc(t)}</li>' for c, t in items) + "</ul>"


def _class_labels(breaks: list[float], unit: str, worse_when_high: bool) -> list[tuple[str, str]]:
    edges = ["min", *[f"{b:g}{unit}" for b in breaks], "max"]
    items = []
    for i in range(len(breaks) + 1):
        colour = colour_for((breaks[i - 1] + 1e-9) if i else -math.inf, breaks, worse_when_high) if breaks else \
            colour_for(0.0, [], worse_when_high)
        items.append((colour, f"{edges[i]} – {edges[i + 1]}"))
    return items


NEW_QUESTIONNAIRE = 2023  # ENAHO: from this year P1144 counts any internet access and P114B1 is fixed internet
Z90 = 1.645
# (column, years, css class, Spanish label): each question its own line, none drawn across the 2023 break
TREND_SERIES = (
    ("internet_pct", "before", "s-hogar", "Internet del hogar (P1144, hasta 2022)"),
    ("internet_pct", "after", "s-acceso", "Cualquier acceso (P1144, desde 2023)"),
    ("fixed_internet_pct", "after", "s-fijo", "Internet fijo (P114B1, desde 2023)"),
)


def trend_svg(trend: pd.DataFrame, fixed: pd.DataFrame | None = None) -> str:
    """ENAHO's shares of households by year with their 90 % bands (± 1.645 design standard errors), one line per
    question on each side of the 2023 questionnaire change (marked), and PUNKU's fixed connections per 100
    households by quarter (dashed)."""
    if trend.empty:
        return '<p class="note">Sin años de la encuesta ENAHO para este departamento.</p>'
    fixed = fixed if fixed is not None else pd.DataFrame()
    w, h, m = 360, 200, 34
    years = trend["year"].astype(int).tolist()
    x0 = min([*years, *(fixed["t"].tolist() if len(fixed) else [])])
    x1 = max([*years, *(fixed["t"].tolist() if len(fixed) else [])])
    series = []
    for column, side, css, label in TREND_SERIES:
        sel = trend[(trend.year < NEW_QUESTIONNAIRE) if side == "before" else (trend.year >= NEW_QUESTIONNAIRE)]
        sel = sel[sel[column].notna()]
        if len(sel):
            se = sel[column.replace("_pct", "_se")].fillna(0)
            series.append((sel.year.astype(int).tolist(), sel[column].tolist(), (sel[column] - Z90 * se).clip(lower=0)
                           .tolist(), (sel[column] + Z90 * se).clip(upper=100).tolist(), css, label))
    top = max([max(s[3]) for s in series] + (fixed["connections_per_100_households"].tolist() if len(fixed) else []))
    ymax = max(10.0, math.ceil(float(top) / 10) * 10)

    def sx(y: float) -> float:
        return m + (w - m - 10) * ((y - x0) / (x1 - x0) if x1 > x0 else 0.5)

    def sy(v: float) -> float:
        return h - 62 - (h - 72) * v / ymax

    parts = [f'<svg class="trend" viewBox="0 0 {w} {h}" role="img">']
    if min(years) < NEW_QUESTIONNAIRE <= max(years):
        bx = sx(NEW_QUESTIONNAIRE - 0.5)
        parts.append(f'<line x1="{bx:.1f}" x2="{bx:.1f}" y1="{sy(ymax):.1f}" y2="{sy(0):.1f}" class="break">'
                     '<title>2023: cambia la pregunta P1144 (cualquier acceso, datos móviles incluidos); las series '
                     'no son comparables</title></line>')
        parts.append(f'<text x="{bx - 2:.1f}" y="{sy(0) - 3:.1f}" class="axis" text-anchor="end">cambio de '
                     'cuestionario →</text>')
    for ys, vs, lo, hi, css, label in series:
        band = " ".join(f"{sx(y):.1f},{sy(v):.1f}" for y, v in zip(ys, hi, strict=True))
        band += " " + " ".join(f"{sx(y):.1f},{sy(v):.1f}" for y, v in zip(reversed(ys), reversed(lo), strict=True))
        parts.append(f'<polygon points="{band}" class="band {css}"/>')
        parts.append(f'<polyline points="{" ".join(f"{sx(y):.1f},{sy(v):.1f}" for y, v in zip(ys, vs, strict=True))}" '
                     f'class="line {css}"><title>{label}</title></polyline>')
        for y, v in zip(ys, vs, strict=True):
            parts.append(f'<circle cx="{sx(y):.1f}" cy="{sy(v):.1f}" r="2.5" class="dot {css}"><title>{label}, {y}: '
                         f'{v:.1f} %</title></circle>')
    if len(fixed):
        pts = " ".join(f"{sx(t):.1f},{sy(v):.1f}" for t, v in zip(fixed.t, fixed.connections_per_100_households,
                                                                   strict=True))
        parts.append(f'<polyline points="{pts}" class="line s-punku"><title>Conexiones fijas por 100 hogares '
                     '(PUNKU)</title></polyline>')
    for t in (0, ymax / 2, ymax):
        parts.append(f'<text x="{m - 4}" y="{sy(t) + 3:.1f}" class="axis" text-anchor="end">{t:.0f}</text>')
    for y in sorted({int(x0), int(x1)}):
        parts.append(f'<text x="{sx(y):.1f}" y="{sy(0) + 11:.1f}" class="axis" text-anchor="middle">{y}</text>')
    legend = [(css, label) for *_, css, label in series] + ([("s-punku", "Conexiones fijas por 100 hogares (PUNKU)")]
                                                          if len(fixed) else [])
    for i, (css, label) in enumerate(legend):
        x, y = m, h - 4 - 10 * (len(legend) - 1 - i)
        parts.append(f'<line x1="{x}" x2="{x + 12}" y1="{y - 3}" y2="{y - 3}" class="line {css}"/>'
                     f'<text x="{x + 15}" y="{y}" class="axis">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render(data: AtlasData) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    d = data.districts
    by_u = d.set_index("ubigeo")
    national = []
    for m in MEASURES:
        values = by_u[m.column]
        if m.column == "gap_pp":
            fills = {u: gap_colour(v) for u, v in values.items()}
            items = [(GAP_SCALE[0], f"below by more than {-GAP_BREAKS[0]:g} pp")]
            items += [(GAP_SCALE[i + 1], f"{GAP_BREAKS[i]:+g} to {GAP_BREAKS[i + 1]:+g} pp") for i in range(len(GAP_BREAKS) - 1)]
            items += [(GAP_SCALE[-1], f"above by more than {GAP_BREAKS[-1]:g} pp")]
            direction = "red: the census share is below what the model predicts from the district's profile"
        else:
            breaks = quantile_breaks(values)
            fills = {u: colour_for(v, breaks, m.worse_when_high) for u, v in values.items()}
            items = _class_labels(breaks, m.unit, m.worse_when_high)
            direction = "darker red = " + ("wider divide" if m.worse_when_high else "fewer households online")
        items.append((NO_VALUE, "no value"))
        known = values.notna()
        national.append({
            "id": f"map-{m.column}", "title": m.title, "direction": direction,
            "svg": map_svg(data, {u: f for u, f in fills.items() if u in data.paths}, map_id=f"map-{m.column}",
                           outlines=sorted(data.department_outlines)),
            "legend": legend(items), "n_known": int(known.sum()),
            "n_known_drawn": int(sum(1 for u in values[known].index if u in data.paths)),
        })
    clusters = []
    for m in MEASURES:
        col = f"{m.column}_cluster"
        labels = by_u[col]
        if labels.isna().all():
            continue
        colours = cluster_colours(m.worse_when_high)
        fills = {u: colours.get(v, NO_VALUE) for u, v in labels.items() if u in data.paths}
        counts = labels.value_counts()
        row = data.moran[data.moran["measure"] == m.column] if not data.moran.empty else pd.DataFrame()
        moran = (f"Global Moran's I = {row.iloc[0].moran_i:.3f} (permutation p = {row.iloc[0].p_value:.3f}, "
                 f"{int(row.iloc[0].permutations)} permutations)" if len(row) else "")
        items = [(c, f"{k} ({int(counts.get(k, 0))}): {m.meaning.get(k, 'no significant pattern')}")
                 for k, c in sorted(colours.items(), key=lambda kc: list(colours.values()).index(kc[1]))]
        items.append((NO_VALUE, "no value"))
        clusters.append({"id": f"clusters-{m.column}", "title": m.title, "moran": moran,
                         "svg": map_svg(data, fills, map_id=f"clusters-{m.column}",
                                        outlines=sorted(data.department_outlines)),
                         "legend": legend(items)})
    breaks = quantile_breaks(by_u["divide_index"])
    divide_fills = {u: colour_for(v, breaks, True) for u, v in by_u["divide_index"].items()}
    divide_legend = legend([*_class_labels(breaks, "", True), (NO_VALUE, "no value")])
    persons = persons_per_household()
    pages = []
    for dep in data.departments.itertuples(index=False):
        members = d[d.department_code == dep.department_code]
        ranked = members[members.priority_rank.notna()].sort_values(["priority_rank", "ubigeo"])
        top = ranked.head(TOP_PER_DEPARTMENT)
        rows = []
        for i, r in enumerate(top.itertuples(index=False), start=1):
            rr = pd.Series(r._asdict())
            rows.append({"n": i, "district": r.district, "province": r.province, "rank": int(r.priority_rank),
                         "internet": _fmt(r.internet_pct, 1, " %"),
                         "predicted": _fmt(r.predicted_internet_pct, 1, " %"),
                         "interval": f"{_fmt(r.lower_90)}–{_fmt(r.upper_90)} %",
                         "gap": _fmt(r.gap_pp, 1, " pp") if pd.isna(r.gap_pp) else f"{r.gap_pp + 0.0:+.1f} pp".replace("-0.0", "0.0").replace("+0.0", "0.0"),
                         "divide": _fmt(r.divide_index, 0),
                         "oof": "" if pd.isna(r.is_out_of_fold) else ("out of fold" if r.is_out_of_fold else "in fold"),
                         "reason": reason(rr, persons)})
        titles = {r.ubigeo: f"{r.district} ({r.province}): divide index {_fmt(r.divide_index, 0)}, internet "
                            f"{_fmt(r.internet_pct, 1, ' %')}" for r in members.itertuples(index=False)}
        ubigeos = members.ubigeo.tolist()
        missing = [f"{r.district}" for r in members.itertuples(index=False) if r.ubigeo not in data.paths]
        trend = data.trend[data.trend.department_code == dep.department_code] if not data.trend.empty else data.trend
        fixed = data.fixed[data.fixed.department_code == dep.department_code] if not data.fixed.empty else data.fixed
        pages.append({
            "code": dep.department_code, "name": dep.department, "n_districts": int(dep.n_districts),
            "population": f"{dep.population:,.0f}",
            "svg": map_svg(data, {u: divide_fills[u] for u in ubigeos if u in data.paths},
                           map_id=f"dep-{dep.department_code}", ubigeos=ubigeos, titles=titles,
                           labels={r.ubigeo: str(i) for i, r in enumerate(top.itertuples(index=False), start=1)
                                   if r.ubigeo in data.paths}),
            "rows": rows, "missing": missing, "trend": trend_svg(trend, fixed),
            "trend_years": f"{int(trend.year.min())}–{int(trend.year.max())}" if len(trend) else "",
            "median_internet": _fmt(members.internet_pct.median(), 1, " %"),
        })
    without = d[~d.ubigeo.isin(list(data.paths))]
    env = Environment(loader=PackageLoader("brecha", "templates"), autoescape=select_autoescape(["j2", "html"]),
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template("atlas.html.j2").render(
        defs="".join(f'<path id="d-{u}" d="{p}"/>' for u, p in sorted(data.paths.items())),
        outline_defs="".join(f'<path id="o-{c}" d="{p}"/>' for c, p in sorted(data.department_outlines.items())),
        national=national, clusters=clusters, pages=pages, divide_legend=divide_legend,
        n_districts=len(d), n_drawn=len(data.paths), n_departments=len(pages),
        without=[f"{r.district} ({r.department})" for r in without.itertuples(index=False)],
        snapshot=data.snapshot, top_n=TOP_PER_DEPARTMENT,
    )


def write_atlas(out: Path | None = None, serving_db: Path | None = None) -> AtlasResult:
    """Render the atlas from the serving copy (opened read-only) to ``out`` (default $BRECHA_HOME/atlas/index.html)."""
    started = time.perf_counter()
    p = paths()
    db = Path(serving_db or p.serving_db)
    if not db.exists():
        raise BrechaError(f"no serving copy at {db}: run `brecha run` or `brecha publish` first")
    con = duckdb.connect(str(db), read_only=True)
    try:
        data = load(con)
    finally:
        con.close()
    text = render(data)
    target = Path(out or p.atlas)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, text)
    return AtlasResult(path=target, size_bytes=target.stat().st_size, departments=len(data.departments),
                       drawn=len(data.paths), without_polygon=int((~data.districts.ubigeo.isin(list(data.paths))).sum()),
                       seconds=time.perf_counter() - started)
