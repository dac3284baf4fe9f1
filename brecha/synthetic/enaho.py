"""INEI ENAHO module 100 household microdata, one latin-1 CSV per year (``enaho01-<year>-100.csv``).

A two-stage sample per year: conglomerates allocated to departments (∝ √households), placed in districts
∝ households, about eight dwellings each. ICT goods (P1141 fixed phone, P1142 mobile, P1143 cable TV,
P1144 internet, P1145 none) follow the district's census internet propensity, the conglomerate's
urbanity and a yearly trend; FACTOR07 expands each department's sample to its household count (the
national total grows from ~8.3 M in 2015 to ~9.9 M in 2024).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from brecha.layouts import INEI_ENAHO
from brecha.synthetic.io import write_frame
from brecha.synthetic.world import World

ENAHO_DIR = "inei-enaho"
YEARS = range(2015, 2025)
HOUSEHOLDS_PER_YEAR = 35_000
HOUSEHOLDS_2015 = 8_250_000
INCOMPLETE_SHARE = 0.005  # interviews without the ICT block: P1141..P1145 left blank


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _domain(d) -> np.ndarray:
    metro = d.province_code.isin(["1501", "0701"]).to_numpy()
    lat = d.latitude.to_numpy()
    zone = np.where(lat > -8, 0, np.where(lat > -14, 1, 2))
    region = d.region_nat.to_numpy()
    dom = np.where(region == "costa", 1 + zone, np.where(region == "sierra", 4 + zone, 7))
    return np.where(metro, 8, dom)


def _stratum(pop: np.ndarray, urban: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    urban_stratum = np.select([pop > 500_000, pop > 100_000, pop > 50_000, pop > 20_000], [1, 2, 3, 4], 5)
    return np.where(urban, urban_stratum, rng.integers(6, 9, len(pop)))


def year_sample(world: World, year: int, rng: np.random.Generator, scale: float) -> pd.DataFrame:
    d = world.districts
    hh = d.households.to_numpy().astype(float)
    total = HOUSEHOLDS_2015 * 1.02 ** (year - 2015)
    hh_year = hh / hh.sum() * total
    dep = d.dep_code.to_numpy()
    deps = np.unique(dep)
    dep_hh = np.array([hh_year[dep == c].sum() for c in deps])
    n_target = max(int(round(HOUSEHOLDS_PER_YEAR * scale)), 8 * 3 * len(deps))
    n_cong_dep = np.maximum(3, np.round(n_target / 8 * np.sqrt(dep_hh) / np.sqrt(dep_hh).sum())).astype(int)

    cong_district = np.concatenate([
        rng.choice(np.flatnonzero(dep == c), k, p=hh[dep == c] / hh[dep == c].sum()) for c, k in zip(deps, n_cong_dep, strict=True)
    ])
    n_cong = len(cong_district)
    u = d.urbanity.to_numpy()[cong_district]
    urban = rng.random(n_cong) < np.sqrt(u)
    size = rng.integers(6, 11, n_cong)
    cong_ids = np.sort(rng.choice(np.arange(1000, 1_000_000), n_cong, replace=False))
    month = rng.integers(1, 13, n_cong)
    effect = rng.normal(0, 0.5, n_cong)

    hi = np.repeat(np.arange(n_cong), size)  # household -> conglomerate
    dwelling = np.concatenate([np.arange(1, s + 1) for s in size])
    n = len(hi)
    di = cong_district[hi]
    uc = np.where(urban[hi], np.maximum(u[hi], 0.6), np.minimum(u[hi], 0.25))
    pov = d.pobreza.to_numpy()[di] / 100
    t = year - 2017
    base = _logit(d.p_internet.to_numpy()[di])
    internet = rng.random(n) < _sigmoid(base + 1.2 * (uc - u[hi]) + 0.2 * t + 0.35 * (year >= 2020) + effect[hi])
    mobile = rng.random(n) < _sigmoid(1.4 + 1.6 * uc - 1.5 * (pov - 0.34) + 0.25 * (year - 2015))
    phone = rng.random(n) < _sigmoid(-1.6 + 2.6 * uc - 2.0 * (pov - 0.34) - 0.17 * (year - 2015))
    cable = rng.random(n) < _sigmoid(-1.1 + 1.8 * uc - 1.0 * (pov - 0.34) + 0.02 * (year - 2015) + 0.5 * effect[hi])
    none = ~(internet | mobile | phone | cable)

    # expansion factors: each department's sample sums to its households, with unequal weights
    w = rng.lognormal(0, 0.35, n)
    hh_dep = dep[di]
    for c, h in zip(deps, dep_hh, strict=True):
        m = hh_dep == c
        w[m] *= h / w[m].sum()

    dom = _domain(d)[di]
    stratum = _stratum(d.pob.to_numpy()[di], urban[hi], rng)
    incomplete = rng.random(n) < INCOMPLETE_SHARE
    h = INEI_ENAHO.headers
    df = pd.DataFrame({
        h[0]: year, h[1]: np.char.zfill(month[hi].astype(str), 2), h[2]: np.char.zfill(cong_ids[hi].astype(str), 6),
        h[3]: np.char.zfill(dwelling.astype(str), 3), h[4]: "11", h[5]: d.ubigeo.to_numpy()[di],
        h[6]: dom, h[7]: stratum,
    })
    for col, flag in zip(h[8:13], (phone, mobile, cable, internet, none), strict=True):
        df[col] = np.where(incomplete, "", flag.astype(int).astype(str))
    df[h[13]] = np.char.mod("%.6f", w)
    return df


def write_enaho(world: World, out: Path, rng: np.random.Generator, scale: float) -> dict[str, int]:
    written = {}
    for year in YEARS:
        rel = f"{ENAHO_DIR}/enaho01-{year}-100.csv"
        written[rel] = write_frame(year_sample(world, year, rng, scale), out / rel, encoding="latin-1")
    return written
