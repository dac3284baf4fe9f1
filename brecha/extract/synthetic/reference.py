"""INEI reference files (ubigeo-aumentado), Census 2017 indicators (qhaway) and boundaries (peru-geojson)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from brecha.core.layouts import INEI_CENSUS, INEI_DEPARTMENTS, INEI_DISTRICTS, INEI_PROVINCES
from brecha.extract.synthetic.catalog import (
    BY_CODE,
    DEPARTMENTS,
    EXTREME_POVERTY_BANDS,
    LIMA_METRO_PROVINCE,
    POVERTY_BANDS,
)
from brecha.extract.synthetic.io import r_number, write_csv
from brecha.extract.synthetic.world import World

UBIGEO_DIR = "ubigeo-aumentado"
CENSUS_DIR = "qhaway"
GEO_DIR = "peru-geojson"
N_CAPITAL_NEWLINES = 2
N_MISSING_POLYGONS = 42
N_NULL_GEOMETRIES = 8


def _admin(dep_code: str, province_code: str) -> tuple[str, str, str, str, str]:
    """region, macroregion_inei, macroregion_minsa, iso_3166_2, fips of a district or province."""
    dep = BY_CODE[dep_code]
    if dep_code == "15":
        if province_code == LIMA_METRO_PROVINCE:
            return "LIMA PROVINCIA", "LIMA METROPOLITANA", dep.macro_minsa, "PE-LMA", "26"
        return "LIMA REGION", "CENTRO", dep.macro_minsa, dep.iso, dep.fips
    return dep.name, dep.macro_inei, dep.macro_minsa, dep.iso, dep.fips


def _capitals_with_newline(d: pd.DataFrame, rng: np.random.Generator) -> pd.Series:
    """Two capitals get a line break inside the value (quoted in the CSV), as in the real file."""
    caps = d.capital.copy()
    multiword = np.flatnonzero(caps.str.count(" ").ge(2).to_numpy())
    for i in rng.choice(multiword, min(N_CAPITAL_NEWLINES, len(multiword)), replace=False):
        head, _, tail = caps.iloc[i].rpartition(" ")
        caps.iloc[i] = f"{head}\n {tail}"
    return caps


def write_districts(world: World, out: Path, rng: np.random.Generator) -> int:
    d = world.districts.copy()
    d["capital"] = _capitals_with_newline(d, rng)
    rows = []
    ref = world.all_reference
    complete = {c.ubigeo: c for c in d.itertuples(index=False)}  # a dict, not .loc per row: 1,874 lookups
    for r in ref.itertuples(index=False):
        region, mi, mm, iso, fips = _admin(r.dep_code, r.province_code)
        head = [r.ubigeo, r.reniec, r.department, r.province, r.district, region, mi, mm, iso, fips]
        if r.ubigeo not in complete:  # a newer district: NA in every numeric column
            rows.append([*head, *["NA"] * 10])
            continue
        c = complete[r.ubigeo]
        area = "S.I." if c.area_unknown else r_number(c.superficie)
        dens = "S.I." if c.area_unknown else r_number(c.density_2020)
        rows.append([*head, c.capital, area, dens, r_number(int(c.altitude)), r_number(c.latitude),
                     r_number(c.longitude), r_number(c.ivuln), r_number(c.idh_2019), r_number(c.pct_pobreza_total),
                     r_number(c.pct_pobreza_extrema)])
    # one row without an inei code at the very end (its RENIEC code only)
    last = world.newer.iloc[-1]
    region, mi, mm, iso, fips = _admin(last.dep_code, last.province_code)
    rows.append(["NA", f"{last.reniec[:4]}{int(last.reniec[4:]) + 1:02d}", last.department, last.province,
                 "SAN ANTONIO", region, mi, mm, iso, fips, *["NA"] * 10])
    return write_csv(out / UBIGEO_DIR / "ubigeo_distrito.csv", INEI_DISTRICTS.headers, rows)


def _weighted(values: pd.Series, weights: pd.Series) -> float:
    return float(np.average(values, weights=weights))


def write_provinces(world: World, out: Path, rng: np.random.Generator) -> int:
    d = world.districts
    rows = []
    by_province = dict(tuple(d.groupby("province_code", sort=False)))  # one pass, not a mask per province
    for p in world.provinces.itertuples(index=False):
        g = by_province[p.province_code]
        cap = g.iloc[0]
        dep = BY_CODE[p.dep_code]
        region, mi, mm, iso, fips = _admin(p.dep_code, p.province_code)
        known = g[~g.area_unknown]
        area = float(known.superficie.sum())
        pop2020 = float((known.density_2020 * known.superficie).sum())
        density_index = float(np.clip(0.45 + 0.5 * _weighted(g.urbanity, g.pob) + rng.normal(0, 0.05), 0.3, 0.99))
        rows.append([f"{p.province_code}00", f"{dep.reniec}{p.province_code[2:]}00", dep.name, p.province, region, mi, mm,
                     iso, fips, p.capital, r_number(round(area, 2)), r_number(pop2020 / area), r_number(int(cap.altitude)),
                     r_number(cap.latitude), r_number(cap.longitude), r_number(density_index),
                     r_number(float(g.ivuln.mean())), r_number(_weighted(g.idh_2019, g.pob)),
                     r_number(round(_weighted(g.pct_pobreza_total, g.pob), 6)),
                     r_number(_weighted(g.pct_pobreza_extrema, g.pob))])
    return write_csv(out / UBIGEO_DIR / "ubigeo_provincia.csv", INEI_PROVINCES.headers, rows)


def _band(value: float, bands: tuple[float, ...]) -> float:
    return min(bands, key=lambda b: abs(b - value))


def write_departments(world: World, out: Path, rng: np.random.Generator) -> int:
    d = world.districts
    rows = []
    for dep in DEPARTMENTS:
        g = d[d.dep_code == dep.code]
        cap = g.iloc[0]
        pop2020 = float((g.density_2020 * g.superficie).sum())
        area = dep.area_km2 + int(rng.integers(1, 100)) / 100
        # Lima's altitude is an average in the published file (a decimal number), the others the capital's
        altitude = int(cap.altitude) + (0.42 if dep.code == "15" else 0)
        density_index = float(np.clip(0.55 + 0.4 * _weighted(g.urbanity, g.pob) + rng.normal(0, 0.03), 0.3, 0.99))
        rows.append([f"{dep.code}0000", f"{dep.reniec}0000", dep.name, dep.iso, dep.fips, dep.capital,
                     r_number(area), r_number(pop2020 / area), r_number(altitude),
                     r_number(cap.latitude), r_number(cap.longitude), r_number(density_index),
                     r_number(float(g.ivuln.mean())), r_number(_weighted(g.idh_2019, g.pob)),
                     r_number(_band(_weighted(g.pct_pobreza_total, g.pob), POVERTY_BANDS)),
                     r_number(_band(_weighted(g.pct_pobreza_extrema, g.pob), EXTREME_POVERTY_BANDS))])
    return write_csv(out / UBIGEO_DIR / "ubigeo_departamento.csv", INEI_DEPARTMENTS.headers, rows)


def write_census(world: World, out: Path, rng: np.random.Generator) -> int:
    """``indicadores-distrito.json``: one object per district, percentages, nulls where not measured."""
    keys = INEI_CENSUS.headers
    complete = world.districts.set_index("ubigeo")
    objs = []

    def empty(ubigeo: str, pob: object) -> dict:
        o = dict.fromkeys(keys)
        o["ubigeo"] = ubigeo
        if pob is not None and not pd.isna(pob):
            o["pob"] = int(pob)
            o["ideSalud"] = round(float(rng.uniform(0, 0.6)), 4)
        return o

    for ub in world.all_reference.ubigeo:
        if ub not in complete.index:
            objs.append(empty(ub, world.newer.set_index("ubigeo").pob.get(ub)))
            continue
        c = complete.loc[ub]
        objs.append({
            "ubigeo": ub, "pob": int(c.pob), "idh": float(c.idh), "pobreza": float(c.pobreza),
            "pobrezaExt": float(c.pobreza_ext), "vulnAlim": int(c.vuln_alim), "altitud": int(c.altitude),
            "agua": float(c.agua), "desague": float(c.desague), "electricidad": float(c.electricidad),
            "internet": float(c.internet),
            "ideAgua": round(float(np.clip(c.agua / 100 + rng.normal(0, 0.01), 0, 1)), 4),
            "ideElectricidad": round(float(c.electricidad) / 100, 4), "ideSalud": float(c.ide_salud),
            "ideEducacion": None,
        })
    for r in world.census_extra.itertuples(index=False):
        objs.append(empty(r.ubigeo, r.pob))
    path = out / CENSUS_DIR / "indicadores-distrito.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(objs, separators=(",", ":"), ensure_ascii=False), encoding="utf-8")
    return len(objs)


def _square(lon: float, lat: float, half: float) -> list[list[list[float]]]:
    ring = [[lon - half, lat - half], [lon + half, lat - half], [lon + half, lat + half], [lon - half, lat + half]]
    ring.append(ring[0])
    return [[[round(x, 8), round(y, 8)] for x, y in ring]]


def _feature_collection(features: list[dict]) -> str:
    head = '{"type":"FeatureCollection","crs":{"type":"name","properties":{"name":"urn:ogc:def:crs:OGC:1.3:CRS84"}},"features":['
    body = ",\n".join(json.dumps(f, separators=(",", ":"), ensure_ascii=False) for f in features)
    return head + body + "]}"


def write_district_boundaries(world: World, out: Path, rng: np.random.Generator) -> int:
    """Small squares around each centroid; some districts missing, a few null geometries, one MultiPolygon."""
    d = world.districts
    keep = np.ones(len(d), dtype=bool)
    keep[rng.choice(len(d), N_MISSING_POLYGONS, replace=False)] = False
    g = d[keep].copy()
    order = rng.permutation(len(g))
    null_geom = set(rng.choice(len(g), N_NULL_GEOMETRIES, replace=False).tolist())
    multi = int(rng.integers(len(g)))
    no_decree = int(rng.integers(len(g)))
    features = []
    for obj_id, i in enumerate(order, start=1):
        r = g.iloc[i]
        half = float(np.sqrt(r.superficie) / 2 / 111.0)
        deg_area = (2 * half) ** 2
        if i in null_geom:
            geometry = None
        elif i == multi:
            geometry = {"type": "MultiPolygon", "coordinates": [_square(r.longitude, r.latitude, half * 0.8),
                                                                _square(r.longitude + 3 * half, r.latitude, half * 0.3)]}
        else:
            geometry = {"type": "Polygon", "coordinates": _square(r.longitude, r.latitude, half)}
        indep = rng.random() < 0.25
        props = {
            "OBJECTID": obj_id, "IDDIST": r.ubigeo, "IDDPTO": r.ubigeo[:2], "IDPROV": r.ubigeo[:4],
            "NOMBDIST": r.district, "NOMBPROV": r.province, "NOMBDEP": r.department,
            "DCTO": None if i == no_decree else ("-" if indep else "LEY"),
            "LEY": None if i == no_decree else ("-" if indep else str(int(rng.integers(1000, 30000)))),
            "FECHA": "EPOCA INDEP." if indep else f"{rng.integers(1, 29):02d}/{rng.integers(1, 13):02d}/{rng.integers(1857, 2015)}",
            "NOM_CAP": str(r.capital).upper(), "SHAPE_LENG": round(8 * half, 11), "SHAPE_AREA": round(deg_area, 11),
            "SHAPE_LE_1": round(8 * half * 1.001, 11), "SHAPE_AR_1": round(deg_area * 0.999, 11),
            "AREA_MINAM": round(float(r.superficie) * 100, 2),
        }
        features.append({"type": "Feature", "properties": props, "geometry": geometry})
    path = out / GEO_DIR / "peru_distrital_simple.geojson"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_feature_collection(features), encoding="utf-8")
    return len(features)


def write_department_boundaries(world: World, out: Path) -> int:
    d = world.districts
    features = []
    for dep in DEPARTMENTS:
        g = d[d.dep_code == dep.code]
        half = np.sqrt(g.superficie.to_numpy()) / 2 / 111.0
        box = [float((g.longitude - half).min()), float((g.latitude - half).min()),
               float((g.longitude + half).max()), float((g.latitude + half).max())]
        ring = [[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]], [box[0], box[1]]]
        ring = [[round(x, 8), round(y, 8)] for x, y in ring]
        if dep.code == "07":  # Callao: mainland and the islands
            geometry = {"type": "MultiPolygon", "coordinates": [[ring], _square(box[0] - 0.08, box[1], 0.01)]}
        else:
            geometry = {"type": "Polygon", "coordinates": [ring]}
        props = {"NOMBDEP": dep.name, "COUNT": len(g), "FIRST_IDDP": dep.code, "HECTARES": round(dep.area_km2 * 100 + 0.567, 3)}
        features.append({"type": "Feature", "properties": props, "geometry": geometry})
    path = out / GEO_DIR / "peru_departamental_simple.geojson"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_feature_collection(features), encoding="utf-8")
    return len(features)
