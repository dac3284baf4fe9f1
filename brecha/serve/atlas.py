"""`brecha atlas`: a self-contained, printable HTML atlas of the districts, from the serving copy only.

Why inline SVG written here (and not a plotting library): the atlas must open from a file with no network
(no CDN, no tiles), print one department per page, be byte-for-byte the same for the same serving copy, and
stay small. Each district polygon is projected once (equirectangular around Peru's mean latitude, 0.001° grid,
integer coordinates, relative path commands, simplified by 1.5 grid units ≈ 150 m) into a hidden ``<defs>``;
every map (six national maps, one per department) then places ``<use href="#d-<ubigeo>" fill="…">`` elements,
so a polygon's outline is written once however many maps draw it. There is no script at all: the maps are
static SVG, readable by any browser and by print-to-PDF.

Colour direction: on every map, darker red = worse (less internet, wider divide, further below the model's
prediction); grey = no value. Every district of the reference is on every map: with its polygon, or (no polygon of its
own in the boundary file) as a point at its centroid, listed with the reason on the atlas's last page. Everything it
shows comes from ``marts.mart_district_profile``, the mart the API and the Grafana map read too.

Print: each page is A4. Numbered priority markers and district points are placed so that none overlaps another at
print size (``place``: pushed apart, with a leader line to the true spot); where a department's priorities crowd
together (Lima Metropolitana, Cusco's VRAEM) an inset enlarges them at least twice (``zoom_on``; none where the crowds
lie too far apart for one inset), and the national maps and Lima's and Callao's pages carry a Lima Metropolitana and
Callao inset. Every page fits its A4 sheet: its text keeps its size and its maps give way (a
department's map, inset and trend shrink, drawing and markers alike, when its table needs the room; sizes below are
the largest). Text is Spanish by default (``lang="es"``), English with ``--lang en``
(brecha/serve/words.py).
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

from brecha.core.db import table_exists
from brecha.core.errors import BrechaError
from brecha.core.files import write_atomic
from brecha.core.settings import current, paths
from brecha.serve.words import ATLAS, DEFAULT_LANG, MAP_REASON_EN, SHORT_REASON, number, signed
from brecha.warehouse.publish import current_snapshot

GRID = 1000.0  # grid units per degree of latitude
SIMPLIFY = 1.5  # grid units
TOP_PER_DEPARTMENT = 6
NO_VALUE = "#d9d9d9"
# ColorBrewer sequential YlOrRd (7 classes): index 0 = best, 6 = worst
WORSE_SCALE = ("#ffffb2", "#fed976", "#feb24c", "#fd8d3c", "#fc4e2a", "#e31a1c", "#b10026")
# class breaks: quintiles, then the upper tail (top 10 % and top 3 %) in classes of its own, so that a district with
# 11 % of households online is not in the class of one with 90 %
CLASS_QUANTILES = (0.2, 0.4, 0.6, 0.8, 0.9, 0.97)
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


MEASURES = (("internet_pct", "%", False), ("divide_index", "", True), ("gap_pp", " pp", False))
LIMA_CALLAO = ("1501", "0701")  # Lima Metropolitana (province of Lima) and Callao
PAGE_W = 176.0  # printable width of a page in mm (A4 190 mm minus padding)
NATIONAL_MM = (PAGE_W, 195.0)
COVER_MM = (PAGE_W, 128.0)
DEPARTMENT_MM = (107.0, 118.0)
INSET_MM = (64.0, 50.0)
INSET_MIN_ENLARGE, INSET_MAX_ENLARGE = 2.0, 8.0  # an inset enlarges the page's map at least / at most this much
CLUSTER_MM = (86.0, 70.0)
LABEL_MM = 2.2  # radius of a numbered priority marker at print size
POINT_MM = 0.8  # radius of a district drawn as a point


@dataclass
class AtlasResult:
    path: Path
    size_bytes: int
    departments: int
    drawn: int
    markers: int
    seconds: float
    lang: str = DEFAULT_LANG

    @property
    def districts(self) -> int:
        return self.drawn + self.markers

    def __str__(self) -> str:
        return (f"atlas {self.path} ({self.size_bytes / 1e6:.2f} MB, {self.lang}): {self.departments} department "
                f"pages, {self.districts:,} districts: {self.drawn:,} drawn as polygons, {self.markers} as points "
                f"(no polygon of their own), {self.seconds:.1f} s")


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

PROFILE = "mart_district_profile"


@dataclass
class AtlasData:
    districts: pd.DataFrame
    departments: pd.DataFrame
    department_outlines: dict[str, str]
    trend: pd.DataFrame
    moran: pd.DataFrame
    snapshot: str
    proj: Projection
    paths: dict[str, str]
    bbox: dict[str, tuple[float, float, float, float]]
    xy: dict[str, tuple[float, float]] = field(default_factory=dict)  # every district's marker spot, grid units

    @property
    def points(self) -> list[str]:
        """Districts drawn as a point (no polygon of their own), by ubigeo."""
        return [u for u in self.districts.ubigeo if u not in self.paths]
    fixed: pd.DataFrame = field(default_factory=pd.DataFrame)  # PUNKU connections per 100 households by quarter


def load(con: duckdb.DuckDBPyConnection) -> AtlasData:
    """Everything the atlas shows, from ``marts.mart_district_profile`` of ``con`` (the serving copy)."""
    if not table_exists(con, "marts", PROFILE):
        raise BrechaError(f"the serving copy has no marts.{PROFILE}: run `brecha run` (or `brecha build`, `brecha "
                          "train`, `brecha clusters`, `brecha build` again, then `brecha publish`) first")
    districts = con.execute(f"SELECT * EXCLUDE (geometry_geojson) FROM marts.{PROFILE} ORDER BY ubigeo").df()
    boundaries = dict(con.execute(f"SELECT ubigeo, geometry_geojson FROM marts.{PROFILE} "
                                  "WHERE map_shape = 'polygon' ORDER BY ubigeo").fetchall())
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
    lats += districts.marker_latitude.dropna().tolist()
    lons += districts.marker_longitude.dropna().tolist()
    if not lats:
        raise BrechaError(f"marts.{PROFILE} has no district with a polygon or a marker: land the district reference "
                          "and boundaries")
    mid = (min(lats) + max(lats)) / 2
    proj = Projection(lon0=min(lons), lat1=max(lats), kx=math.cos(math.radians(mid)))
    svg_paths, bbox = {}, {}
    for u, g in geo.items():
        d, b = svg_path(g, proj)
        if d:
            svg_paths[u], bbox[u] = d, b
    xy = {}
    for r in districts.itertuples(index=False):
        x, y = proj.xy(r.marker_longitude, r.marker_latitude)
        xy[r.ubigeo] = (x, y)
        if r.ubigeo not in svg_paths:  # a point: its box is the spot itself
            bbox[r.ubigeo] = (x, y, x, y)
    outline_paths = {}
    for code, text in outlines.items():
        if text:
            d, _ = svg_path(json.loads(text), proj)
            if d:
                outline_paths[code] = d
    return AtlasData(districts=districts, departments=departments, department_outlines=outline_paths, trend=trend,
                     moran=moran, snapshot=snapshot, proj=proj, paths=svg_paths, bbox=bbox, xy=xy,
                     fixed=fixed)


# --- colours and words ------------------------------------------------------------------------------------------

def quantile_breaks(values: pd.Series, quantiles: tuple[float, ...] = CLASS_QUANTILES) -> list[float]:
    """Inner class breaks at ``quantiles`` of the known values (duplicates dropped: skewed shares)."""
    v = values.dropna().astype(float)
    if v.empty:
        return []
    return sorted(set(round(float(v.quantile(q)), 1) for q in quantiles))


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


def reason(row: pd.Series, lang: str = DEFAULT_LANG) -> str:
    """Why a district ranks high, in words: how many households are offline (households_offline of the profile),
    how far its census share falls below what the model expects from its profile (against the 90 % interval),
    whether its neighbours lag too, and the divide index with its weakest part."""
    w = ATLAS[lang]["reason"]
    words = []
    if pd.notna(row.get("households_offline")):
        words.append(w["offline"].format(n=number(row.households_offline, 0, lang=lang)))
    if pd.notna(row.gap_pp) and pd.notna(row.internet_pct):
        if row.gap_pp < 0:
            # below only at the census share's own precision (published with two decimals): a share of 0.00 %
            # is not below a lower end of 0.0004 %, which the page prints as 0,0 %
            edge = (w["below_interval"] if pd.notna(row.lower_90) and row.internet_pct < round(row.lower_90, 2)
                    else w["within_interval"])
            words.append(w["below"].format(gap=number(-row.gap_pp, 1, lang=lang),
                                           pred=number(row.predicted_internet_pct, 1, lang=lang), edge=edge))
        else:
            words.append(w["above"])
    elif pd.isna(row.internet_pct):
        words.append(w["unknown"])
    if row.internet_pct_cluster in ("low-low", "low-high"):
        words.append(w[row.internet_pct_cluster])
    if pd.notna(row.divide_index):
        words.append(w["divide"].format(v=number(row.divide_index, 0, lang=lang),
                                        rank=number(row.national_rank, 0, lang=lang)))
    scores = {"infrastructure": row.infrastructure_score, "adoption": row.adoption_score,
              "socioeconomic": row.socioeconomic_score}
    known = {k: v for k, v in scores.items() if pd.notna(v)}
    if known:
        worst = max(known, key=lambda k: (known[k], k))
        if known[worst] >= 50:  # only a weakness when worse than the median district
            words.append(w["weakest"].format(part=w["parts"][worst], v=number(known[worst], 0, lang=lang)))
    text = "; ".join(words)
    return text[:1].upper() + text[1:] + "."


def point_reason(row: pd.Series, lang: str, names: dict[str, str] | None = None, short: bool = False) -> str:
    """Why a district is a point, in ``lang``: the mart's own map_note (Spanish), its English version, or (``short``)
    one line for the annex. ``names`` maps a parent's ubigeo to its name."""
    law = row.creation_law if isinstance(row.creation_law, str) and row.creation_law else ""
    parent = (names or {}).get(row.parent_ubigeo, row.parent_ubigeo)
    if short:
        w = SHORT_REASON[lang]
        text = w.get(row.map_reason, row.map_reason).format(
            law=ATLAS[lang]["law_by"].format(law=law) if law else "", parent=parent,
            where=w.get(row.marker_source, row.marker_source))
        return text[:1].upper() + text[1:]
    if lang == "es" and isinstance(row.map_note, str):
        return row.map_note
    where = "its parent district" if row.marker_source == "parent_centroid" else "its province's capital district"
    text = MAP_REASON_EN.get(row.map_reason, row.map_reason).format(
        boundary=row.boundary_ubigeo, law=f" by {law}" if law else "", parent=parent, where=where)
    return text[:1].upper() + text[1:] + "."


# --- placing markers so that none overlaps at print size ---------------------------------------------------------

def place(spots: dict[str, tuple[float, float, float]], box: tuple[float, float, float, float],
          gap: float = 0.0, rounds: int = 400) -> dict[str, tuple[float, float]]:
    """Centres for circles ``{key: (x, y, radius)}`` so that no two overlap (``gap`` apart at least) and each stays
    inside ``box`` (x0, y0, x1, y1): overlapping circles are pushed apart along the line between them, a little at a
    time, until none overlaps. Deterministic (keys sorted; coincident spots are split by their order)."""
    keys = sorted(spots)
    pos = {k: [spots[k][0], spots[k][1]] for k in keys}
    rad = {k: spots[k][2] for k in keys}
    for _ in range(rounds):
        moved = False
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                dx, dy = pos[b][0] - pos[a][0], pos[b][1] - pos[a][1]
                need = rad[a] + rad[b] + gap
                d = math.hypot(dx, dy)
                if d >= need - 1e-9:
                    continue
                if d < 1e-9:  # the same spot: split along a direction given by the pair's order
                    angle = (i * 2.399963) % (2 * math.pi)
                    dx, dy, d = math.cos(angle), math.sin(angle), 1.0
                push = (need - math.hypot(pos[b][0] - pos[a][0], pos[b][1] - pos[a][1])) / 2 * 1.02
                ux, uy = dx / d, dy / d
                pos[a][0] -= ux * push
                pos[a][1] -= uy * push
                pos[b][0] += ux * push
                pos[b][1] += uy * push
                moved = True
        for k in keys:  # keep inside the map
            pos[k][0] = min(max(pos[k][0], box[0] + rad[k]), box[2] - rad[k])
            pos[k][1] = min(max(pos[k][1], box[1] + rad[k]), box[3] - rad[k])
        if not moved:
            break
    return {k: (pos[k][0], pos[k][1]) for k in keys}


def overlaps(placed: dict[str, tuple[float, float]], radius: dict[str, float]) -> list[tuple[str, str]]:
    """Pairs of placed circles that overlap (for tests and the inset rule)."""
    keys = sorted(placed)
    return [(a, b) for i, a in enumerate(keys) for b in keys[i + 1:]
            if math.dist(placed[a], placed[b]) < radius[a] + radius[b] - 1e-6]


# --- rendering --------------------------------------------------------------------------------------------------

def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def _extent(boxes: list[tuple[float, float, float, float]], pad: float = 0.03,
            min_size: float = 20.0) -> tuple[float, float, float, float]:
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    w, h = max(x1 - x0, min_size), max(y1 - y0, min_size)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return cx - w * (0.5 + pad), cy - h * (0.5 + pad), cx + w * (0.5 + pad), cy + h * (0.5 + pad)


def _outline(zoom: tuple[float, float, float, float],
             extent: tuple[float, float, float, float]) -> tuple[float, float, float, float] | None:
    """The part of an inset's ``zoom`` to outline on the page's map (its ``extent``): the overlap of the two, or None
    where that is most of the map (on Callao's page Lima Metropolitana is larger than the map itself, and its outline
    would only be a stray dashed line at the map's edge)."""
    x0, y0 = max(zoom[0], extent[0]), max(zoom[1], extent[1])
    x1, y1 = min(zoom[2], extent[2]), min(zoom[3], extent[3])
    if x1 <= x0 or y1 <= y0 or (x1 - x0) * (y1 - y0) > 0.5 * (extent[2] - extent[0]) * (extent[3] - extent[1]):
        return None
    return x0, y0, x1, y1


def _fit(extent: tuple[float, float, float, float], size_mm: tuple[float, float]) -> tuple[tuple[float, ...], float]:
    """The viewBox that shows ``extent`` in a box of ``size_mm`` (centred, as preserveAspectRatio meet does) and the
    print scale in mm per grid unit."""
    x0, y0, x1, y1 = extent
    w, h = x1 - x0, y1 - y0
    scale = min(size_mm[0] / w, size_mm[1] / h)
    vw, vh = size_mm[0] / scale, size_mm[1] / scale
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (cx - vw / 2, cy - vh / 2, cx + vw / 2, cy + vh / 2), scale


def map_svg(data: AtlasData, fills: dict[str, str], *, map_id: str, size_mm: tuple[float, float],
            ubigeos: list[str] | None = None, titles: dict[str, str] | None = None,
            outlines: list[str] | None = None, labels: dict[str, str] | None = None,
            extent: tuple[float, float, float, float] | None = None, css: str = "map",
            frame: tuple[float, float, float, float] | None = None, empty: str = "") -> str:
    """One map of ``size_mm`` at print size: a ``<use>`` per district polygon, a circle per district drawn as a point,
    optional department outlines, numbered ``labels`` (ubigeo -> text), and a ``frame`` rectangle (an inset's extent).
    Points and labels are placed so that none overlaps another at print size, with a leader line to the true spot
    when moved."""
    members = ubigeos if ubigeos is not None else sorted(data.xy)
    polys = [u for u in members if u in data.paths]
    points = [u for u in members if u not in data.paths and u in data.xy]
    if not polys and not points:
        return f'<p class="note">{_esc(empty)}</p>'
    box, scale = _fit(extent or _extent([data.bbox[u] for u in polys + points]), size_mm)
    vb = f"{box[0]:.0f} {box[1]:.0f} {box[2] - box[0]:.0f} {box[3] - box[1]:.0f}"
    out = [f'<svg class="{css}" id="{map_id}" viewBox="{vb}" role="img" preserveAspectRatio="xMidYMid meet" '
           f'data-mm-per-unit="{scale:.6f}">']
    for u in polys:
        title = f"<title>{_esc(titles[u])}</title>" if titles and u in titles else ""
        out.append(f'<use href="#d-{u}" data-ubigeo="{u}" fill="{fills.get(u, NO_VALUE)}">{title}</use>')
    for code in outlines or []:
        if code in data.department_outlines:
            out.append(f'<use href="#o-{code}" class="outline"/>')
    if frame is not None:
        out.append(f'<rect class="frame" x="{frame[0]:.0f}" y="{frame[1]:.0f}" width="{frame[2] - frame[0]:.0f}" '
                   f'height="{frame[3] - frame[1]:.0f}"/>')
    r_point, r_label = POINT_MM / scale, LABEL_MM / scale
    labels = {u: t for u, t in (labels or {}).items() if u in data.xy}
    inside = [u for u in points if box[0] <= data.xy[u][0] <= box[2] and box[1] <= data.xy[u][1] <= box[3]]
    spots = {f"p{u}": (*data.xy[u], r_point) for u in inside}
    spots |= {f"l{u}": (*data.xy[u], r_label) for u in labels}
    placed = place(spots, box, gap=0.3 / scale)
    for key in sorted(placed, key=lambda k: (k[0] == "l", k)):  # points first, numbered markers on top
        u = key[1:]
        x, y = placed[key]
        tx, ty = data.xy[u]
        moved = math.hypot(x - tx, y - ty) > spots[key][2] * 0.5
        leader = (f'<line x1="{tx:.1f}" y1="{ty:.1f}" x2="{x:.1f}" y2="{y:.1f}"/><circle class="spot" cx="{tx:.1f}" '
                  f'cy="{ty:.1f}" r="{0.35 / scale:.1f}"/>' if moved else "")
        if key[0] == "p":
            title = f"<title>{_esc(titles[u])}</title>" if titles and u in titles else ""
            out.append(f'<g class="point" data-ubigeo="{u}">{leader}<circle cx="{x:.1f}" cy="{y:.1f}" '
                       f'r="{r_point:.1f}" fill="{fills.get(u, NO_VALUE)}" data-ubigeo="{u}"/>{title}</g>')
        else:
            out.append(f'<g class="label" data-ubigeo="{u}" data-r="{r_label:.2f}">{leader}<circle cx="{x:.1f}" '
                       f'cy="{y:.1f}" r="{r_label:.1f}"/><text x="{x:.1f}" y="{y:.1f}" '
                       f'font-size="{r_label * 1.25:.1f}" dy="{r_label * 0.43:.1f}">{_esc(labels[u])}</text></g>')
    out.append("</svg>")
    return "".join(out)


def legend(items: list[tuple[str, str]], point: str = "") -> str:
    rows = "".join(f'<li><span class="swatch" style="background:{c}"></span>{_esc(t)}</li>' for c, t in items)
    if point:
        rows += f'<li><span class="swatch dot"></span>{_esc(point)}</li>'
    return f'<ul class="legend">{rows}</ul>'


def _class_labels(breaks: list[float], unit: str, worse_when_high: bool, lang: str) -> list[tuple[str, str]]:
    """Legend items of the classes, lowest values first: ``0 – 0,4 %``, ..., ``41,2 – 90,7 %`` (min and max shown)."""
    return [(colour, text) for colour, text, _ in _classes(breaks, unit, worse_when_high, lang)]


def _classes(breaks: list[float], unit: str, worse_when_high: bool, lang: str,
             low: float | None = None, high: float | None = None) -> list[tuple[str, str, int]]:
    lo = "mín." if lang == "es" else "min"
    hi = "máx." if lang == "es" else "max"
    edges = [lo if low is None else number(low, 1, lang=lang), *[number(b, 1, lang=lang) for b in breaks],
             hi if high is None else number(high, 1, lang=lang)]
    items = []
    for i in range(len(breaks) + 1):
        value = (breaks[i - 1] + 1e-9) if i else -math.inf
        colour = colour_for(value, breaks, worse_when_high) if breaks else colour_for(0.0, [], worse_when_high)
        items.append((colour, f"{edges[i]} – {edges[i + 1]}{unit.replace('%', ' %') if unit else ''}", i))
    return items


NEW_QUESTIONNAIRE = 2023  # ENAHO: from this year P1144 counts any internet access and P114B1 is fixed internet
Z90 = 1.645
# (column, years, css class): each question its own line, none drawn across the 2023 break; labels in
# brecha.serve.words.ATLAS[lang]["trend_series"], in this order
TREND_SERIES = (
    ("internet_pct", "before", "s-hogar"),
    ("internet_pct", "after", "s-acceso"),
    ("fixed_internet_pct", "after", "s-fijo"),
)


def trend_svg(trend: pd.DataFrame, lang: str, fixed: pd.DataFrame | None = None) -> str:
    """ENAHO's shares of households by year with their 90 % bands (± 1.645 design standard errors), one line per
    question on each side of the 2023 questionnaire change (marked), and PUNKU's fixed connections per 100
    households by quarter (dashed)."""
    if trend.empty:
        return f'<p class="note">{_esc(ATLAS[lang]["no_trend"])}</p>'
    words = ATLAS[lang]
    fixed = fixed if fixed is not None else pd.DataFrame()
    w, h, m = 360, 200, 34
    years = trend["year"].astype(int).tolist()
    x0 = min([*years, *(fixed["t"].tolist() if len(fixed) else [])])
    x1 = max([*years, *(fixed["t"].tolist() if len(fixed) else [])])
    series = []
    for (column, side, css), label in zip(TREND_SERIES, words["trend_series"], strict=True):
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
                     f'<title>{_esc(words["trend_break_tip"])}</title></line>')
        parts.append(f'<text x="{bx - 2:.1f}" y="{sy(0) - 3:.1f}" class="axis" text-anchor="end">'
                     f'{_esc(words["trend_break"])}</text>')
    for ys, vs, lo, hi, css, label in series:
        band = " ".join(f"{sx(y):.1f},{sy(v):.1f}" for y, v in zip(ys, hi, strict=True))
        band += " " + " ".join(f"{sx(y):.1f},{sy(v):.1f}" for y, v in zip(reversed(ys), reversed(lo), strict=True))
        parts.append(f'<polygon points="{band}" class="band {css}"/>')
        parts.append(f'<polyline points="{" ".join(f"{sx(y):.1f},{sy(v):.1f}" for y, v in zip(ys, vs, strict=True))}" '
                     f'class="line {css}"><title>{_esc(label)}</title></polyline>')
        for y, v in zip(ys, vs, strict=True):
            parts.append(f'<circle cx="{sx(y):.1f}" cy="{sy(v):.1f}" r="2.5" class="dot {css}"><title>{_esc(label)}, {y}: '
                         f'{number(v, 1, " %", lang)}</title></circle>')
    if len(fixed):
        pts = " ".join(f"{sx(t):.1f},{sy(v):.1f}" for t, v in zip(fixed.t, fixed.connections_per_100_households,
                                                                   strict=True))
        parts.append(f'<polyline points="{pts}" class="line s-punku"><title>{_esc(words["trend_punku"])}</title>'
                     '</polyline>')
    for t in (0, ymax / 2, ymax):
        parts.append(f'<text x="{m - 4}" y="{sy(t) + 3:.1f}" class="axis" text-anchor="end">{t:.0f}</text>')
    for y in sorted({int(x0), int(x1)}):
        parts.append(f'<text x="{sx(y):.1f}" y="{sy(0) + 11:.1f}" class="axis" text-anchor="middle">{y}</text>')
    legend = [(css, label) for *_, css, label in series] + ([("s-punku", words["trend_punku"])] if len(fixed) else [])
    for i, (css, label) in enumerate(legend):
        x, y = m, h - 4 - 10 * (len(legend) - 1 - i)
        parts.append(f'<line x1="{x}" x2="{x + 12}" y1="{y - 3}" y2="{y - 3}" class="line {css}"/>'
                     f'<text x="{x + 15}" y="{y}" class="axis">{_esc(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def crowded(data: AtlasData, ubigeos: list[str], size_mm: tuple[float, float],
            extent: tuple[float, float, float, float]) -> list[str]:
    """The numbered markers among ``ubigeos`` that would overlap another at print size where they truly are."""
    _, scale = _fit(extent, size_mm)
    r = LABEL_MM / scale
    return sorted({u for pair in overlaps({u: data.xy[u] for u in ubigeos}, dict.fromkeys(ubigeos, r)) for u in pair})


def zoom_on(data: AtlasData, near: list[str],
            extent: tuple[float, float, float, float]) -> tuple[float, float, float, float] | None:
    """The extent of an enlarged inset of the crowded markers ``near``: centred on their true points, at a scale where
    they stand apart (up to ``INSET_MAX_ENLARGE`` times the page's map) and that holds them all. None when such a
    view would not enlarge them at least ``INSET_MIN_ENLARGE`` times (crowds in places far apart: the page's map
    keeps them pushed apart, with leader lines)."""
    _, page = _fit(extent, DEPARTMENT_MM)
    pts = [data.xy[u] for u in near]
    closest = min(math.dist(a, b) for i, a in enumerate(pts) for b in pts[i + 1:])
    apart = 2.4 * LABEL_MM / closest if closest > 0 else math.inf  # mm per grid unit where the closest pair is apart
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    spans = (max(xs) - min(xs), max(ys) - min(ys))
    # the scale where every marker is whole inside the inset
    fits = min((size - 4 * LABEL_MM) / span if span > 0 else math.inf for size, span in zip(INSET_MM, spans, strict=True))
    scale = min(max(apart, INSET_MIN_ENLARGE * page), INSET_MAX_ENLARGE * page, fits)
    if scale < INSET_MIN_ENLARGE * page:
        return None
    w, h = INSET_MM[0] / scale, INSET_MM[1] / scale
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def render(data: AtlasData, lang: str = DEFAULT_LANG) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    t = ATLAS[lang]
    d = data.districts
    by_u = d.set_index("ubigeo")
    everyone = sorted(data.xy)
    n_points = len(data.points)
    lima = [u for u in everyone if u[:4] in LIMA_CALLAO]
    national_extent = _extent([data.bbox[u] for u in everyone])
    national = []
    for column, unit, worse_when_high in MEASURES:
        values = by_u[column]
        if column == "gap_pp":
            fills = {u: gap_colour(v) for u, v in values.items()}
            items = [(GAP_SCALE[0], t["gap_below"].format(v=number(-GAP_BREAKS[0], 0, lang=lang)))]
            items += [(GAP_SCALE[i + 1], t["gap_between"].format(a=signed(GAP_BREAKS[i], 0, lang=lang),
                                                                 b=signed(GAP_BREAKS[i + 1], 0, lang=lang)))
                      for i in range(len(GAP_BREAKS) - 1)]
            items += [(GAP_SCALE[-1], t["gap_above"].format(v=number(GAP_BREAKS[-1], 0, lang=lang)))]
        else:
            breaks = quantile_breaks(values)
            fills = {u: colour_for(v, breaks, worse_when_high) for u, v in values.items()}
            items = _class_labels(breaks, unit, worse_when_high, lang)
        items.append((NO_VALUE, t["no_value"]))
        known = values.notna()
        inset = (map_svg(data, fills, map_id=f"inset-{column}", size_mm=INSET_MM, ubigeos=lima, css="inset-map")
                 if lima else "")
        cover = ({"svg": map_svg(data, fills, map_id="cover-map", size_mm=COVER_MM, extent=national_extent,
                                 outlines=sorted(data.department_outlines),
                                 frame=_extent([data.bbox[u] for u in lima]) if lima else None),
                  "inset": map_svg(data, fills, map_id="cover-inset", size_mm=INSET_MM, ubigeos=lima,
                                   css="inset-map") if lima else ""}
                 if not national else None)
        national.append({
            "id": f"map-{column}", "cover": cover, "title": t["measures"][column], "direction": t["direction"][column],
            "svg": map_svg(data, fills, map_id=f"map-{column}", size_mm=NATIONAL_MM, extent=national_extent,
                           outlines=sorted(data.department_outlines),
                           frame=_extent([data.bbox[u] for u in lima]) if lima else None),
            "inset": inset, "inset_title": t["inset_lima"],
            "legend": legend(items, t["point_legend"] if n_points else ""),
            "known": t["known"].format(
                known=number(int(known.sum()), 0, lang=lang),
                polygons=number(sum(1 for u in values[known].index if u in data.paths), 0, lang=lang),
                markers=number(sum(1 for u in values[known].index if u not in data.paths), 0, lang=lang)),
        })
    clusters = []
    for column, _, worse_when_high in MEASURES:
        labels = by_u[f"{column}_cluster"]
        if labels.isna().all():
            continue
        colours = cluster_colours(worse_when_high)
        fills = {u: colours.get(v, NO_VALUE) for u, v in labels.items()}
        counts = labels.value_counts()
        row = data.moran[data.moran["measure"] == column] if not data.moran.empty else pd.DataFrame()
        moran = (t["moran"].format(i=number(row.iloc[0].moran_i, 3, lang=lang), p=number(row.iloc[0].p_value, 3,
                                                                                          lang=lang),
                                   n=int(row.iloc[0].permutations)) if len(row) else "")
        meaning = t["cluster_meaning"][column]
        items = [(c, f"{t['cluster_names'][k]} ({int(counts.get(k, 0))}): {meaning.get(k, t['not_significant'])}")
                 for k, c in colours.items()]
        items.append((NO_VALUE, t["no_value"]))
        clusters.append({"id": f"clusters-{column}", "title": t["measures"][column], "moran": moran,
                         "svg": map_svg(data, fills, map_id=f"clusters-{column}", size_mm=CLUSTER_MM,
                                        extent=national_extent, outlines=sorted(data.department_outlines)),
                         "legend": legend(items)})
    breaks = quantile_breaks(by_u["divide_index"])
    divide_fills = {u: colour_for(v, breaks, True) for u, v in by_u["divide_index"].items()}
    divide_legend = legend([*_class_labels(breaks, "", True, lang), (NO_VALUE, t["no_value"])],
                           t["point_legend"] if n_points else "")
    pages = []
    for dep in data.departments.itertuples(index=False):
        members = d[d.department_code == dep.department_code]
        ranked = members[members.priority_rank.notna()].sort_values(["priority_rank", "ubigeo"])
        top = ranked.head(TOP_PER_DEPARTMENT)
        rows = []
        for i, r in enumerate(top.itertuples(index=False), start=1):
            rows.append({"n": i, "district": r.district, "province": r.province,
                         "rank": number(r.priority_rank, 0, lang=lang),
                         "internet": number(r.internet_pct, 1, " %", lang),
                         "predicted": number(r.predicted_internet_pct, 1, " %", lang),
                         "interval": f"{number(r.lower_90, 1, lang=lang)}–{number(r.upper_90, 1, ' %', lang)}",
                         "gap": signed(r.gap_pp, 1, " pp", lang),
                         "in_fold": pd.notna(r.is_out_of_fold) and not r.is_out_of_fold,
                         "reason": reason(pd.Series(r._asdict()), lang)})
        titles = {r.ubigeo: t["title_tip"].format(district=r.district, province=r.province,
                                                  divide=number(r.divide_index, 0, lang=lang),
                                                  internet=number(r.internet_pct, 1, " %", lang))
                  for r in members.itertuples(index=False)}
        ubigeos = members.ubigeo.tolist()
        numbers = {r.ubigeo: str(i) for i, r in enumerate(top.itertuples(index=False), start=1)}
        extent = _extent([data.bbox[u] for u in ubigeos])
        fills = {u: divide_fills[u] for u in ubigeos}
        near = crowded(data, list(numbers), DEPARTMENT_MM, extent)
        inset, inset_title, frame = "", "", None
        # an enlarged view of the crowded markers and the districts around them; Lima's and Callao's pages always
        # show Lima Metropolitana and Callao enlarged (43 + 7 districts in a few centimetres of the page)
        lima_page = any(code[:2] == dep.department_code for code in LIMA_CALLAO)
        zoom = None
        if lima_page or any(u[:4] in LIMA_CALLAO for u in near):
            # Lima Metropolitana and Callao whole, Callao's districts (another department) included
            zoom = _extent([data.bbox[u] for u in lima + near], pad=0.04)
            pool, inset_title = sorted(set(ubigeos) | set(lima)), t["inset_lima"]
        elif near:
            zoom, pool = zoom_on(data, near, extent), ubigeos
            inset_title = t["inset_zoom"].format(names=", ".join(numbers[u] for u in near)) if zoom else ""
        if zoom is not None:
            frame = _outline(zoom, extent)
            around = [u for u in pool if data.bbox[u][2] >= zoom[0] and data.bbox[u][0] <= zoom[2]
                      and data.bbox[u][3] >= zoom[1] and data.bbox[u][1] <= zoom[3]]
            inset = map_svg(data, {u: divide_fills[u] for u in around}, map_id=f"inset-dep-{dep.department_code}",
                            size_mm=INSET_MM, ubigeos=around, titles=titles, extent=zoom, css="inset-map",
                            labels={u: numbers[u] for u in numbers if u in around})
        points = [r for r in members.itertuples(index=False) if r.ubigeo not in data.paths]
        trend = data.trend[data.trend.department_code == dep.department_code] if not data.trend.empty else data.trend
        fixed = data.fixed[data.fixed.department_code == dep.department_code] if not data.fixed.empty else data.fixed
        pages.append({
            "code": dep.department_code, "name": dep.department,
            "note": t["dep_note"].format(n=number(dep.n_districts, 0, lang=lang),
                                         pop=number(dep.population, 0, lang=lang),
                                         median=number(members.internet_pct.median(), 1, " %", lang),
                                         top=TOP_PER_DEPARTMENT),
            "svg": map_svg(data, fills, map_id=f"dep-{dep.department_code}", size_mm=DEPARTMENT_MM,
                           ubigeos=ubigeos, titles=titles, extent=extent, labels=numbers, frame=frame,
                           empty=t["no_polygon_dep"]),
            "inset": inset, "inset_title": inset_title,
            "points": t["dep_points"].format(n=len(points), names=", ".join(r.district for r in points))
            if points else "",
            "rows": rows, "trend": trend_svg(trend, lang, fixed),
            "trend_note": t["trend_note"].format(
                years=f" {int(trend.year.min())}–{int(trend.year.max())}") if len(trend) else "",
            "fold_note": t["fold_note"] if any(r["in_fold"] for r in rows) else t["oof_note"],
        })
    names = dict(zip(d.ubigeo, d.district, strict=True))
    annex = [{"ubigeo": r.ubigeo, "district": r.district, "province": r.province, "department": r.department,
              "why": point_reason(pd.Series(r._asdict()), lang, names, short=True),
              "note": point_reason(pd.Series(r._asdict()), lang, names)}
             for r in d[~d.ubigeo.isin(list(data.paths))].itertuples(index=False)]
    env = Environment(loader=PackageLoader("brecha.serve", "templates"), autoescape=select_autoescape(["j2", "html"]),
                      trim_blocks=True, lstrip_blocks=True)
    snapshot = f" ({data.snapshot})" if data.snapshot else ""
    return env.get_template("atlas.html.j2").render(
        t=t, lang=lang,
        defs="".join(f'<path id="d-{u}" d="{p}"/>' for u, p in sorted(data.paths.items())),
        outline_defs="".join(f'<path id="o-{c}" d="{p}"/>' for c, p in sorted(data.department_outlines.items())),
        national=national, clusters=clusters, pages=pages, divide_legend=divide_legend, annex=annex,
        intro=t["intro"].format(snapshot=snapshot, n=number(len(d), 0, lang=lang), deps=len(pages),
                                polygons=number(len(data.paths), 0, lang=lang), markers=n_points),
    )


def write_atlas(out: Path | None = None, serving_db: Path | None = None, lang: str = DEFAULT_LANG) -> AtlasResult:
    """Render the atlas in ``lang`` from the serving copy (opened read-only) to ``out`` (default
    $BRECHA_HOME/atlas/index.html)."""
    started = time.perf_counter()
    p = paths()
    db = Path(serving_db or p.serving_db)
    if serving_db is None and current().storage == "lake":  # the lake: its published snapshot, read-only
        from brecha.warehouse.lake_publish import connect_published

        con = connect_published()
    elif not db.exists():
        raise BrechaError(f"no serving copy at {db}: run `brecha run` or `brecha publish` first")
    else:
        con = duckdb.connect(str(db), read_only=True)
    try:
        data = load(con)
    finally:
        con.close()
    text = render(data, lang)
    target = Path(out or p.atlas)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, text)
    return AtlasResult(path=target, size_bytes=target.stat().st_size, departments=len(data.departments),
                       drawn=len(data.paths), markers=len(data.points), seconds=time.perf_counter() - started,
                       lang=lang)
