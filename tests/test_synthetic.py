"""The synthetic extract generator: real layouts and quirks, realistic distributions, determinism, scale."""

from __future__ import annotations

import csv
import datetime as dt
import filecmp
import json
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from brecha.core.layouts import (
    INEI_CENSUS,
    INEI_DEPARTMENTS,
    INEI_DISTRICTS,
    INEI_ENAHO,
    INEI_PROVINCES,
    OSIPTEL_FIXED_CONNECTIONS,
    OSIPTEL_INTERNET_BOOTHS,
    OSIPTEL_MOBILE_COVERAGE,
    OSIPTEL_MOBILE_LINE_SHARE,
)
from brecha.core.settings import Settings, using
from brecha.extract.synthetic import generate

SCALE = 0.1
DISTRICTS = "ubigeo-aumentado/ubigeo_distrito.csv"
PROVINCES = "ubigeo-aumentado/ubigeo_provincia.csv"
DEPARTMENTS = "ubigeo-aumentado/ubigeo_departamento.csv"
CENSUS = "qhaway/indicadores-distrito.json"
COVERAGE = "mafeer29-cobertura/COBERTURA_MOVIL_CUANTIFICADA.xlsx"
C21_XLSX = "hubergilt-osiptel/IndMovil-C21.xlsx"
C21_CSV = "hubergilt-osiptel/IndMovil-C21.csv"
SMALL_CSVS = (
    "hubergilt-osiptel/IndMovil-C21.csv",
    "hubergilt-osiptel/IndMovil-C23.csv",
    "hubergilt-osiptel/moviles-lineas_C2.2_junio2014.csv",
    "hubergilt-osiptel/8.8_Cabina_Publicas_de_Acceso_a_Internet_por_departamento.csv",
)
GEO_DIST = "peru-geojson/peru_distrital_simple.geojson"
GEO_DEP = "peru-geojson/peru_departamental_simple.geojson"
FIXED = "osiptel-punku/conexiones_internet_fijo_distrito.csv"
PUNKU_XLSX = "osiptel-punku/2.3 CONEXIONES DE INTERNET FIJO POR DISTRITO.xlsx"
OPERATORS = {"Viettel Perú S.A.C.", "Telefónica del Perú S.A.A.", "América Móvil Perú S.A.C.", "Entel Perú S.A."}


def _generate(tmp: Path, seed: int = 42, scale: float = SCALE) -> Path:
    """Generate into ``tmp/out`` with BRECHA_HOME inside ``tmp`` (the excel extension is installed there)."""
    with using(Settings(home=tmp / "home")):
        generate(tmp / "out", seed=seed, scale=scale)
    return tmp / "out"


@pytest.fixture(scope="module")
def ex(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def reference(ex: Path) -> pd.DataFrame:
    return pd.read_csv(ex / DISTRICTS, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def census(ex: Path) -> pd.DataFrame:
    return pd.DataFrame(json.loads((ex / CENSUS).read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def coverage(ex: Path) -> pd.DataFrame:
    return pd.read_excel(ex / COVERAGE)


def _first_line(path: Path, encoding: str = "utf-8") -> list[str]:
    with path.open(encoding=encoding, newline="") as fh:
        return next(csv.reader(fh))


# --- the same layouts as the real files -----------------------------------------------------------------


@pytest.mark.real
@pytest.mark.parametrize("rel", [DISTRICTS, PROVINCES, DEPARTMENTS, *SMALL_CSVS])
def test_csv_headers_and_types_equal_the_real_files(ex: Path, real_dir: Path, rel: str) -> None:
    assert _first_line(ex / rel) == _first_line(real_dir / rel)
    real, synth = pd.read_csv(real_dir / rel), pd.read_csv(ex / rel)
    assert synth.dtypes.astype(str).to_dict() == real.dtypes.astype(str).to_dict()
    assert len(synth) == len(real) or rel in (DISTRICTS, PROVINCES, DEPARTMENTS)


@pytest.mark.real
def test_json_xlsx_geojson_layouts_equal_the_real_files(ex: Path, real_dir: Path) -> None:
    real_obj = json.loads((real_dir / CENSUS).read_text(encoding="utf-8"))[0]
    synth_obj = json.loads((ex / CENSUS).read_text(encoding="utf-8"))[0]
    assert list(synth_obj) == list(real_obj)
    assert {k: type(v) for k, v in synth_obj.items()} == {k: type(v) for k, v in real_obj.items()}

    real_cov = pd.read_excel(real_dir / COVERAGE, nrows=50)
    synth_cov = pd.read_excel(ex / COVERAGE, nrows=50)
    assert list(synth_cov.columns) == list(real_cov.columns)
    assert synth_cov.dtypes.astype(str).to_dict() == real_cov.dtypes.astype(str).to_dict()

    for rel in (GEO_DIST, GEO_DEP):
        real_fc = json.loads((real_dir / rel).read_text(encoding="utf-8"))
        synth_fc = json.loads((ex / rel).read_text(encoding="utf-8"))
        assert synth_fc["crs"] == real_fc["crs"]
        assert list(synth_fc["features"][0]["properties"]) == list(real_fc["features"][0]["properties"])

    real_ws = openpyxl.load_workbook(real_dir / C21_XLSX).active
    synth_ws = openpyxl.load_workbook(ex / C21_XLSX).active
    assert synth_ws.title == real_ws.title
    for row in (2, 4, 5, 12):
        assert synth_ws.cell(row, 1).value == real_ws.cell(row, 1).value


def test_headers_follow_the_layouts_contract(ex: Path) -> None:
    for rel, layout in (
        (DISTRICTS, INEI_DISTRICTS),
        (PROVINCES, INEI_PROVINCES),
        (DEPARTMENTS, INEI_DEPARTMENTS),
        (FIXED, OSIPTEL_FIXED_CONNECTIONS),
    ):
        assert tuple(_first_line(ex / rel)) == layout.headers, rel
    assert (
        _first_line(ex / "hubergilt-osiptel/IndMovil-C23.csv")[1]
        == OSIPTEL_MOBILE_LINE_SHARE.headers[0]
        == "Departmento"
    )
    assert _first_line(ex / SMALL_CSVS[3])[0] == OSIPTEL_INTERNET_BOOTHS.headers[0]
    assert tuple(json.loads((ex / CENSUS).read_text(encoding="utf-8"))[0]) == INEI_CENSUS.headers
    assert tuple(pd.read_excel(ex / COVERAGE, nrows=1).columns) == OSIPTEL_MOBILE_COVERAGE.headers
    assert sorted(p.name for p in (ex / "inei-enaho").iterdir()) == sorted(ENAHO_FILES.values())
    raw = (ex / "inei-enaho" / ENAHO_FILES[2015]).read_bytes()
    assert raw.startswith("AÑO,".encode("latin-1"))  # latin-1, not utf-8
    assert tuple(_first_line(ex / "inei-enaho" / ENAHO_FILES[2015], "latin-1")) == tuple(
        h for h in INEI_ENAHO.headers if not h.startswith("P114B")
    )


# --- reference quirks and counts --------------------------------------------------------------------------


def test_district_reference_quirks(ex: Path, reference: pd.DataFrame) -> None:
    assert len(reference) == 1893
    assert (reference.inei == "NA").sum() == 1  # one record without an inei code
    valid = reference[reference.inei != "NA"]
    assert valid.inei.str.fullmatch(r"\d{6}").all() and valid.inei.is_unique
    newer = valid[valid.superficie == "NA"]
    assert len(newer) == 18 and (newer.latitude == "NA").all() and (newer.capital == "NA").all()
    complete = valid[valid.latitude != "NA"]
    assert len(complete) == 1874
    assert complete.inei.str[:4].nunique() == 196 and complete.inei.str[:2].nunique() == 25
    assert complete.departamento.nunique() == 25
    assert (complete.superficie == "S.I.").sum() == 4
    assert complete.capital.str.contains("\n").sum() == 2
    assert (complete.inei != complete.reniec).mean() > 0.5
    assert (complete.inei.str[:2] == complete.reniec.str[:2]).any()  # some departments keep their code
    assert complete.inei.str.startswith("0").any()  # leading zeros kept
    physical_lines = (ex / DISTRICTS).read_text(encoding="utf-8").count("\n")
    assert physical_lines == 1 + 1893 + 2


def test_geography_is_plausible(reference: pd.DataFrame) -> None:
    c = reference[(reference.latitude != "NA") & (reference.inei != "NA")]
    lat, lon, alt = (c[col].astype(float) for col in ("latitude", "longitude", "altitude"))
    assert lat.between(-18.4, -0.03).all() and lon.between(-81.4, -68.6).all()
    assert alt.between(0, 4800).all()
    by_dep = pd.DataFrame({"dep": c.departamento, "alt": alt}).groupby("dep").alt.median()
    assert by_dep["PUNO"] > 3000 and by_dep["LORETO"] < 1000 and by_dep["ICA"] < 1000


def test_provinces_and_departments(ex: Path) -> None:
    prov = pd.read_csv(ex / PROVINCES, dtype={"inei": str})
    dep = pd.read_csv(ex / DEPARTMENTS, dtype={"inei": str})
    assert len(prov) == 196 and prov.inei.str.endswith("00").all()
    assert len(dep) == 25 and dep.inei.str.endswith("0000").all()
    bands = {8.95, 17.3, 26.25, 32.95, 43.65}
    assert set(dep.pct_pobreza_total) <= bands  # band midpoints, as published


def test_census_internet_is_census_like(census: pd.DataFrame, reference: pd.DataFrame) -> None:
    assert len(census) == 1894 and census.ubigeo.is_unique
    assert census.internet.isna().sum() == 20
    assert len(set(census.ubigeo) - set(reference.inei)) == 2  # two codes not in the reference
    complete = set(reference[(reference.latitude != "NA") & (reference.inei != "NA")].inei)
    share = census[census.ubigeo.isin(complete)].internet
    assert share.notna().all() and len(share) == 1874
    assert 4 <= share.mean() <= 10 and 0.8 <= share.median() <= 2.5
    assert 0.08 <= (share == 0).mean() <= 0.2 and share.max() >= 60 and share.min() == 0
    assert 3 <= (share > 60).sum() <= 80
    assert (
        census[census.ubigeo.isin(complete)][["pobreza", "agua", "desague", "electricidad"]]
        .stack()
        .between(0, 100)
        .all()
    )


def test_internet_is_driven_by_the_covariates(census: pd.DataFrame) -> None:
    c = census.dropna(subset=["internet"])
    rho = c[["internet", "pobreza", "electricidad", "idh", "pob", "altitud"]].corr(method="spearman")["internet"]
    assert rho.pobreza < -0.5 and rho.idh > 0.5 and rho.electricidad > 0.3 and rho.pob > 0.3 and rho.altitud < -0.2
    # population is skewed: a few large urban districts, many small rural ones
    assert c.pob.max() > 50 * c.pob.median() and c.pob.quantile(0.05) < 800


# --- coverage ---------------------------------------------------------------------------------------------


def test_coverage_quirks_and_consistency(coverage: pd.DataFrame, census: pd.DataFrame, reference: pd.DataFrame) -> None:
    assert coverage.UBIGEO_CCPP.dtype == np.int64
    codes = coverage.UBIGEO_CCPP.astype(str)
    assert (codes.str.len() == 9).any()  # leading zero lost
    padded = codes.str.zfill(10)
    assert set(padded.str[:6]) <= set(reference.inei)
    assert set(coverage.EMPRESA_OPERADORA) == OPERATORS
    assert not coverage.duplicated(["UBIGEO_CCPP", "EMPRESA_OPERADORA"]).any()
    stations = coverage[["CANT_EB_2G", "CANT_EB_3G", "CANT_EB_4G", "CANT_EB_5G"]].sum(axis=1)
    assert (coverage.CANT_EB_TOTAL == stations).all()
    flags = (
        2 * coverage["2G"] + 3 * coverage["3G"] + 4 * coverage["4G"] + 5 * coverage["5G"] + coverage["MÁS_DE_1_MBPS"]
    )
    assert (coverage.CALIFICACION == flags + stations).all()
    merged = coverage.assign(ubigeo=padded.str[:6]).merge(
        reference[["inei", "distrito"]], left_on="ubigeo", right_on="inei"
    )
    differ = (merged.DISTRITO != merged.distrito).mean()
    assert 0.002 <= differ <= 0.02
    g4 = coverage.assign(ubigeo=padded.str[:6]).groupby(["ubigeo", "UBIGEO_CCPP"])["4G"].max().groupby("ubigeo").mean()
    joined = census.set_index("ubigeo").join(g4.rename("g4"), how="inner")
    assert joined.g4.corr(joined.internet, method="spearman") > 0.4
    ops = coverage.assign(ubigeo=padded.str[:6]).groupby("ubigeo").EMPRESA_OPERADORA.nunique()
    joined = census.set_index("ubigeo").join(ops.rename("ops"), how="inner")
    assert joined.ops.corr(joined.internet, method="spearman") > 0.3
    assert 0.9 < padded.str[:6].nunique() / 1874 < 0.995  # some districts have no populated centre listed


# --- OSIPTEL department tables -------------------------------------------------------------------------------


def test_c21_stacked_sheet_quirks(ex: Path) -> None:
    ws = openpyxl.load_workbook(ex / C21_XLSX).active
    col_a = [ws.cell(r, 1).value for r in range(1, ws.max_row + 1)]
    headers = [r for r, v in enumerate(col_a, start=1) if v == "Departamento"]
    assert len(headers) == 4
    first = [ws.cell(headers[0], c).value for c in range(2, 21)]
    assert first == list(range(1994, 2013))
    second = [ws.cell(headers[1], c).value for c in range(2, 8)]
    assert second[:5] == [2013, 2014, 2015, 2016, 2017] and isinstance(second[5], dt.datetime)
    assert isinstance(ws.cell(headers[2], 2).value, dt.datetime)
    values = {v for row in ws.iter_rows(values_only=True) for v in row if isinstance(v, str)}
    assert {
        "Lima y Callao",
        "Sin LAC",
        "Otros / sin LAC",
        "Total Perú",
        "Total Perú ",
        "-",
        "Áncash",
        "Ancash",
    } <= values
    assert any(v.endswith(" ") and v.strip() in {"La Libertad", "Puno", "Tumbes"} for v in values)
    assert ws.merged_cells.ranges


def test_c21_csv_has_the_lima_outlier(ex: Path) -> None:
    csv21 = pd.read_csv(ex / C21_CSV)
    assert list(csv21.columns) == ["iden", "Departamento", *map(str, range(2003, 2019))]
    assert 7 not in set(csv21.iden) and csv21.Departamento.iloc[-1] == "Sin LAC"
    assert csv21.loc[csv21.Departamento == "Sin LAC", "2003"].isna().all()
    ws = openpyxl.load_workbook(ex / C21_XLSX).active
    rows = {ws.cell(r, 1).value: r for r in range(43, 70)}  # the 2013-2018 block
    sheet_2015 = ws.cell(rows["Lima"], 4).value + ws.cell(rows["Callao"], 4).value
    csv_2015 = int(csv21.loc[csv21.Departamento == "Lima y Callao", "2015"].iloc[0])
    assert csv_2015 == 10 * sheet_2015
    others = csv21[~csv21.Departamento.isin(["Lima y Callao", "Sin LAC"])]["2015"]
    assert csv_2015 > 10 * others.max()


# --- boundaries ---------------------------------------------------------------------------------------------


def test_geojson_boundaries(ex: Path, reference: pd.DataFrame) -> None:
    fc = json.loads((ex / GEO_DIST).read_text(encoding="utf-8"))
    ids = [f["properties"]["IDDIST"] for f in fc["features"]]
    assert len(ids) == len(set(ids)) and set(ids) <= set(reference.inei)
    assert 1800 <= len(ids) < 1874
    assert sum(f["geometry"] is None for f in fc["features"]) == 8
    assert {f["geometry"]["type"] for f in fc["features"] if f["geometry"]} == {"Polygon", "MultiPolygon"}
    deps = json.loads((ex / GEO_DEP).read_text(encoding="utf-8"))
    assert sorted(f["properties"]["FIRST_IDDP"] for f in deps["features"]) == [f"{i:02d}" for i in range(1, 26)]


# --- fixed connections and ENAHO (no real sample) ---------------------------------------------------------


def _punku_sheet(ex: Path) -> pd.DataFrame:
    """PUNKU's download read with openpyxl: sheet 'Dataset', the header below the title rows."""
    wb = openpyxl.load_workbook(ex / PUNKU_XLSX, read_only=True)
    assert wb.sheetnames == ["Presentación", "Dataset"]
    rows = list(wb["Dataset"].iter_rows(values_only=True))
    assert rows[0][0].startswith("2.3 CONEXIONES DE INTERNET FIJO") and not any(rows[2])
    assert tuple(rows[3]) == OSIPTEL_FIXED_CONNECTIONS.headers
    return pd.DataFrame(rows[4:], columns=rows[3])


def test_fixed_connections(ex: Path, census: pd.DataFrame, reference: pd.DataFrame) -> None:
    quarterly = pd.read_csv(ex / FIXED)
    assert sorted(quarterly.Periodo.unique()) == [f"{y}-T{q}" for y in range(2015, 2025) for q in range(1, 5)][:-2]
    monthly = _punku_sheet(ex)
    # monthly stocks, July to November 2024 (the last quarter has two months), Segmento in mixed case
    assert sorted(monthly.Periodo.unique()) == [f"2024-{m:02d}" for m in range(7, 12)]
    assert set(monthly.Segmento) == {"Residencial", "RESIDENCIAL", "Empresarial"}
    assert pd.api.types.is_integer_dtype(monthly.Conexiones)
    # a stock: September's national total is near June's (2024-T2), not three months of it
    september, june = (
        monthly[monthly.Periodo == "2024-09"].Conexiones.sum(),
        quarterly[quarterly.Periodo == "2024-T2"].Conexiones.sum(),
    )
    assert 0.95 < september / june < 1.1
    fx = pd.concat([quarterly, monthly.assign(Segmento=monthly.Segmento.str.capitalize())])
    assert set(fx.Segmento) == {"Residencial", "Empresarial"}
    assert {"Fibra óptica", "Cable coaxial", "ADSL", "Inalámbrico", "Satelital"} <= set(fx.Tecnología)
    assert (fx.Conexiones > 0).all()
    assert not fx.duplicated(list(OSIPTEL_FIXED_CONNECTIONS.headers[:-1])).any()
    fibre = fx.assign(f=fx.Tecnología.eq("Fibra óptica") * fx.Conexiones).groupby("Periodo")[["f", "Conexiones"]].sum()
    share = fibre.f / fibre.Conexiones
    assert share.iloc[0] < 0.1 < 0.5 < share.iloc[-1]
    # names, not codes: accents differ from the reference, and a few names are spelled differently
    assert "JUNÍN" in set(fx.Departamento) and "JUNIN" not in set(fx.Departamento)
    ref_names = set(reference.distrito)
    assert 0 < fx.Distrito.drop_duplicates().isin(ref_names).mean() < 1


ENAHO_FILES = {
    2015: "enaho01-2015-100.csv",
    2016: "enaho01-2016-100.csv",
    2017: "enaho01-2017-100.csv",
    2018: "634-Modulo01.zip",
    2019: "enaho01-2019-100.csv",
    2020: "enaho01-2020-100.csv",
    2021: "759-Modulo01.zip",
    2022: "784-Modulo01.zip",
    2023: "906-Modulo01.zip",
    2024: "966-Modulo01.zip",
    2025: "enaho01-2025-100.csv",
}


def enaho_year(ex: Path, year: int) -> pd.DataFrame:
    """One year's households in INEI's codes and upper-case names, read with pandas / pyreadstat (not the landing
    code): the flavour is checked on the way (latin-1 CSV, labelled UTF-8 export, zipped .dta / .sav / CSV)."""
    import io
    import tempfile
    import zipfile

    import pyreadstat

    path = ex / "inei-enaho" / ENAHO_FILES[year]
    if path.suffix == ".csv":
        raw = path.read_bytes()
        if year == 2017:  # the labelled export: BOM, Stata names, labels
            assert raw.startswith(b"\xef\xbb\xbfa\xc3\x91o,")
            df = pd.read_csv(io.BytesIO(raw), encoding="utf-8-sig", dtype=str, keep_default_na=False)
            assert set(df.p1144) == {"conexion a internet", "pase", ""} and df.estrato.str.startswith(" de ").any()
            assert set(df.result) >= {"completa", "rechazo"}
            codes = {"pase": "0", "": None}
            for col in ("p1141", "p1142", "p1143", "p1144", "p1145"):
                df[col] = df[col].map(lambda v: codes.get(v, "1"))
            df["result"] = (df.result == "completa").map({True: 1, False: 2})
            df = df.rename(columns=str.upper)
            df = df.assign(
                AÑO=df["AÑO"].astype(int),
                FACTOR07=df.FACTOR07.astype(float),
                **{c: pd.to_numeric(df[c]) for c in ("P1141", "P1142", "P1143", "P1144", "P1145")},
            )
            return df
        assert raw.decode("latin-1").startswith("AÑO" + (";" if year == 2025 else ","))
        return pd.read_csv(
            path, encoding="latin-1", sep=";" if year == 2025 else ",", dtype={"UBIGEO": str, "CONGLOME": str}
        )
    with zipfile.ZipFile(path) as zf:
        code = ENAHO_FILES[year].split("-")[0]
        data = [n for n in zf.namelist() if not n.endswith(".txt")]
        assert len(data) == 1 and data[0].startswith(f"{code}-Modulo01/enaho01-{year}-100.")
        with tempfile.TemporaryDirectory() as tmp:
            member = Path(tmp) / Path(data[0]).name
            member.write_bytes(zf.read(data[0]))
            if member.suffix == ".csv":
                return pd.read_csv(member, encoding="latin-1", dtype={"UBIGEO": str, "CONGLOME": str})
            reader = pyreadstat.read_dta if member.suffix == ".dta" else pyreadstat.read_sav
            df, meta = reader(str(member))
    labels = {k.upper(): v for k, v in meta.variable_value_labels.items()}
    assert labels["P1144"] == {0: "pase", 1: "conexion a internet"} and labels["RESULT"][1] == "completa"
    assert ("aÑo" if member.suffix == ".dta" else "AÑO") in df.columns  # Stata names are lower case
    df = df.rename(columns=str.upper)
    return df.assign(AÑO=df["AÑO"].astype(int))


def test_enaho_households(ex: Path) -> None:
    shares, fixed = {}, {}
    for year in range(2015, 2026):
        df = enaho_year(ex, year)
        assert (df["AÑO"] == year).all()
        assert df.UBIGEO.str.fullmatch(r"\d{6}").all() and df.CONGLOME.str.len().eq(6).all()
        assert df.UBIGEO.str[:2].nunique() == 25
        # about a quarter of the interviews are not complete, and their ICT answers are blank
        complete = df.RESULT == 1
        assert 0.2 < 1 - complete.mean() < 0.3
        assert df.loc[~complete, "P1144"].isna().all() and df.loc[complete, "P1144"].notna().all()
        ok = df[complete]
        assert 8e6 <= ok.FACTOR07.sum() <= 1.05e7 and (df.FACTOR07 > 0).all()
        # the stratum is the conglomerate's (ENAHO's design)
        assert df.groupby("CONGLOME").ESTRATO.nunique().max() == 1
        none = (ok[["P1141", "P1142", "P1143", "P1144"]].sum(axis=1) == 0).astype(int)
        assert (ok.P1145 == none).all()
        shares[year] = np.average(ok.P1144, weights=ok.FACTOR07)
        assert ("P114B1" in df.columns) == (year >= 2023)
        if year >= 2023:
            fixed[year] = np.average(ok.P114B1, weights=ok.FACTOR07)
            assert (ok.P1144 == (ok[["P114B1", "P114B2", "P114B3"]].max(axis=1))).all()  # P1144 = any access
    # ~55 % up to 2022, ~90 % from 2023 (any access), fixed ~30 %
    assert 0.5 < shares[2022] < 0.62 and 0.85 < shares[2023] < 0.95 and 0.25 < fixed[2023] < 0.4
    assert shares[2022] > shares[2015] + 0.15 and 0.1 < shares[2015] < 0.5


# --- determinism and scale ------------------------------------------------------------------------------------


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_same_seed_gives_identical_bytes_and_other_seeds_differ(tmp_path: Path) -> None:
    a = _generate(tmp_path / "a", seed=7, scale=0.03)
    b = _generate(tmp_path / "b", seed=7, scale=0.03)
    c = _generate(tmp_path / "c", seed=8, scale=0.03)
    names = _files(a)
    assert names == _files(b) == _files(c) and len(names) == 25
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors
    _, differ, _ = filecmp.cmpfiles(a, c, names, shallow=False)
    assert set(differ) == set(names)


def test_scale_multiplies_only_the_large_tables(tmp_path: Path, ex: Path) -> None:
    small = _generate(tmp_path, scale=SCALE / 2)
    for rel in (DISTRICTS, PROVINCES, DEPARTMENTS, CENSUS, GEO_DIST, C21_CSV):
        assert filecmp.cmp(small / rel, ex / rel, shallow=False), rel
    ratio_enaho = len(pd.read_csv(ex / "inei-enaho/enaho01-2016-100.csv", encoding="latin-1")) / len(
        pd.read_csv(small / "inei-enaho/enaho01-2016-100.csv", encoding="latin-1")
    )
    assert 1.7 < ratio_enaho < 2.3
    cov_full, cov_small = pd.read_excel(ex / COVERAGE), pd.read_excel(small / COVERAGE)
    assert 1.3 < cov_full.UBIGEO_CCPP.nunique() / cov_small.UBIGEO_CCPP.nunique() < 2.3
    assert 1.5 < len(pd.read_csv(ex / FIXED)) / len(pd.read_csv(small / FIXED)) < 2.5


def test_centre_numbers_stay_four_digits_and_unique_at_any_scale() -> None:
    """UBIGEO_CCPP is the 6-digit ubigeo and a 4-digit centre number: at large scales a district gets thousands
    of centres, and a 5-digit number would run into another district's codes (scale 30 failed dbt's uniqueness
    test of stg_osiptel__mobile_coverage that way)."""
    from brecha.extract.synthetic.coverage import MAX_CENTRE_NUMBER, centre_numbers

    counts = np.array([1, 0, 40, 4_000, MAX_CENTRE_NUMBER])
    numbers = centre_numbers(counts, np.random.default_rng(3))
    assert len(numbers) == counts.sum()
    start = 0
    for c in counts[counts > 0]:
        own = numbers[start : start + c]
        start += c
        assert own[0] == 1 and own.max() <= MAX_CENTRE_NUMBER  # the capital is 0001; four digits at most
        assert len(np.unique(own)) == c and (np.diff(own) > 0).all()  # unique and increasing within the district
