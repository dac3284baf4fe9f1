"""The synthetic Peru every extract is written from: provinces and districts with geography and covariates.

The world depends on the seed only (never on ``scale``), so every file of one seed describes the same
country. District internet adoption (Census 2017 share of households) is driven by urbanity, poverty,
electricity, altitude and natural region plus noise, and counted over the district's households, so
small rural districts often have exactly 0 % (as in the census).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from brecha.extract.synthetic.catalog import (
    DEPARTMENT_POPULATION,
    DEPARTMENTS,
    LAT_RANGE,
    LIMA_METRO_PROVINCE,
    LON_RANGE,
)
from brecha.extract.synthetic.names import place_name, reference_form

N_NEWER = 18  # newer districts: in the reference with NA numerics, no census indicators
N_NOT_SURVEYED = 4  # complete districts whose area and density are 'S.I.' in the reference
N_CENSUS_EXTRA = 2  # census codes that are not in the reference


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class World:
    districts: pd.DataFrame  # the 1,874 complete districts (one row each)
    newer: pd.DataFrame  # newer districts: code and names only
    census_extra: pd.DataFrame  # census-only codes (not in the reference)
    provinces: pd.DataFrame  # the 196 provinces
    seed: int

    @property
    def all_reference(self) -> pd.DataFrame:
        """Complete and newer districts, ordered by ubigeo (the reference file's order)."""
        return pd.concat([self.districts, self.newer], ignore_index=True).sort_values("ubigeo", ignore_index=True)


def _split(rng: np.random.Generator, total: int, parts: int, first_share: float | None = None) -> list[int]:
    """Split ``total`` districts over ``parts`` provinces (each at least one)."""
    if parts == 1:
        return [total]
    w = rng.gamma(3.0, 1.0, parts)
    if first_share is not None:
        w[0] = first_share * w[1:].sum() / (1 - first_share)
    counts = np.ones(parts, dtype=int)
    counts += rng.multinomial(total - parts, w / w.sum())
    return counts.tolist()


def _unique_name(rng: np.random.Generator, taken: set[str], region: str) -> str:
    for _ in range(200):
        name = place_name(rng, region)
        if reference_form(name) not in taken:
            taken.add(reference_form(name))
            return name
    raise RuntimeError("could not generate a unique place name")  # pragma: no cover


def _layout(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Provinces and districts: codes, names, natural region, capital flags."""
    prov_rows: list[dict] = []
    dist_rows: list[dict] = []
    for dep in DEPARTMENTS:
        if dep.code == "15":  # Lima: Lima Metropolitana (43 districts) + 9 provinces of Lima region
            counts = [43, *_split(rng, dep.n_districts - 43, dep.n_provinces - 1)]
        else:
            counts = _split(rng, dep.n_districts, dep.n_provinces)
        taken_prov: set[str] = {reference_form(dep.capital)}
        regions = np.array(["costa", "sierra", "selva"])
        probs = np.array([dep.costa, dep.sierra, dep.selva])
        for p_idx, n_d in enumerate(counts, start=1):
            prov_code = f"{dep.code}{p_idx:02d}"
            prov_region = regions[rng.choice(3, p=probs)]
            if p_idx == 1:
                prov_name = dep.capital if dep.code not in ("07", "15") else dep.title
            else:
                prov_name = _unique_name(rng, taken_prov, prov_region)
            capital_town = dep.capital if p_idx == 1 else (prov_name if rng.random() < 0.7 else place_name(rng))
            prov_rows.append({"province_code": prov_code, "dep_code": dep.code, "province_proper": prov_name,
                              "capital": capital_town, "prov_region": prov_region})
            taken_dist = {reference_form(prov_name)}
            for d_idx in range(1, n_d + 1):
                region = prov_region if rng.random() < 0.8 or probs.max() == 1 else regions[rng.choice(3, p=probs)]
                if prov_code in (LIMA_METRO_PROVINCE, "0701"):
                    region = "costa"
                name = prov_name if d_idx == 1 else _unique_name(rng, taken_dist, region)
                dist_rows.append({
                    "ubigeo": f"{prov_code}{d_idx:02d}", "dep_code": dep.code, "province_code": prov_code,
                    "district_proper": name, "province_proper": prov_name, "region_nat": region,
                    "is_prov_capital": d_idx == 1, "is_dep_capital": d_idx == 1 and p_idx == 1,
                })
    return pd.DataFrame(prov_rows), pd.DataFrame(dist_rows)


def _covariates(rng: np.random.Generator, d: pd.DataFrame) -> pd.DataFrame:
    n = len(d)
    dep_by_code = {dep.code: dep for dep in DEPARTMENTS}
    metro = d.province_code.isin([LIMA_METRO_PROVINCE, "0701"]).to_numpy()
    costa = (d.region_nat == "costa").to_numpy()
    sierra = (d.region_nat == "sierra").to_numpy()
    selva = (d.region_nat == "selva").to_numpy()
    cap_prov = d.province_code.str[2:].eq("01").to_numpy()

    # urbanity 0..1
    u = rng.beta(1.1, 6.0, n)
    u += np.where(d.is_prov_capital, 0.3 + 0.15 * rng.random(n), 0.0)
    u += np.where(cap_prov & ~d.is_prov_capital, 0.12 * rng.beta(1.0, 2.0, n), 0.0)
    u += np.where(costa, 0.08, 0.0)
    u = np.where(d.is_dep_capital, 0.78 + 0.2 * rng.random(n), u)
    u = np.where(metro, 0.72 + 0.28 * rng.beta(2.0, 1.5, n), u)
    u = np.clip(u, 0.0, 1.0)

    dep_eff = {dep.code: rng.normal(0, 1) for dep in DEPARTMENTS}
    de = d.dep_code.map(dep_eff).to_numpy()

    # population (census 2017): skewed, a few very large urban districts
    log_pop = 7.15 + 3.8 * u + rng.normal(0, 1.0, n)
    log_pop = np.where(d.is_dep_capital, 11.6 + rng.normal(0, 0.6, n), log_pop)
    log_pop = np.where(metro, 11.4 + rng.normal(0, 0.95, n), log_pop)
    pop = np.exp(np.clip(log_pop, np.log(110), np.log(1_250_000)))
    dep_total = pd.Series(pop).groupby(d.dep_code.to_numpy()).transform("sum").to_numpy()
    target = d.dep_code.map(DEPARTMENT_POPULATION).to_numpy()
    pop = np.round(np.clip(pop * (target / dep_total) ** 0.8, 110, 1_280_000)).astype(int)

    # geography
    lat = np.empty(n)
    lon = np.empty(n)
    prov_centre = {}
    for code in sorted(d.province_code.unique()):
        dep = dep_by_code[code[:2]]
        prov_centre[code] = (dep.lat + 0.8 * dep.lat_sd * rng.normal(), dep.lon + 0.8 * dep.lon_sd * rng.normal())
    for i, (code, region) in enumerate(zip(d.province_code, d.region_nat, strict=True)):
        dep = dep_by_code[code[:2]]
        shift = {"costa": -0.7, "sierra": 0.0, "selva": 0.7}[region] if max(dep.costa, dep.sierra, dep.selva) < 1 else 0
        clat, clon = prov_centre[code]
        lat[i] = clat + 0.5 * dep.lat_sd * rng.normal()
        lon[i] = clon + dep.lon_sd * (0.5 * rng.normal() + shift)
    lat = np.where(metro, -12.05 + 0.08 * rng.normal(size=n), lat)
    lon = np.where(metro, -77.03 + 0.06 * rng.normal(size=n), lon)
    lat = np.clip(lat, *LAT_RANGE)
    lon = np.clip(lon, *LON_RANGE)

    alt = np.where(costa, np.clip(np.exp(rng.normal(np.log(120), 1.0, n)), 2, 1400), 0.0)
    alt = np.where(sierra, np.clip(rng.normal(3300, 550, n), 1500, 4750), alt)
    alt = np.where(selva, np.clip(np.exp(rng.normal(np.log(300), 0.6, n)), 80, 1800), alt)
    alt = np.where(metro, rng.uniform(5, 450, n), alt)
    alt = np.round(alt).astype(int)

    log_area = np.select([costa, sierra, selva], [5.0, 5.0, 6.6]) - 2.6 * u + rng.normal(0, 0.9, n)
    log_area = np.where(metro, rng.normal(3.4, 1.0, n), log_area)
    area = np.round(np.exp(np.clip(log_area, np.log(1.5), np.log(25000))), 2)

    region_pov = np.select([costa, sierra, selva], [-0.45, 0.35, 0.15])
    pov = 100 * _sigmoid(-0.1 - 3.6 * u + region_pov + 0.3 * de + rng.normal(0, 0.5, n))
    pov = np.where(metro, 100 * _sigmoid(-2.4 - 4.0 * (u - 0.8) + rng.normal(0, 0.6, n)), pov)
    pov_ext = pov * np.clip(0.15 + 0.5 * pov / 100 + rng.normal(0, 0.08, n), 0.02, 0.9)
    elec = 100 * _sigmoid(1.35 + 2.6 * u - 0.9 * selva - 1.4 * (pov / 100 - 0.34) + rng.normal(0, 0.7, n))
    water = 100 * _sigmoid(1.0 + 1.6 * u - 0.6 * selva - 0.8 * (pov / 100 - 0.34) + rng.normal(0, 0.9, n))
    sewage = 100 * _sigmoid(-0.6 + 3.0 * u - 0.8 * selva - 1.5 * (pov / 100 - 0.34) + rng.normal(0, 0.9, n))
    idh = 100 * _sigmoid(-0.75 + 1.9 * u - 1.6 * (pov / 100 - 0.34) + rng.normal(0, 0.18, n))
    vuln = np.round(100 * _sigmoid(-0.2 + 3.0 * (pov / 100 - 0.34) - 1.5 * u + rng.normal(0, 0.4, n))).astype(int)

    # Census 2017 internet: latent share, then counted over the district's households
    eta = (-5.25 + 4.3 * u - 2.6 * (pov / 100 - 0.34) + 2.2 * (elec / 100 - 0.77)
           - 0.3 * (alt - 2200) / 1000 + np.select([costa, sierra, selva], [0.25, 0.0, -0.3])
           + 0.2 * de + rng.normal(0, 0.75, n))
    p_internet = _sigmoid(eta)
    hh_size = rng.uniform(3.0, 4.1, n)
    households = np.maximum(np.round(pop / hh_size), 1).astype(int)
    with_internet = rng.binomial(households, p_internet)
    internet = np.round(100 * with_internet / households, 2)

    out = d.copy()
    out["urbanity"] = u
    out["pob"] = pop
    out["latitude"] = lat
    out["longitude"] = lon
    out["altitude"] = alt
    out["superficie"] = area
    out["density_2020"] = pop * rng.uniform(1.02, 1.12, n) / area
    out["pobreza"] = np.round(pov, 1)
    out["pobreza_ext"] = np.round(pov_ext, 1)
    out["electricidad"] = np.round(elec, 2)
    out["agua"] = np.round(water, 2)
    out["desague"] = np.round(sewage, 2)
    out["idh"] = np.round(idh, 1)
    out["vuln_alim"] = vuln
    out["ide_salud"] = np.round(np.where(rng.random(n) < 0.08, 0.0, _sigmoid(-1.2 + 1.5 * u + rng.normal(0, 0.6, n))), 4)
    out["households"] = households
    out["p_internet"] = p_internet
    out["internet"] = internet
    # the reference's own (2018-2019) estimates: close to the census but not equal
    out["idh_2019"] = np.clip(idh / 100 + rng.normal(0.03, 0.03, n), 0.05, 0.95)
    out["pct_pobreza_total"] = np.clip(pov + rng.normal(0, 5, n), 0.05, 95).round(6)
    out["pct_pobreza_extrema"] = np.clip(pov_ext + rng.normal(0, 3, n), 0.01, 90).round(6)
    out["ivuln"] = np.clip(vuln / 100 + rng.normal(0, 0.05, n), 0.05, 0.95)
    # mobile supply level for the coverage registry: tied to adoption, with its own noise
    out["supply"] = eta + rng.normal(0, 0.5, n)
    return out


def _names(d: pd.DataFrame, provinces: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    dep_by_code = {dep.code: dep for dep in DEPARTMENTS}
    d["department"] = d.dep_code.map(lambda c: dep_by_code[c].name)
    d["province"] = d.province_proper.map(reference_form)
    d["district"] = d.district_proper.map(reference_form)
    # a few reference names keep an accent (as 'UNION ASHÁNINKA' does)
    keep = rng.random(len(d)) < 0.01
    d.loc[keep, "district"] = d.loc[keep, "district_proper"].str.upper()
    # the district capital: usually the district's own name, sometimes another town
    other = rng.random(len(d)) < 0.2
    d["capital"] = np.where(other & ~d.is_prov_capital, [place_name(rng) for _ in range(len(d))], d.district_proper)
    d.loc[d.is_prov_capital, "capital"] = d.loc[d.is_prov_capital, "province_code"].map(
        provinces.set_index("province_code").capital)
    return d


def _reniec_codes(d: pd.DataFrame, rng: np.random.Generator) -> pd.Series:
    """RENIEC's codes: department renumbered, and district numbers shuffled in some provinces."""
    dep_by_code = {dep.code: dep for dep in DEPARTMENTS}
    codes = []
    shuffled = {p for p in d.province_code.unique() if rng.random() < 0.15}
    for prov, grp in d.groupby("province_code", sort=True):
        nums = np.arange(1, len(grp) + 1)
        if prov in shuffled and len(grp) > 2:
            nums[1:] = rng.permutation(nums[1:])
        for num, ub in zip(nums, grp.ubigeo, strict=True):
            codes.append((ub, f"{dep_by_code[prov[:2]].reniec}{prov[2:]}{num:02d}"))
    return d.ubigeo.map(dict(codes))


def build_world(seed: int) -> World:
    """The synthetic country for ``seed`` (independent of scale)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    provinces, d = _layout(rng)
    d = _covariates(rng, d)
    d = _names(d, provinces, rng)
    d["reniec"] = _reniec_codes(d, rng)

    # newer districts: appended at the end of some provinces; the reference has NA numerics for them
    newer_rows = []
    prov_sizes = d.groupby("province_code").size()
    picks = rng.choice(prov_sizes.index[prov_sizes > 3].to_numpy(), N_NEWER, replace=False)
    dep_by_code = {dep.code: dep for dep in DEPARTMENTS}
    for prov in sorted(picks):
        n_existing = int(prov_sizes[prov])
        base = d[d.province_code == prov].iloc[0]
        name = place_name(rng, str(base.region_nat))
        newer_rows.append({
            "ubigeo": f"{prov}{n_existing + 1:02d}", "dep_code": prov[:2], "province_code": prov,
            "department": dep_by_code[prov[:2]].name, "province": base.province, "district": reference_form(name),
            "district_proper": name, "province_proper": base.province_proper,
            "reniec": f"{dep_by_code[prov[:2]].reniec}{prov[2:]}{n_existing + 2:02d}",
            "pob": int(np.exp(rng.normal(7.8, 0.6))) if rng.random() < 0.83 else None,
        })
    newer = pd.DataFrame(newer_rows)
    newer.loc[0, "reniec"] = "NA"  # one newer district has no RENIEC code yet

    # census-only codes (renumbered districts): numbers beyond any in the reference
    extra_rows = []
    for prov in rng.choice(sorted(prov_sizes.index[~prov_sizes.index.isin(picks)]), N_CENSUS_EXTRA, replace=False):
        extra_rows.append({"ubigeo": f"{prov}{int(prov_sizes[prov]) + 5:02d}", "pob": int(np.exp(rng.normal(10, 0.5)))})
    census_extra = pd.DataFrame(extra_rows).sort_values("ubigeo", ignore_index=True)

    not_surveyed = rng.choice(np.flatnonzero(~d.is_prov_capital.to_numpy()), N_NOT_SURVEYED, replace=False)
    d["area_unknown"] = False
    d.loc[d.index[not_surveyed], "area_unknown"] = True

    provinces["province"] = provinces.province_proper.map(reference_form)
    return World(districts=d, newer=newer, census_extra=census_extra, provinces=provinces, seed=seed)
