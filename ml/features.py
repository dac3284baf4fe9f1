"""The ONE feature table every model uses, built from the marts only (never from raw files).

``FEATURES`` lists every column with a description; ``build_feature_table`` computes them.
The target (``internet_pct``) never feeds a feature: neighbour features average *covariates* of nearby
districts, which are known for every district, including those whose target is withheld.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
from sklearn.neighbors import BallTree

TARGET = "internet_pct"
GROUP = "department_code"
EARTH_RADIUS_KM = 6371.0
NEIGHBOURS = 8  # nearest districts (by centroid) averaged in the ``nb_*`` features
URBAN_DENSITY = 1000.0  # persons/km²: a district this dense counts as an urban centre
CATCHMENT_KM = 30.0  # radius of the population catchment feature


@dataclass(frozen=True)
class Feature:
    name: str
    description: str


FEATURES: tuple[Feature, ...] = (
    Feature("electricity_pct", "Census 2017: % of households with electricity"),
    Feature("water_pct", "Census 2017: % of households with piped water"),
    Feature("sewage_pct", "Census 2017: % of households connected to public sewage"),
    Feature("poverty_pct", "% of population in monetary poverty"),
    Feature("extreme_poverty_pct", "% of population in extreme poverty"),
    Feature("idh", "Human development index, 0-1"),
    Feature("log_population", "log10 of the district population (INEI's 2025 projection)"),
    Feature("log_density", "log10 of persons per km²"),
    Feature("log_area", "log10 of the district area in km²"),
    Feature("altitude_m", "Altitude of the district capital, metres"),
    Feature("latitude", "Centroid latitude (degrees)"),
    Feature("longitude", "Centroid longitude (degrees)"),
    Feature("is_province_capital", "1 when the district is its province's capital district (ubigeo ends in 01)"),
    Feature("is_department_capital", "1 when the district is the capital district of its department (ubigeo XX0101)"),
    Feature("pct_centres_4g", "% of populated centres with 4G from any operator"),
    Feature("pct_centres_3g_plus", "% of populated centres with 3G or better from any operator"),
    Feature("pct_centres_over_1mbps", "% of populated centres offered more than 1 Mbps"),
    Feature("operators_present", "Number of mobile operators present in the district"),
    Feature("log_populated_centres", "log10(1 + populated centres in the coverage registry)"),
    Feature("centres_per_1k_pop", "Populated centres per 1,000 inhabitants (dispersion of settlement)"),
    Feature("log_base_stations", "log10(1 + base stations of all technologies)"),
    Feature("base_stations_per_10k_pop", "Base stations per 10,000 inhabitants"),
    Feature("share_base_stations_4g", "4G base stations as a share of all base stations (0-1)"),
    Feature("fixed_connections_per_100_households", "Fixed internet connections per 100 households (latest quarter)"),
    Feature("fibre_share_pct", "% of fixed connections over fibre (latest quarter)"),
    Feature("survey_internet_pct_department", "ENAHO household internet share of the district's department (latest year)"),
    Feature("nb_electricity_pct", f"Mean electricity_pct of the {NEIGHBOURS} nearest districts (covariate, not target)"),
    Feature("nb_sewage_pct", f"Mean sewage_pct of the {NEIGHBOURS} nearest districts"),
    Feature("nb_poverty_pct", f"Mean poverty_pct of the {NEIGHBOURS} nearest districts"),
    Feature("nb_idh", f"Mean idh of the {NEIGHBOURS} nearest districts"),
    Feature("nb_log_density", f"Mean log_density of the {NEIGHBOURS} nearest districts"),
    Feature("nb_pct_centres_4g", f"Mean pct_centres_4g of the {NEIGHBOURS} nearest districts"),
    Feature("log_catchment_population", f"log10 of the population living in districts within {CATCHMENT_KM:g} km"),
    Feature("log_km_to_urban_centre", f"log10(1 + km to the nearest other district denser than {URBAN_DENSITY:g}/km²)"),
    # last, so the columns before it keep their order (the MLP's first layer follows the column order)
    Feature("food_vulnerability_pct", "Food vulnerability index x 100 (census file vulnAlim; reference index as "
            "fallback): INEI's composite of poverty, services, health and nutrition"),
)
FEATURE_NAMES: list[str] = [f.name for f in FEATURES]

MARTS_SQL = """
select d.ubigeo, d.department_code, d.department, d.province, d.district,
       d.latitude, d.longitude, d.area_km2, d.population, d.households_2025_estimated,
       c.* exclude (ubigeo, population),
       i.divide_index
from marts.dim_districts d
left join marts.fct_district_connectivity c using (ubigeo)
left join marts.mart_digital_divide_index i using (ubigeo)
order by d.ubigeo
"""


def load_marts(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per district from ``marts.dim_districts`` with its connectivity facts and divide index."""
    df = con.sql(MARTS_SQL).df()
    return df.set_index("ubigeo", drop=False).rename_axis(None)


def _log10(s: pd.Series, plus: float = 0.0) -> pd.Series:
    return np.log10(s.astype(float).where(s + plus > 0) + plus)


def _neighbour_features(base: pd.DataFrame) -> pd.DataFrame:
    """Spatial context from covariates of nearby districts (haversine on centroids)."""
    out = pd.DataFrame(index=base.index)
    located = base[["latitude", "longitude"]].notna().all(axis=1)
    cols = ["electricity_pct", "sewage_pct", "poverty_pct", "idh", "log_density", "pct_centres_4g"]
    for c in cols:
        out[f"nb_{c}"] = np.nan
    out["log_catchment_population"] = np.nan
    out["log_km_to_urban_centre"] = np.nan
    pts = base.loc[located]
    if len(pts) < NEIGHBOURS + 1:
        return out
    rad = np.radians(pts[["latitude", "longitude"]].to_numpy(float))
    tree = BallTree(rad, metric="haversine")
    _, idx = tree.query(rad, k=NEIGHBOURS + 1)
    idx = idx[:, 1:]  # drop self
    for c in cols:
        vals = pts[c].to_numpy(float)
        with np.errstate(invalid="ignore"):
            out.loc[pts.index, f"nb_{c}"] = np.nanmean(np.where(np.isnan(vals[idx]), np.nan, vals[idx]), axis=1)
    within = tree.query_radius(rad, r=CATCHMENT_KM / EARTH_RADIUS_KM)
    pop = pts["population"].fillna(0).to_numpy(float)
    out.loc[pts.index, "log_catchment_population"] = np.log10(1 + np.array([pop[w].sum() for w in within]))
    urban = (pts["density_per_km2"] > URBAN_DENSITY).to_numpy()
    if urban.sum() >= 2:
        utree = BallTree(rad[urban], metric="haversine")
        dist, uidx = utree.query(rad, k=2)
        urban_pos = np.flatnonzero(urban)
        self_hit = urban_pos[uidx[:, 0]] == np.arange(len(pts))
        km = np.where(self_hit, dist[:, 1], dist[:, 0]) * EARTH_RADIUS_KM
        out.loc[pts.index, "log_km_to_urban_centre"] = np.log10(1 + km)
    return out


def build_feature_table(marts: pd.DataFrame) -> pd.DataFrame:
    """The feature table: one row per district (index ubigeo), columns ``FEATURE_NAMES`` in order."""
    m = marts
    f = pd.DataFrame(index=m.index)
    for c in ("electricity_pct", "water_pct", "sewage_pct", "poverty_pct", "extreme_poverty_pct", "idh",
              "altitude_m", "latitude", "longitude", "pct_centres_4g", "pct_centres_3g_plus",
              "pct_centres_over_1mbps", "operators_present", "base_stations_per_10k_pop",
              "fixed_connections_per_100_households", "fibre_share_pct", "survey_internet_pct_department",
              "food_vulnerability_pct"):
        f[c] = pd.to_numeric(m[c], errors="coerce").astype(float)
    f["log_population"] = _log10(m["population"])
    f["log_density"] = _log10(m["density_per_km2"])
    f["log_area"] = _log10(m["area_km2"])
    ub = m["ubigeo"].astype(str)
    f["is_province_capital"] = (ub.str[4:6] == "01").astype(float)
    f["is_department_capital"] = (ub.str[2:6] == "0101").astype(float)
    f["log_populated_centres"] = _log10(m["populated_centres"], 1)
    f["centres_per_1k_pop"] = m["populated_centres"] / m["population"] * 1000
    f["log_base_stations"] = _log10(m["base_stations_total"], 1)
    total = m["base_stations_total"].astype(float)
    f["share_base_stations_4g"] = (m["base_stations_4g"] / total.where(total > 0)).astype(float)
    base = f.assign(population=m["population"].astype(float), density_per_km2=m["density_per_km2"].astype(float))
    f = f.join(_neighbour_features(base))
    return f[FEATURE_NAMES].astype(float)
