"""OSIPTEL department tables: Cuadro 2.1 (mobile lines, stacked xlsx and hand-made csv), 2.2, 2.3 and 8.8.

Lines per department follow a national curve (the 2012 drop when 5.8 M inactive prepaid lines were
removed included) split by population and urbanity. Spellings follow the published files: title case
with accents, 'Lima y Callao' until 2012, 'Sin LAC' rows, trailing spaces in a few names, and in the
hand-made CSV the 'Lima y Callao' row about 10x too large.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd

from brecha.extract.synthetic.catalog import DEPARTMENTS
from brecha.extract.synthetic.io import normalize_xlsx, write_csv
from brecha.extract.synthetic.world import World

OSIPTEL_DIR = "hubergilt-osiptel"
# National lines in service at December (thousands), a smooth stand-in for the published totals.
_NATIONAL_K = {
    1994: 52, 1995: 75, 1996: 202, 1997: 436, 1998: 736, 1999: 1046, 2000: 1340, 2001: 1793, 2002: 2307,
    2003: 2930, 2004: 4093, 2005: 5583, 2006: 8772, 2007: 15417, 2008: 20952, 2009: 24702, 2010: 29003,
    2011: 32305, 2012: 29370, 2013: 29954, 2014: 31877, 2015: 34236, 2016: 37720, 2017: 38915, 2018: 42155,
}
_SIN_LAC_SHARE = {2012: 0.22, 2013: 0.19, 2014: 0.19, 2015: 0.21, 2016: 0.25, 2017: 0.27, 2018: 0.29}
_TRAILING_SPACE = {"La Libertad", "Puno", "Tumbes"}
_NOTES = (
    ("Nota 1:", "En noviembre de 2012, la empresa Telefónica Móviles dio de baja 5.8 millones de líneas prepago que "
                "no realizaron una recarga en el transcurso de 210 días calendario."),
    ("Nota 2:", "A partir del año 2013, la información de Lima ya no considera el número de líneas de la región Callao."),
    ("Nota 3: ", '"SIN LAC": Líneas en servicio a las que no se pudo asignar un código de área de localización (LAC), '
                 "por lo que no es posible identificar su ubicación geográfica."),
)


def _title(dep_title: str, accent_ancash: bool = True) -> str:
    return dep_title if accent_ancash or dep_title != "Áncash" else "Ancash"


def department_lines(world: World, rng: np.random.Generator) -> pd.DataFrame:
    """Lines at December per department code (Callao separate) and year 2002..2018, plus 'SIN_LAC'."""
    d = world.districts
    weight = d.assign(w=d.pob * (0.4 + 1.6 * d.urbanity)).groupby("dep_code").w.sum()
    years = list(range(2002, 2019))
    trend = rng.normal(0, 0.012, len(weight))
    rows = {}
    for y in years:
        share = weight.to_numpy() * np.exp(trend * (y - 2010)) * rng.lognormal(0, 0.02, len(weight))
        share = share / share.sum()
        total = _NATIONAL_K[y] * 1000
        located = total * (1 - _SIN_LAC_SHARE.get(y, 0.0))
        rows[y] = dict(zip(weight.index, np.round(located * share).astype(int), strict=True))
        rows[y]["SIN_LAC"] = int(round(total * _SIN_LAC_SHARE[y])) if y in _SIN_LAC_SHARE else None
    return pd.DataFrame(rows)


def _sin_lac(lines: pd.DataFrame, year: int) -> int | None:
    """Lines without a location area code in ``year`` (None before 2012)."""
    if year not in lines.columns or pd.isna(lines.loc["SIN_LAC", year]):
        return None
    return int(lines.loc["SIN_LAC", year])


def _monthly(dec: pd.Series, start_prev: float, rng: np.random.Generator) -> list[int]:
    """12 monthly values ending exactly at the December value, log-interpolated from last December."""
    t = np.arange(1, 13) / 12
    base = np.exp(np.log(max(start_prev, 1)) * (1 - t) + np.log(max(dec, 1)) * t)
    noisy = base * rng.lognormal(0, 0.015, 12)
    noisy[-1] = dec
    return [int(round(v)) for v in noisy]


def _department_rows(lines: pd.DataFrame, merged: bool, accent_ancash: bool, trailing: bool) -> list[tuple[str, list[str]]]:
    """(published name, department codes summed) in the published row order."""
    out = []
    for dep in DEPARTMENTS:
        if dep.code == "07" and merged:
            continue
        name = _title(dep.title, accent_ancash)
        codes = [dep.code]
        if dep.code == "15" and merged:
            name, codes = "Lima y Callao", ["15", "07"]
        if trailing and name in _TRAILING_SPACE:
            name += " "
        out.append((name, codes))
    return out


def write_c21_xlsx(lines: pd.DataFrame, out: Path, rng: np.random.Generator) -> int:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "C2.1"
    ws["A2"] = "2.  INDICADORES DEL SERVICIO MÓVIL"
    ws["A4"] = "Cuadro 2.1"
    ws["A5"] = "Líneas en Servicio por Departamento"
    ws["A6"] = "(información a fin de periodo)"
    ws["A8"] = "Fuente: Normativa de Requerimientos de Información Periódica"
    ws["A9"] = "Fecha de Corte: 05 de febrero de 2019"
    ws["A10"] = ("Nota general: Información remitida por las empresas operadoras, la misma que podría ser actualizada "
                 "en caso se reciba nueva información y/o ante una eventual rectificación.")
    data_rows = 0

    def block(top: int, periods: list, values: dict[str, list], total_name: str, notes) -> int:
        nonlocal data_rows
        ws.cell(top, 1, "Departamento")
        for j, p in enumerate(periods, start=2):
            cell = ws.cell(top, j, p)
            if isinstance(p, datetime):
                cell.number_format = "mmm-yy"
        r = top + 1
        totals = np.zeros(len(periods))
        for name, vals in values.items():
            ws.cell(r, 1, name)
            for j, v in enumerate(vals, start=2):
                if v is not None:
                    ws.cell(r, j, v)
                    if not isinstance(v, str):
                        totals[j - 2] += v
            r += 1
            data_rows += 1
        r += 1
        ws.cell(r, 1, total_name)
        for j, t in enumerate(totals, start=2):
            ws.cell(r, j, int(t))
        for label, text in notes:
            r += 1
            ws.cell(r, 1, label)
            ws.cell(r, 2, text)
        return r

    def yearly_values(years: list[int], merged: bool, accent: bool, lac_label: str) -> dict[str, list]:
        vals = {}
        for name, codes in _department_rows(lines, merged, accent, trailing=False):
            vals[name] = [int(sum(lines.loc[c, y] for c in codes)) if y >= 2003 else None for y in years]
        vals[lac_label] = [_sin_lac(lines, y) for y in years]
        return vals

    years1 = list(range(1994, 2013))
    v1 = yearly_values(years1, merged=True, accent=False, lac_label="Sin LAC")
    end = block(12, years1, v1, "Total Perú", [])
    # before 2003 only the national total is published
    for j, y in enumerate(years1, start=2):
        if y < 2003:
            ws.cell(end, j, _NATIONAL_K[y] * 1000)
    years2 = list(range(2013, 2019))
    header2: list = [*years2[:-1], datetime(2018, 12, 1)]  # the last header cell is a date, as published
    v2 = yearly_values(years2, merged=False, accent=True, lac_label="Sin LAC")
    end = block(end + 3, header2, v2, "Total Perú", _NOTES)
    ws.merge_cells(start_row=end, start_column=2, end_row=end, end_column=20)  # a long note, merged as published

    ws.cell(end + 4, 1, "Líneas en Servicio por Departamento - Detalle Mensual")
    months_a = [datetime(y, m, 1) for y in range(2013, 2019) for m in range(1, 13)]
    va = {}
    for name, codes in _department_rows(lines, merged=False, accent_ancash=True, trailing=False):
        va[name] = [v for y in range(2013, 2019) for v in _monthly(
            sum(lines.loc[c, y] for c in codes), sum(lines.loc[c, y - 1] for c in codes), rng)]
    va["Sin LAC"] = [v for y in range(2013, 2019) for v in _monthly(_sin_lac(lines, y), _sin_lac(lines, y - 1), rng)]
    end = block(end + 7, months_a, va, "Total Perú ", _NOTES[1:])

    months_b = [datetime(y, m, 1) for y in range(2003, 2013) for m in range(1, 13)]
    vb = {}
    for name, codes in _department_rows(lines, merged=True, accent_ancash=False, trailing=True):
        vb[name] = [v for y in range(2003, 2013) for v in _monthly(
            sum(lines.loc[c, y] for c in codes), sum(lines.loc[c, y - 1] for c in codes), rng)]
    other: list = [None] * len(months_b)
    for i in range(3, 9):  # April..September 2003: lines not assigned to a department
        other[i] = int(rng.integers(450_000, 560_000))
    for i in range(108, 117):  # January..September 2012: not published
        other[i] = "-"
    sin_lac_2012 = _sin_lac(lines, 2012)
    other[117:120] = [int(sin_lac_2012 * 1.75), int(sin_lac_2012 * 0.98), sin_lac_2012]
    vb["Otros / sin LAC"] = other
    block(end + 3, months_b, vb, "Total Perú", [_NOTES[0], _NOTES[2]])

    path = out / OSIPTEL_DIR / "IndMovil-C21.xlsx"
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.properties.creator = None
    wb.properties.created = datetime(2006, 9, 16)
    wb.save(path)
    normalize_xlsx(path)
    return data_rows


def _iden_rows(merged: bool, trailing: bool, accent_ancash: bool) -> list[tuple[int, str, list[str]]]:
    rows = []
    for (name, codes) in _department_rows(pd.DataFrame(), merged, accent_ancash, trailing):
        rows.append((int(codes[0]), name, codes))
    return rows


def write_c21_csv(lines: pd.DataFrame, out: Path) -> int:
    years = list(range(2003, 2019))
    rows = []
    for iden, name, codes in _iden_rows(merged=True, trailing=False, accent_ancash=False):
        vals = [int(sum(lines.loc[c, y] for c in codes)) for y in years]
        if name == "Lima y Callao":  # the hand-made csv's outlier: an extra digit on every value
            vals = [v * 10 for v in vals]
        rows.append([iden, name, *vals])
    rows.append([26, "Sin LAC", *["" if _sin_lac(lines, y) is None else _sin_lac(lines, y) for y in years]])
    return write_csv(out / OSIPTEL_DIR / "IndMovil-C21.csv", ["iden", "Departamento", *map(str, years)], rows)


def write_c23_csv(lines: pd.DataFrame, out: Path) -> int:
    years = list(range(2013, 2019))
    total = {y: lines[y].sum() for y in years}
    rows = []
    for iden, name, codes in _iden_rows(merged=False, trailing=True, accent_ancash=False):
        rows.append([iden, name, *[f"{100 * lines.loc[codes[0], y] / total[y]:.2f}" for y in years]])
    return write_csv(out / OSIPTEL_DIR / "IndMovil-C23.csv", ["iden", "Departmento", *map(str, years)], rows)


def write_c22_csv(world: World, lines: pd.DataFrame, out: Path) -> int:
    years = list(range(2003, 2013))
    pop = world.districts.groupby("dep_code").pob.sum()
    rows = []
    for iden, name, codes in _iden_rows(merged=True, trailing=True, accent_ancash=False):
        vals = []
        for y in years:
            people = sum(pop[c] for c in codes) * (1.011 ** (y - 2017))
            v = round(100 * sum(lines.loc[c, y] for c in codes) / people, 1)
            vals.append(str(int(v)) if float(v).is_integer() else f"{v:.1f}")
        rows.append([iden, name, *vals])
    return write_csv(out / OSIPTEL_DIR / "moviles-lineas_C2.2_junio2014.csv", ["iden", "Departamento", *map(str, years)], rows)


def write_booths_csv(world: World, out: Path, rng: np.random.Generator) -> int:
    operators = ["GILAT", "RURAL", "TELEFONICA", "AMERICA", "WINNER", "OPTICAL", "ANTARI"]
    presence = [0.98, 0.12, 1.0, 0.08, 0.04, 0.04, 0.04]
    d = world.districts
    rural = d.assign(r=d.pob * (1 - d.urbanity)).groupby("dep_code").r.sum()
    rows = []
    for dep in DEPARTMENTS:
        if dep.code == "07":
            continue
        base = rural[dep.code] / rural.mean()
        vals = []
        for op, p in zip(operators, presence, strict=True):
            if rng.random() < p:
                scale = 60 if op in ("GILAT", "TELEFONICA") else 40
                vals.append(max(1, int(rng.poisson(scale * base))))
            else:
                vals.append("")
        rows.append([dep.name, *vals])
    return write_csv(out / OSIPTEL_DIR / "8.8_Cabina_Publicas_de_Acceso_a_Internet_por_departamento.csv",
                     ["DEPARTAMENTO", *operators], rows)
