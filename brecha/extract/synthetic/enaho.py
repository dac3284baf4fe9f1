"""INEI ENAHO module 01 household microdata (table ``enaho01-<year>-100``), one file per year, in the flavours
INEI publishes and analysts use, so the default run reads each of them:

* INEI's CSV: latin-1, upper-case headers (``AÑO``), codes; 2015, 2016, 2019 and 2020 as plain files, 2018
  zipped, 2025 ``;``-separated (as INEI's 2025 file is);
* the Stata ``.dta`` (2022, 2023) and SPSS ``.sav`` (2021, 2024) with their value labels, each inside
  ``{code}-Modulo01.zip`` as downloaded (beside a documentation stub);
* 2017 as an analyst's CSV export of the Stata file with the labels applied (UTF-8 with a BOM, ``aÑo``,
  ``conexion a internet`` / ``pase``, `` de 20 000 a 49 999 habitantes``), like the real 5-household sample.

A two-stage sample per year: conglomerates allocated to departments (∝ √households), placed in districts
∝ households, about eight dwellings each; the stratum (ESTRATO) is the conglomerate's. About a quarter of
the interviews are not completed (RESULT 2-7) and have blank ICT answers, as published. ICT goods follow the
district's census internet propensity, the conglomerate's urbanity and a yearly trend. The 2023 questionnaire
change is reproduced: up to 2022 P1144 is the household's connection (fixed, or a mobile modem; about 55 %
nationally in 2022); from 2023 P1144 counts any access, members' mobile data included (about 90 %), and
P114B1 (fixed, about 30 %), P114B2 (mobile postpaid) and P114B3 (mobile prepaid) split it. FACTOR07 expands
each department's complete interviews to its household count (~8.3 M in 2015 to ~10 M in 2025).
"""

from __future__ import annotations

import io
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from brecha.core.layouts import ENAHO_DOMAINS, ENAHO_RESULTS, ENAHO_STRATA, INEI_ENAHO
from brecha.extract.synthetic.io import zip_bytes
from brecha.extract.synthetic.world import World

ENAHO_DIR = "inei-enaho"
YEARS = range(2015, 2026)
NEW_QUESTIONNAIRE = 2023  # P1144 = any internet access from this year; P114B1..3 asked
HOUSEHOLDS_PER_YEAR = 35_000
HOUSEHOLDS_2015 = 8_250_000
INCOMPLETE_SHARE = 0.25  # interviews not completed (RESULT 2-7): ICT answers left blank
# INEI's code of each year's module zips ({code}-Modulo01.zip); 2025's is not known here: that year is a plain CSV
INEI_CODES = {2015: 498, 2016: 546, 2017: 603, 2018: 634, 2019: 687, 2020: 737, 2021: 759, 2022: 784, 2023: 906,
              2024: 966}
FLAVOURS = {2015: "csv", 2016: "csv", 2017: "labelled", 2018: "zip_csv", 2019: "csv", 2020: "csv", 2021: "sav",
            2022: "dta", 2023: "dta", 2024: "sav", 2025: "csv_semicolon"}
# the goods' own value labels (0 is 'pase' for each); p1142, p1144, p114b2 and p114b3 as in the real sample
GOOD_LABELS = {"P1141": "telefono fijo", "P1142": "telefono celular", "P1143": "tv. cable",
               "P1144": "conexion a internet", "P1145": "no tiene", "P114B1": "conexion a internet fijo",
               "P114B2": "conexion movil post pago control", "P114B3": "conexion movil prepago"}
GOODS = tuple(GOOD_LABELS)
# value labels of the coded columns, as the Stata/SPSS files carry them (the layouts' tables, first label of each)
VALUE_LABELS = {
    "DOMINIO": {int(c): t for t, c in reversed(ENAHO_DOMAINS)},
    "ESTRATO": {int(c): t for t, c in reversed(ENAHO_STRATA)},
    "RESULT": {int(c): t for t, c in reversed(ENAHO_RESULTS)},
    **{g: {0: "pase", 1: label} for g, label in GOOD_LABELS.items()},
}
FIXED_STAMP = "01 Jan 2024 00:00"  # the save time inside every .dta/.sav (byte-identical output per seed)


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
    """One year's households in INEI's codes, with INEI's upper-case headers (``INEI_ENAHO.headers``; the
    P114B columns only from 2023)."""
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
    cong_stratum = _stratum(d.pob.to_numpy()[cong_district], urban, rng)  # the design's stratum: the PSU's

    hi = np.repeat(np.arange(n_cong), size)  # household -> conglomerate
    dwelling = np.concatenate([np.arange(1, s + 1) for s in size])
    n = len(hi)
    di = cong_district[hi]
    uc = np.where(urban[hi], np.maximum(u[hi], 0.6), np.minimum(u[hi], 0.25))
    pov = d.pobreza.to_numpy()[di] / 100
    t = year - 2017
    base = _logit(d.p_internet.to_numpy()[di])
    # the household's connection (P1144 up to 2022): fixed, or a mobile modem for some; about 55 % in 2022
    connection = rng.random(n) < _sigmoid(base + 0.65 + 1.2 * (uc - u[hi]) + 0.2 * t + 0.35 * (year >= 2020) + effect[hi])
    fixed = connection & (rng.random(n) < 0.55)  # P114B1 from 2023: about 30 %
    mobile = rng.random(n) < _sigmoid(1.4 + 1.6 * uc - 1.5 * (pov - 0.34) + 0.25 * (year - 2015))
    # members' mobile data (asked from 2023): nearly every household with a mobile phone
    mobile_data = mobile & (rng.random(n) < _sigmoid(1.2 + 1.5 * uc - 1.0 * (pov - 0.34)))
    postpaid = mobile_data & (rng.random(n) < 0.1 + 0.35 * uc)
    prepaid = mobile_data & (~postpaid | (rng.random(n) < 0.2))
    internet = (fixed | mobile_data) if year >= NEW_QUESTIONNAIRE else connection
    phone = rng.random(n) < _sigmoid(-1.6 + 2.6 * uc - 2.0 * (pov - 0.34) - 0.17 * (year - 2015))
    cable = rng.random(n) < _sigmoid(-1.1 + 1.8 * uc - 1.0 * (pov - 0.34) + 0.02 * (year - 2015) + 0.5 * effect[hi])
    none = ~(internet | mobile | phone | cable)

    complete = rng.random(n) >= INCOMPLETE_SHARE
    result = np.where(complete, 1, rng.choice([2, 3, 4, 5, 6, 7], n, p=[0.3, 0.15, 0.3, 0.15, 0.05, 0.05]))
    # expansion factors: each department's complete interviews sum to its households, with unequal weights
    w = rng.lognormal(0, 0.35, n)
    hh_dep = dep[di]
    for c, h in zip(deps, dep_hh, strict=True):
        m = hh_dep == c
        w[m] *= h / w[m & complete].sum()

    df = pd.DataFrame({
        "AÑO": str(year), "MES": np.char.zfill(month[hi].astype(str), 2),
        "CONGLOME": np.char.zfill(cong_ids[hi].astype(str), 6), "VIVIENDA": np.char.zfill(dwelling.astype(str), 3),
        "HOGAR": "11", "UBIGEO": d.ubigeo.to_numpy()[di], "DOMINIO": _domain(d)[di], "ESTRATO": cong_stratum[hi],
        "RESULT": result,
    })
    goods = dict(zip(GOODS, (phone, mobile, cable, internet, none, fixed, postpaid, prepaid), strict=True))
    for col in GOODS:
        if col.startswith("P114B") and year < NEW_QUESTIONNAIRE:
            continue
        df[col] = pd.Series(goods[col].astype(int), dtype="Int64").where(complete)
    df["FACTOR07"] = np.round(w, 6)
    assert set(df.columns) <= set(INEI_ENAHO.headers)
    return df


def _inei_csv(df: pd.DataFrame, sep: str = ",") -> bytes:
    """INEI's CSV: upper-case headers, codes, blank for a missing answer, latin-1."""
    buf = io.StringIO()
    df.to_csv(buf, index=False, sep=sep, lineterminator="\n", float_format="%.6f")
    return buf.getvalue().encode("latin-1")


def _labelled_csv(df: pd.DataFrame) -> bytes:
    """An analyst's export of the Stata file with the value labels applied (like the real sample): UTF-8 with a
    BOM, Stata's lower-case names (``aÑo``), label texts, ESTRATO's labels with a leading space."""
    out = df.astype(object).copy()
    for col, labels in VALUE_LABELS.items():
        if col in out:
            pad = " " if col == "ESTRATO" else ""
            out[col] = [("" if pd.isna(v) else pad + labels[int(v)]) for v in df[col]]
    out.columns = [_stata_name(c) for c in out.columns]
    buf = io.StringIO()
    out.to_csv(buf, index=False, lineterminator="\n", float_format="%.6f")
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _stata_name(header: str) -> str:
    """Stata's names are lower case except non-ASCII letters: AÑO -> aÑo."""
    return "".join(ch.lower() if ch.isascii() else ch for ch in header)


def _statistical(df: pd.DataFrame, kind: str) -> bytes:
    """The year as INEI's Stata (.dta, lower-case names) or SPSS (.sav, upper-case names) file: codes with value
    labels; the save time inside fixed."""
    import pyreadstat

    frame = df.copy()
    labels = {}
    for col, table in VALUE_LABELS.items():
        if col in frame:
            frame[col] = frame[col].astype("float64")
            labels[col] = {float(k): v for k, v in table.items()}
    if kind == "dta":
        frame.columns = [_stata_name(c) for c in frame.columns]
        labels = {_stata_name(c): v for c, v in labels.items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"x.{kind}"
        if kind == "dta":
            pyreadstat.write_dta(frame, str(path), variable_value_labels=labels)
        else:
            pyreadstat.write_sav(frame, str(path), variable_value_labels=labels)
        data = path.read_bytes()
    if kind == "dta":
        return re.sub(rb"<timestamp>\x11.{17}</timestamp>", b"<timestamp>\x11" + FIXED_STAMP.encode() + b"</timestamp>",
                      data, count=1, flags=re.DOTALL)
    # SPSS header: creation date (9 bytes, 'dd mmm yy') at offset 92, time (8 bytes, 'hh:mm:ss') at 101
    return data[:92] + b"01 Jan 2400:00:00" + data[109:]


def write_year(df: pd.DataFrame, year: int, out: Path) -> str:
    """Write one year in its flavour (``FLAVOURS``); return the file written, relative to ``out``."""
    flavour = FLAVOURS[year]
    table = f"enaho01-{year}-100"
    if flavour in ("csv", "csv_semicolon", "labelled"):
        rel = f"{ENAHO_DIR}/{table}.csv"
        data = _labelled_csv(df) if flavour == "labelled" else _inei_csv(df, ";" if flavour == "csv_semicolon" else ",")
    else:
        code = INEI_CODES[year]
        ext = "csv" if flavour == "zip_csv" else flavour
        member = _inei_csv(df) if flavour == "zip_csv" else _statistical(df, flavour)
        rel = f"{ENAHO_DIR}/{code}-Modulo01.zip"
        data = zip_bytes({f"{code}-Modulo01/{table}.{ext}": member,
                     f"{code}-Modulo01/Diccionario_{table}.txt": f"ENAHO {year}, modulo 01: diccionario (sintetico)\n"
                     .encode()})
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return rel


def write_enaho(world: World, out: Path, rng: np.random.Generator, scale: float) -> dict[str, int]:
    written = {}
    for year in YEARS:
        df = year_sample(world, year, rng, scale)
        written[write_year(df, year, out)] = len(df)
    return written
