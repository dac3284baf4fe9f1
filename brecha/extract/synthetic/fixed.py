"""OSIPTEL PUNKU fixed internet connections by district, period, operator, technology and segment.

No real sample exists; the published layout is ``Periodo, Empresa, Departamento, Provincia, Distrito,
Tecnología, Segmento, Conexiones``, keyed by names (upper case with accents here, with a few spelling
variants) rather than ubigeo. Two files, as a user holds them: the quarterly history 2015-2022 as a CSV
(``conexiones_internet_fijo_distrito.csv``, periods ``2015-T1``) to 2024-T2, and PUNKU's dataset download after,
``2.3 CONEXIONES DE INTERNET FIJO POR DISTRITO.xlsx``: sheet ``Dataset`` after a presentation sheet, title rows
above the header, **monthly** periods (``2024-07``) up to November 2024 (so the last quarter has two months),
``Segmento`` in mixed case (``RESIDENCIAL`` from September). Connections are a stock at the end of each period. The latest quarter's connections per district are its census internet share ×
households × growth since 2017; fibre replaces ADSL and coaxial cable over time, earlier in urban districts.
At ``scale`` < 1 only a share of the districts is listed (larger ones more likely); small local ISPs appear
in proportion to ``scale``.
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import duckdb
import numpy as np
import pandas as pd

from brecha.core.db import load_extension
from brecha.core.layouts import OSIPTEL_FIXED_CONNECTIONS
from brecha.extract.synthetic.catalog import BY_CODE
from brecha.extract.synthetic.io import write_frame, zip_bytes
from brecha.extract.synthetic.names import accented_upper, quechua, reference_form, spelling_variant
from brecha.extract.synthetic.world import World

PUNKU_DIR = "osiptel-punku"
FILE_NAME = "conexiones_internet_fijo_distrito.csv"
XLSX_NAME = "2.3 CONEXIONES DE INTERNET FIJO POR DISTRITO.xlsx"
SHEET = "Dataset"
TITLE_ROWS = ("2.3 CONEXIONES DE INTERNET FIJO POR DISTRITO",
              "Fuente: Empresas operadoras. Elaboración: OSIPTEL - PUNKU", "")
QUARTERS = [f"{y}-T{q}" for y in range(2015, 2025) for q in range(1, 5)][:-2]  # the CSV's history, to 2024-T2
MONTHS = [f"2024-{m:02d}" for m in range(7, 12)]  # the xlsx: 2024-07 .. 2024-11
PERIODS = QUARTERS + MONTHS
# time in quarters since 2015-T1, at the end of each period: a quarter and its closing month coincide
PERIOD_T = [float(i) for i in range(len(QUARTERS))] + [
    (int(m[:4]) - 2015) * 4 + int(m[5:]) / 3 - 1 for m in MONTHS]
LAST_T = (2024 - 2015) * 4 + 3.0  # 2024-T4
VARIANT_SHARE = 0.015  # districts whose name is spelled differently from the reference

# operator: (base weight, first quarter index, technologies)
_OPERATORS = {
    "Telefónica del Perú S.A.A.": (5.0, 0, ("ADSL", "Cable coaxial", "Fibra óptica", "Inalámbrico")),
    "América Móvil Perú S.A.C.": (2.5, 0, ("Cable coaxial", "Fibra óptica")),
    "Entel Perú S.A.": (0.8, 4, ("Inalámbrico", "Fibra óptica")),
    "Viettel Perú S.A.C.": (0.5, 16, ("Inalámbrico", "Fibra óptica")),
    "WOW Tel S.A.C.": (1.2, 14, ("Fibra óptica",)),
    "Win Empresas S.A.C.": (1.2, 10, ("Fibra óptica",)),
    "Gilat Networks Perú S.A.": (1.0, 0, ("Satelital",)),
}
_SEGMENTS = ("Residencial", "Empresarial")


def _ramp(t: np.ndarray, start: int) -> np.ndarray:
    return np.clip((t - start + 1) / 8, 0, 1)


def _tech_mix(op: str, techs: tuple[str, ...], t: np.ndarray, u: float) -> np.ndarray:
    """Share of each technology of ``op`` per quarter (rows: techs, columns: quarters)."""
    t0 = 14 + 16 * (1 - u)  # fibre take-off quarter: earlier where urban
    fibre = (0.6 + 0.3 * u) / (1 + np.exp(-(t - t0) / 3.0))  # fibre never takes the whole market
    mix = np.zeros((len(techs), len(t)))
    for i, tech in enumerate(techs):
        if tech == "Fibra óptica":
            mix[i] = fibre if len(techs) > 1 else 1.0
        elif tech == "ADSL":
            mix[i] = (1 - fibre) * (0.75 - 0.3 * u)
        elif tech == "Cable coaxial":
            mix[i] = (1 - fibre) * (0.25 + 0.3 * u if op.startswith("Telef") else 1.0)
        elif tech == "Inalámbrico":
            mix[i] = (1 - fibre) * (0.05 + 0.4 * (1 - u) if op.startswith("Telef") else 1.0)
        else:
            mix[i] = 1.0
    return mix / mix.sum(axis=0, keepdims=True)


def build_fixed(world: World, rng: np.random.Generator, scale: float) -> pd.DataFrame:
    d = world.districts
    t = np.array(PERIOD_T)
    growth = 0.45 + 0.55 * (t / LAST_T) ** 1.2 + np.where(t >= 21, 0.05, 0.0)  # 2020-T2 lockdown jump
    latest = d.households * d.internet / 100 * rng.lognormal(np.log(1.5), 0.15, len(d))
    sat_only = (d.internet == 0) & (rng.random(len(d)) < 0.3)
    latest = np.where(sat_only, rng.integers(1, 6, len(d)), latest)
    listed = np.flatnonzero(latest >= 1)
    if scale < 1:
        w = np.sqrt(latest[listed])
        listed = np.sort(rng.choice(listed, int(round(scale * len(listed))), replace=False, p=w / w.sum()))
    variants = set(rng.choice(listed, int(round(VARIANT_SHARE * len(listed))), replace=False).tolist())

    meta: list[tuple[str, str, str, str, str, str]] = []  # per cell: operator, dep, province, district, tech, segment
    counts: list[np.ndarray] = []  # per cell: connections per quarter
    urbanity = d.urbanity.to_numpy()
    records = list(d[["dep_code", "province_proper", "district_proper"]].itertuples(index=False))  # not .iloc per row
    for i in listed:
        r = records[i]
        u = float(urbanity[i])
        ops = _operators(u, bool(sat_only[i]), scale, rng)
        weights = np.array([w * _ramp(t, start) for (w, start, _) in ops.values()])
        shares = weights / np.maximum(weights.sum(axis=0, keepdims=True), 1e-9)
        totals = latest[i] * growth * rng.lognormal(0, 0.03, len(t))
        business = float(np.clip(rng.normal(0.1, 0.04), 0.02, 0.25))
        names = (BY_CODE[r.dep_code].title.upper(), accented_upper(r.province_proper),
                 spelling_variant(reference_form(r.district_proper), rng) if i in variants
                 else accented_upper(r.district_proper))
        for j, (op, (_, _, techs)) in enumerate(ops.items()):
            mix = _tech_mix(op, techs, t, u)
            for ti, tech in enumerate(techs):
                conn = totals * shares[j] * mix[ti]
                for seg, frac in zip(_SEGMENTS, (1 - business, business), strict=True):
                    meta.append((op, *names, tech, seg))
                    counts.append(conn * frac)
    n = np.round(np.vstack(counts)).astype(np.int64)
    cell, q = np.nonzero(n > 0)
    m = np.array(meta, dtype=object)[cell]
    df = pd.DataFrame({
        "Periodo": np.array(PERIODS)[q], "Empresa": m[:, 0], "Departamento": m[:, 1], "Provincia": m[:, 2],
        "Distrito": m[:, 3], "Tecnología": m[:, 4], "Segmento": m[:, 5], "Conexiones": n[cell, q],
    })
    order = np.lexsort((cell, q))  # by period, then in the order districts and cells were generated
    return df.iloc[order].reset_index(drop=True)


def _operators(u: float, satellite_only: bool, scale: float,
               rng: np.random.Generator) -> dict[str, tuple[float, int, tuple[str, ...]]]:
    """Operators in one district: name -> (market weight, first quarter, technologies)."""
    presence = {"Telefónica del Perú S.A.A.": 0.97, "América Móvil Perú S.A.C.": 0.15 + 0.8 * u,
                "Entel Perú S.A.": 0.6 * u, "Viettel Perú S.A.C.": 0.3 * u, "WOW Tel S.A.C.": 0.9 * (u > 0.75),
                "Win Empresas S.A.C.": 0.9 * (u > 0.7), "Gilat Networks Perú S.A.": 0.6 * (u < 0.3)}
    ops: dict[str, tuple[float, int, tuple[str, ...]]] = {}
    for op, (w, start, techs) in _OPERATORS.items():
        p = (1.0 if op.startswith("Gilat") else 0.0) if satellite_only else presence[op]
        if rng.random() < p:
            if op.startswith("Telef"):
                techs = tuple(x for x in techs if (x != "Cable coaxial" or u > 0.45) and (x != "Inalámbrico" or u < 0.1))
            ops[op] = (w * rng.lognormal(0, 0.3), start, techs)
    for k in range(rng.poisson(scale * (0.3 + 1.5 * u))):
        name = f"{quechua(rng).upper()} {('TELECOM S.A.C.', 'NET E.I.R.L.', 'FIBRA S.A.C.')[k % 3]}"
        if name not in ops:
            ops[name] = (0.4 * rng.lognormal(0, 0.4), int(rng.integers(8, 36)), ("Fibra óptica", "Inalámbrico"))
    if not ops:
        ops["Telefónica del Perú S.A.A."] = _OPERATORS["Telefónica del Perú S.A.A."]
    return ops


def write_fixed(world: World, out: Path, rng: np.random.Generator, scale: float) -> dict[str, int]:
    df = build_fixed(world, rng, scale)[list(OSIPTEL_FIXED_CONNECTIONS.headers)]
    monthly = df.Periodo.isin(MONTHS).to_numpy()
    written = {f"{PUNKU_DIR}/{FILE_NAME}": write_frame(df[~monthly], out / PUNKU_DIR / FILE_NAME)}
    sheet = df[monthly].reset_index(drop=True)
    upper = (sheet.Periodo >= "2024-09") & sheet.Segmento.eq("Residencial")
    sheet.loc[upper, "Segmento"] = "RESIDENCIAL"
    written[f"{PUNKU_DIR}/{XLSX_NAME}"] = write_punku_xlsx(sheet, out / PUNKU_DIR / XLSX_NAME)
    return written


def write_punku_xlsx(df: pd.DataFrame, path: Path) -> int:
    """The sheet as PUNKU's download has it: DuckDB's xlsx writer for the table (fast), written after as many
    empty rows as there are title rows and the header, which are then filled in the sheet's XML; a presentation
    sheet is put before it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    top = len(TITLE_ROWS) + 1
    headers = list(df.columns)
    # placeholders without nulls (DuckDB 1.5.5's xlsx writer loses some numbers after a vector of a union with
    # nulls in it)
    empty = ", ".join(f"{'0::BIGINT' if h == 'Conexiones' else chr(39) + chr(39)} AS {_quoted(h)}" for h in headers)
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.xlsx"
        con = duckdb.connect()
        try:
            load_extension(con, "excel")
            con.register("punku", df.assign(__n=np.arange(len(df))))
            target = str(plain).replace("'", "''")
            con.execute(f"COPY (SELECT * EXCLUDE (__o, __n) FROM (SELECT 0 AS __o, range AS __n, {empty} FROM "
                        f"range({top}) UNION ALL BY NAME SELECT 1 AS __o, * FROM punku) ORDER BY __o, __n) "
                        f"TO '{target}' (FORMAT xlsx, HEADER false, SHEET '{SHEET}')")
        finally:
            con.close()
        with zipfile.ZipFile(plain) as zin:
            parts = {info.filename: zin.read(info.filename) for info in zin.infolist()}
    sheet_part = next(n for n in parts if n.startswith("xl/worksheets/sheet"))
    xml = parts[sheet_part]
    begin = xml.index(b"<sheetData>") + len(b"<sheetData>")
    blank = xml[begin:xml.index(f'<row r="{top + 1}"'.encode())]
    filled = "".join(f'<row r="{i + 1}">{_inline(f"A{i + 1}", t) if t else ""}</row>' for i, t in enumerate(TITLE_ROWS))
    cols = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    filled += f'<row r="{top}">' + "".join(_inline(f"{cols[j]}{top}", h) for j, h in enumerate(headers)) + "</row>"
    xml = xml.replace(blank, filled.encode(), 1)
    # the sheet's extent, which Excel writes at the top of every sheet (DuckDB's writer does not)
    dimension = f'<dimension ref="A1:{cols[len(headers) - 1]}{top + len(df)}"/>'.encode()
    parts[sheet_part] = xml.replace(b"<sheetData>", dimension + b"<sheetData>", 1)
    _add_presentation_sheet(parts)
    path.write_bytes(zip_bytes(parts))
    return len(df)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _inline(ref: str, text: str) -> str:
    return f'<c r="{ref}" t="inlineStr"><is><t>{escape(text)}</t></is></c>'


def _add_presentation_sheet(parts: dict[str, bytes]) -> None:
    """A first sheet 'Presentación' with a line of text, before 'Dataset' (as PUNKU's workbooks open)."""
    name = "xl/worksheets/presentacion.xml"
    parts[name] = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                   '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
                   f'<row r="1">{_inline("A1", "PUNKU - OSIPTEL: indicadores de internet fijo")}</row>'
                   '</sheetData></worksheet>').encode()
    rels = parts["xl/_rels/workbook.xml.rels"].decode("utf-8")
    rels = rels.replace("</Relationships>", '<Relationship Id="rIdPres" Type="http://schemas.openxmlformats.org/'
                        'officeDocument/2006/relationships/worksheet" Target="worksheets/presentacion.xml"/>'
                        "</Relationships>")
    parts["xl/_rels/workbook.xml.rels"] = rels.encode("utf-8")
    book = parts["xl/workbook.xml"].decode("utf-8")
    book = re.sub(r"<sheets>", '<sheets><sheet name="Presentación" sheetId="99" r:id="rIdPres"/>', book, count=1)
    parts["xl/workbook.xml"] = book.encode("utf-8")
    types = parts["[Content_Types].xml"].decode("utf-8")
    types = types.replace("</Types>", '<Override PartName="/xl/worksheets/presentacion.xml" ContentType="application/'
                          'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>')
    parts["[Content_Types].xml"] = types.encode("utf-8")
