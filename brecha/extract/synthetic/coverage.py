"""MTC/OSIPTEL mobile coverage per populated centre and operator (``COBERTURA_MOVIL_CUANTIFICADA.xlsx``).

One row per populated centre × operator present there. Coverage follows the district's supply level (tied
to its internet adoption): more operators, more 4G and more base stations where adoption is higher.
``UBIGEO_CCPP`` is written as an integer (the leading zero is lost, as in the published file).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from brecha.core.db import load_extension
from brecha.core.layouts import OSIPTEL_MOBILE_COVERAGE
from brecha.extract.synthetic.catalog import MOBILE_OPERATORS
from brecha.extract.synthetic.names import place_name, reference_form, spelling_variant
from brecha.extract.synthetic.world import World

COVERAGE_DIR = "mafeer29-cobertura"
FILE_NAME = "COBERTURA_MOVIL_CUANTIFICADA.xlsx"
UNCOVERED_SHARE = 0.033  # districts with no populated centre in the registry
VARIANT_SHARE = 0.007  # rows whose district name is spelled differently from the reference
N_UNNAMED = 3  # populated centres without a name
MAX_CENTRE_NUMBER = 9999  # the last four digits of UBIGEO_CCPP

# presence and 4G intercepts per operator (Viettel, Telefónica, América Móvil, Entel)
_PRESENCE = np.array([1.6, 0.0, -1.6, -1.7])
_FOUR_G = np.array([-0.3, -0.9, 0.1, 0.0])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _centres(world: World, rng: np.random.Generator, scale: float) -> pd.DataFrame:
    d = world.districts
    z = ((d.supply - d.supply.mean()) / d.supply.std()).to_numpy()
    n = len(d)
    uncovered = rng.choice(n, int(round(UNCOVERED_SHARE * n)), replace=False, p=_softmax(-1.5 * z))
    metro = d.province_code.isin(["1501", "0701"]).to_numpy()
    mean_c = np.exp(-0.1 + 0.25 * np.log(d.superficie) + 0.2 * np.log(d.pob) + rng.normal(0, 0.6, n))
    mean_c = np.where(metro, 1.5, mean_c)
    # a centre's number has four digits (UBIGEO_CCPP = 6-digit ubigeo + 4 digits): at most 9,999 per district,
    # else a 5-digit number would run into the next district's codes
    counts = np.minimum(np.maximum(1, np.round(scale * mean_c)), MAX_CENTRE_NUMBER).astype(int)
    counts[uncovered] = 0
    district_idx = np.repeat(np.arange(n), counts)
    numbers = centre_numbers(counts, rng)
    is_capital = numbers == 1
    level = z[district_idx] + np.where(is_capital, 1.0, rng.normal(-0.5, 0.9, len(numbers)))
    ubigeo = d.ubigeo.to_numpy()[district_idx]
    names = [reference_form(place_name(rng)) for _ in range(len(numbers))]
    capital_names = d.capital.map(reference_form).to_numpy()[district_idx]
    names = np.where(is_capital, capital_names, np.array(names, dtype=object))
    return pd.DataFrame({
        "district_idx": district_idx, "ubigeo": ubigeo, "number": numbers, "is_capital": is_capital,
        "level": level, "name": names, "pob": d.pob.to_numpy()[district_idx],
    })


def centre_numbers(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each district's centre numbers, districts one after the other: 0001 is the district capital, then
    increasing numbers with gaps, all within four digits (fewer gaps where a district has thousands of centres;
    smaller counts draw exactly as before)."""
    return np.concatenate([
        np.sort(np.concatenate([[1], 2 + rng.choice(min(3 * c + 2, MAX_CENTRE_NUMBER - 1), c - 1, replace=False)]))
        for c in counts if c > 0])


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def build_coverage(world: World, rng: np.random.Generator, scale: float) -> pd.DataFrame:
    """The coverage table, rows in the published order (operator blocks, then UBIGEO_CCPP)."""
    c = _centres(world, rng, scale)
    m = len(c)
    present = rng.random((m, 4)) < _sigmoid(_PRESENCE[None, :] + 0.9 * c.level.to_numpy()[:, None])
    none = ~present.any(axis=1)
    present[none, 0] = True  # the registry lists only centres with some coverage
    centre_i, op_i = np.nonzero(present)
    lvl = c.level.to_numpy()[centre_i]
    k = len(centre_i)
    r = rng.random((k, 6))
    g4 = (r[:, 0] < _sigmoid(_FOUR_G[op_i] + 1.3 * lvl)).astype(int)
    g3 = np.select(
        [op_i == 0, op_i == 1, op_i == 2, op_i == 3],
        [np.where(g4 == 1, r[:, 1] < 0.89, 1), r[:, 1] < 0.3, r[:, 1] < 0.98, np.where(g4 == 1, r[:, 1] < 0.3, 1)],
    ).astype(int)
    g2 = np.select([op_i == 1, op_i == 3, op_i == 2], [np.where((g3 == 0) & (g4 == 0), 1, r[:, 2] < 0.15),
                                                       r[:, 2] < 0.05, r[:, 2] < 0.006], 0).astype(int)
    g5 = ((op_i >= 2) & (g4 == 1) & (lvl > 2.2) & (r[:, 3] < 0.2)).astype(int)
    up_to_1 = np.select([op_i == 0, op_i == 1], [0, (g3 == 1) & (g4 == 0) & (r[:, 4] < 0.6)], g3).astype(int)
    over_1 = np.where(op_i == 0, 1, g4).astype(int)

    cap = c.is_capital.to_numpy()[centre_i]
    size = np.log(np.maximum(c.pob.to_numpy()[centre_i], 100) / 5000)
    lam = np.exp(-2.7 + 0.7 * lvl + np.where(cap, 1.6 + 0.7 * size, 0.0))
    eb4 = rng.poisson(lam) * g4
    eb3 = rng.poisson(0.7 * lam) * g3
    eb2 = rng.poisson(0.5 * lam) * g2
    eb5 = (rng.poisson(0.1 * lam) + 1) * g5
    total = eb2 + eb3 + eb4 + eb5
    score = 2 * g2 + 3 * g3 + 4 * g4 + 5 * g5 + over_1 + total

    d = world.districts
    idx = c.district_idx.to_numpy()[centre_i]
    dep = d.department.to_numpy()[idx]
    prov = d.province.to_numpy()[idx].astype(object)
    dist = d.district.to_numpy()[idx].astype(object)
    # a few districts (and one province) are spelled differently in the registry
    rows_per_district = np.bincount(idx, minlength=len(d))
    target = VARIANT_SHARE * k
    varied = 0
    for di in rng.permutation(np.flatnonzero(rows_per_district)):
        if varied >= target:
            break
        if rows_per_district[di] > 0.4 * target:
            continue
        dist[idx == di] = spelling_variant(d.district.iloc[di], rng)
        varied += rows_per_district[di]
    prov_codes = d.province_code.to_numpy()[idx]
    odd_prov = rng.choice(np.unique(prov_codes))
    prov[prov_codes == odd_prov] = spelling_variant(str(prov[prov_codes == odd_prov][0]), rng)

    names = c.name.to_numpy()[centre_i].astype(object)
    names[rng.choice(k, N_UNNAMED, replace=False)] = None
    ccpp = np.array([int(f"{u}{n:04d}") for u, n in zip(c.ubigeo.to_numpy()[centre_i], c.number.to_numpy()[centre_i],
                                                          strict=True)], dtype=np.int64)
    h = OSIPTEL_MOBILE_COVERAGE.headers
    df = pd.DataFrame({
        h[0]: dep, h[1]: prov, h[2]: dist, h[3]: names, h[4]: ccpp,
        h[5]: np.array(MOBILE_OPERATORS, dtype=object)[op_i],
        h[6]: g2, h[7]: g3, h[8]: g4, h[9]: g5, h[10]: up_to_1, h[11]: over_1,
        h[12]: eb2, h[13]: eb3, h[14]: eb4, h[15]: eb5, h[16]: score, h[17]: total,
    })
    df["_op"] = op_i
    df = df.sort_values(["_op", h[4]], kind="stable").drop(columns="_op").reset_index(drop=True)
    for col in h[6:]:
        df[col] = df[col].astype("int32")
    return df


XLSX_MAX_RECORDS = 1_048_576 - 1  # a sheet holds 1,048,576 rows (Excel's limit, which DuckDB's writer enforces)


def write_coverage(world: World, out: Path, rng: np.random.Generator, scale: float) -> int:
    # at scale 18 or more the populated centres outgrow one sheet: like a real export, the sheet stops at the limit
    # (`make bench` reports the rows each scale really holds)
    df = build_coverage(world, rng, scale).iloc[:XLSX_MAX_RECORDS]
    path = out / COVERAGE_DIR / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        load_extension(con, "excel")
        con.register("coverage", df)
        target = str(path).replace("'", "''")
        con.execute(f"COPY (SELECT * FROM coverage) TO '{target}' (FORMAT xlsx, HEADER true)")
    finally:
        con.close()
    return len(df)
