"""ENAHO module 01 in every flavour INEI publishes (CSV with codes, Stata .dta and SPSS .sav with value labels, a
CSV exported with the labels applied, each zipped as ``{code}-Modulo01.zip``) lands to the same raw rows; the 5
real households of the labelled export land with their year, weight and answers."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest

from brecha.core.db import session
from brecha.landing.ingest import ingest, rebuild_from_archive

SAMPLE = "enaho-sample/906-Modulo01__enaho01-2023-100.csv"
DISTRICTS = "ubigeo-aumentado/ubigeo_distrito.csv"
COLUMNS = (
    "anio, mes, conglome, vivienda, hogar, ubigeo, dominio, estrato, result, p1141, p1142, p1143, p1144, "
    "p1145, p114b1, p114b2, p114b3, factor07"
)
# INEI's value labels of module 01 (as the Stata file carries them; the labelled export writes these texts)
LABELS = {
    "dominio": {
        1: "costa norte",
        2: "costa centro",
        3: "costa sur",
        4: "sierra norte",
        5: "sierra centro",
        6: "sierra sur",
        7: "selva",
        8: "lima metropolitana",
    },
    "estrato": {
        1: "de 500 000 a más habitantes",
        2: "de 100 000 a 499 999 habitantes",
        3: "de 50 000 a 99 999 habitantes",
        4: "de 20 000 a 49 999 habitantes",
        5: "de 2 000 a 19 999 habitantes",
        6: "de 500 a 1 999 habitantes",
        7: "área de empadronamiento rural (aer) compuesto",
        8: "área de empadronamiento rural (aer) simple",
    },
    "result": {
        1: "completa",
        2: "incompleta",
        3: "rechazo",
        4: "ausente",
        5: "vivienda desocupada",
        6: "no se inició entrevista",
        7: "otro",
    },
    "p1141": {0: "pase", 1: "telefono fijo"},
    "p1142": {0: "pase", 1: "telefono celular"},
    "p1143": {0: "pase", 1: "tv. cable"},
    "p1144": {0: "pase", 1: "conexion a internet"},
    "p1145": {0: "pase", 1: "no tiene"},
    "p114b1": {0: "pase", 1: "conexion fija a internet"},
    "p114b2": {0: "pase", 1: "conexion movil post pago control"},
    "p114b3": {0: "pase", 1: "conexion movil prepago"},
}
UBIGEOS = ("150101", "150132", "010101", "080101")


def _coded_frame() -> pd.DataFrame:
    """Twelve households of 2023 in INEI's codes: every domain, stratum and result; the incomplete interviews
    have blank ICT answers, as published."""
    rows = []
    for i in range(12):
        result = 1 if i < 8 else 2 + i % 6
        goods = {
            k: (None if result != 1 else (i >> n) & 1)
            for n, k in enumerate(("p1141", "p1142", "p1143", "p1144", "p1145", "p114b1", "p114b2", "p114b3"))
        }
        rows.append(
            {
                "aÑo": "2023",
                "mes": f"{1 + i:02d}",
                "conglome": f"{5030 + i // 3:06d}",
                "vivienda": f"{i:03d}",
                "hogar": "11",
                "ubigeo": UBIGEOS[i % 4],
                "dominio": 1 + i % 8,
                "estrato": 1 + (i * 3) % 8,
                "result": result,
                **goods,
                "factor07": 100.5 + i,
            }
        )
    return pd.DataFrame(rows)


def _labelled_csv(df: pd.DataFrame) -> bytes:
    """The frame as an analyst exports the Stata file with labels applied: UTF-8 with a BOM, ' estrato' with a
    leading space in its values, labels instead of codes."""
    out = df.astype(object).copy()
    for col, labels in LABELS.items():
        out[col] = [("" if pd.isna(v) else (" " if col == "estrato" else "") + labels[int(v)]) for v in df[col]]
    buf = io.StringIO()
    out.to_csv(buf, index=False, lineterminator="\n")
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _inei_csv(df: pd.DataFrame, sep: str) -> bytes:
    """INEI's CSV: upper-case headers (AÑO), codes, latin-1."""
    out = df.rename(columns=str.upper).astype(object)
    for col in LABELS:
        out[col.upper()] = ["" if pd.isna(v) else str(int(v)) for v in df[col]]
    buf = io.StringIO()
    out.to_csv(buf, index=False, sep=sep, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    return buf.getvalue().encode("latin-1")


def _statistical(df: pd.DataFrame, path: Path, kind: str) -> None:
    labels = {c: {float(k): v for k, v in m.items()} for c, m in LABELS.items()}
    frame = df.copy()
    for col in LABELS:
        frame[col] = frame[col].astype("float64")
    if kind == "dta":
        pyreadstat.write_dta(frame, str(path), variable_value_labels=labels)
    else:  # SPSS names upper case, as INEI's .sav
        frame.columns = [c.upper() for c in frame.columns]
        pyreadstat.write_sav(frame, str(path), variable_value_labels={k.upper(): v for k, v in labels.items()})


def _zipped(folder: Path, name: str, member: str, data: bytes) -> Path:
    """The file as INEI ships it: inside ``{code}-Modulo01.zip``, beside its documentation."""
    path = folder / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"906-Modulo01/{member}", data)
        zf.writestr("906-Modulo01/Diccionario Modulo 01.pdf", b"%PDF-1.4 documentation")
    return path


def _landed(folder: Path) -> list[tuple]:
    result = ingest(folder)
    assert [f.rows_rejected for f in result.files if f.entity == "inei__enaho_households"] == [0]
    with session(read_only=True) as con:
        return con.execute(
            f"SELECT {COLUMNS} FROM raw.inei__enaho_households WHERE _source_sha256 = ? ORDER BY vivienda",
            [next(f.sha256 for f in result.files if f.entity == "inei__enaho_households")],
        ).fetchall()


@pytest.fixture
def reference_dir(synthetic_dir: Path) -> Path:
    return next(synthetic_dir.rglob("ubigeo_distrito.csv")).parent.parent


def test_every_flavour_lands_the_same_rows(tmp_path: Path, brecha_home: Path, reference_dir: Path) -> None:
    df = _coded_frame()
    flavours: dict[str, tuple[str, bytes]] = {}
    for kind in ("dta", "sav"):
        path = tmp_path / f"enaho01-2023-100.{kind}"
        _statistical(df, path, kind)
        flavours[kind] = (path.name, path.read_bytes())
    flavours["inei_csv"] = ("enaho01-2023-100.csv", _inei_csv(df, ","))
    flavours["inei_csv_semicolon"] = ("enaho01-2025-100.csv", _inei_csv(df, ";"))
    flavours["labelled_csv"] = ("enaho01-2023-100.csv", _labelled_csv(df))
    # the year's header as a re-saved file may spell it (the Ñ lost)
    flavours["ano_header"] = ("enaho01-2023-100.csv", _inei_csv(df, ",").replace("AÑO".encode("latin-1"), b"ANO", 1))
    expected = [
        (
            2023,
            int(r.mes),
            r.conglome,
            r.vivienda,
            r.hogar,
            r.ubigeo,
            r.dominio,
            r.estrato,
            r.result,
            *(
                None if pd.isna(getattr(r, g)) else int(getattr(r, g))
                for g in ("p1141", "p1142", "p1143", "p1144", "p1145", "p114b1", "p114b2", "p114b3")
            ),
            r.factor07,
        )
        for r in df.itertuples(index=False)
    ]
    reference = next(reference_dir.rglob("ubigeo_distrito.csv"))
    for name, (member, data) in flavours.items():
        for zipped in (False, True):
            folder = tmp_path / f"{name}-{zipped}"
            folder.mkdir()
            (folder / "ubigeo_distrito.csv").write_bytes(reference.read_bytes())
            if zipped:
                _zipped(folder, "906-Modulo01.zip", member, data)
            else:
                (folder / member).write_bytes(data)
            assert _landed(folder) == expected, (name, zipped)


def test_zip_and_stata_rebuild_from_the_archive(tmp_path: Path, brecha_home: Path, reference_dir: Path) -> None:
    df = _coded_frame()
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ubigeo_distrito.csv").write_bytes(next(reference_dir.rglob("ubigeo_distrito.csv")).read_bytes())
    _statistical(df, tmp_path / "enaho01-2023-100.dta", "dta")
    _zipped(folder, "906-Modulo01.zip", "enaho01-2023-100.dta", (tmp_path / "enaho01-2023-100.dta").read_bytes())
    before = _landed(folder)
    archived = sorted(p.name for p in (brecha_home / "archive").glob("*/*/*"))
    assert "906-Modulo01.zip" in archived  # the original, not the CSV made from it
    for converted in (brecha_home / "converted").iterdir():  # the CSVs made from it are made again
        converted.unlink()
    result = rebuild_from_archive()
    assert not result.notes
    with session(read_only=True) as con:
        assert con.execute(f"SELECT {COLUMNS} FROM raw.inei__enaho_households ORDER BY vivienda").fetchall() == before


def test_zip_without_a_data_table_is_refused(tmp_path: Path, brecha_home: Path, reference_dir: Path) -> None:
    from brecha.core.errors import InputFileError

    folder = tmp_path / "in"
    folder.mkdir()
    with zipfile.ZipFile(folder / "906-Modulo01.zip", "w") as zf:
        zf.writestr("906-Modulo01/Diccionario.pdf", b"%PDF")
    with pytest.raises(InputFileError, match="holds no data table"):
        ingest(folder)


def test_real_labelled_export_lands_its_5_households(real_dir: Path, brecha_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "enaho-sample").mkdir(parents=True)
    (folder / DISTRICTS.split("/")[1]).write_bytes((real_dir / DISTRICTS).read_bytes())
    (folder / SAMPLE).write_bytes((real_dir / SAMPLE).read_bytes())
    records = list(csv.DictReader(io.StringIO((real_dir / SAMPLE).read_text(encoding="utf-8-sig"))))
    assert len(records) == 5 and "aÑo" in records[0]
    rows = _landed(folder)
    assert len(rows) == 5
    for row, rec in zip(rows, sorted(records, key=lambda r: r["vivienda"]), strict=True):
        (
            anio,
            mes,
            conglome,
            vivienda,
            hogar,
            ubigeo,
            dominio,
            estrato,
            result,
            p1141,
            p1142,
            p1143,
            p1144,
            p1145,
            p114b1,
            p114b2,
            p114b3,
            factor07,
        ) = row
        assert (anio, mes) == (int(rec["aÑo"]), int(rec["mes"]))
        assert (conglome, vivienda, hogar, ubigeo) == (rec["conglome"], rec["vivienda"], rec["hogar"], rec["ubigeo"])
        assert factor07 == pytest.approx(float(rec["factor07"]))
        assert dominio == 7 and rec["dominio"] == "selva"  # INEI's code of the selva domain
        assert estrato == 4 and rec["estrato"].strip() == "de 20 000 a 49 999 habitantes"
        assert result == 1 and rec["result"] == "completa"
        # two-valued questions: 'pase' is 0, the good's own label 1
        for code, col in zip(
            (p1141, p1142, p1143, p1144, p1145, p114b1, p114b2, p114b3),
            ("p1141", "p1142", "p1143", "p1144", "p1145", "p114b1", "p114b2", "p114b3"),
            strict=True,
        ):
            assert code == (0 if rec[col] == "pase" else 1), col
        assert p1144 == 1 and p114b1 == 0 and p114b2 + p114b3 == 1
