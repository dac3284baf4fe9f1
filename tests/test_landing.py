"""Landing (`brecha ingest`, `brecha rebuild-raw`) on the real extracts and on damaged copies of them (of the
synthetic extracts when ../shared is absent)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest

from brecha.core.db import session
from brecha.core.errors import InputFileError
from brecha.core.layouts import LAYOUTS
from brecha.landing.ingest import ingest, rebuild_from_archive

DISTRICTS = "ubigeo-aumentado/ubigeo_distrito.csv"
CENSUS = "qhaway/indicadores-distrito.json"
C21_CSV = "hubergilt-osiptel/IndMovil-C21.csv"
C23 = "hubergilt-osiptel/IndMovil-C23.csv"
C22 = "hubergilt-osiptel/moviles-lineas_C2.2_junio2014.csv"
C21_XLSX = "hubergilt-osiptel/IndMovil-C21.xlsx"
BOOTHS = "hubergilt-osiptel/8.8_Cabina_Publicas_de_Acceso_a_Internet_por_departamento.csv"
COVERAGE = "mafeer29-cobertura/COBERTURA_MOVIL_CUANTIFICADA.xlsx"
GEO_DIST = "peru-geojson/peru_distrital_simple.geojson"


# --- independent readers of the source files (Python's csv/json/openpyxl, not the code under test) ----------
def csv_records(path: Path) -> tuple[list[str], list[list[str]]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    return rows[0], [r for r in rows[1:] if r]


def write_csv(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding=encoding, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def wide_cells(path: Path) -> int:
    header, rows = csv_records(path)
    value_cols = [i for i, h in enumerate(header) if h.strip().lower() not in ("iden", "departamento", "departmento")]
    return sum(1 for r in rows for i in value_cols if r[i].strip() not in ("", "NA", "-"))


def source_rows(real: Path, rel: str) -> int:
    path = real / rel
    if rel in (C21_CSV, C23, C22, BOOTHS):
        return wide_cells(path)
    if rel.endswith(".csv"):
        return len(csv_records(path)[1])
    if rel.endswith(".geojson"):
        return len(json.loads(path.read_text())["features"])
    if rel.endswith(".json"):
        return len(json.loads(path.read_text()))
    wb = openpyxl.load_workbook(path, read_only=True)
    return wb.worksheets[0].max_row - 1


def query(sql: str) -> list[tuple]:
    """Rows of ``sql``, sorted (landing order is not part of the contract)."""
    with session(read_only=True) as con:
        return sorted(con.execute(sql).fetchall(), key=repr)


def table_rows(table: str, columns: str = "*") -> list[tuple]:
    return query(f"SELECT {columns} FROM {table}")


def copy_real(real: Path, dest: Path, *rels: str) -> Path:
    for rel in rels:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real / rel, dest / rel)
    return dest


@pytest.fixture
def src(synthetic_dir: Path) -> Path:
    """The extracts the landing-behaviour tests below copy and damage: the real ones in ../shared/data/real when
    present, else the session's synthetic extracts (same layouts and file names), so they run on any machine."""
    from conftest import REAL_DIR

    return REAL_DIR if REAL_DIR.is_dir() and not os.environ.get("BRECHA_TEST_SYNTHETIC_EXTRACTS") else synthetic_dir


# --- the real folder ------------------------------------------------------------------------------------------
@pytest.fixture
def real_landed(real_dir: Path, brecha_home: Path):
    return ingest(real_dir)


def test_real_folder_lands_every_row_or_rejects_it(real_dir: Path, real_landed) -> None:
    by_file = {f.source_file: f for f in real_landed.files}
    expected = {
        DISTRICTS: "inei__districts",
        CENSUS: "inei__census_indicators",
        C21_CSV: "osiptel__mobile_lines",
        C21_XLSX: "osiptel__mobile_lines",
        C23: "osiptel__mobile_line_share",
        C22: "osiptel__mobile_teledensity",
        BOOTHS: "osiptel__internet_booths",
        COVERAGE: "osiptel__mobile_coverage",
        GEO_DIST: "geo__district_boundaries",
    }
    for rel, entity in expected.items():
        assert by_file[rel].entity == entity, rel
    assert {name for name, _ in real_landed.skipped} == {"README.md", "PROVENANCE.md"}
    with session(read_only=True) as con:
        for f in real_landed.files:
            if f.source_file != C21_XLSX:  # the stacked sheet is counted in its own test
                assert f.rows_landed + f.rows_rejected == source_rows(real_dir, f.source_file), f.source_file
            table = f"raw.{f.entity}"
            n, filled = con.execute(
                f"SELECT count(*), count(*) FILTER (WHERE _source_file = ? AND _source_sha256 = ? AND _loaded_at "
                f"IS NOT NULL AND _row_number >= 1) FROM {table} WHERE _source_sha256 = ?",
                [f.source_file, f.sha256, f.sha256],
            ).fetchone()
            assert n == filled == f.rows_landed, f.source_file
            rejected = con.execute("SELECT count(*) FROM raw._rejects WHERE _source_sha256 = ?", [f.sha256]).fetchone()
            assert rejected[0] == f.rows_rejected
        # every raw table exists, even those with no file (fixed connections, ENAHO)
        for layout in LAYOUTS:
            con.execute(f"SELECT count(*) FROM {layout.table}").fetchone()
    per_entity = real_landed.per_entity()
    assert per_entity["osiptel__fixed_connections"] == (0, 0, 0)
    assert per_entity["osiptel__mobile_lines"][0] == 2


def test_real_rejects_are_the_known_quirks(real_dir: Path, real_landed) -> None:
    header, rows = csv_records(real_dir / DISTRICTS)
    reference = {r[header.index("inei")] for r in rows}
    census = json.loads((real_dir / CENSUS).read_text())
    unknown = sorted(o["ubigeo"] for o in census if o["ubigeo"] not in reference)
    assert len(unknown) == 2
    rejects = table_rows("raw._rejects", "_source_file, column_name, value, reason, record")
    assert [(r[0], r[1], r[3]) for r in rejects if r[0] == DISTRICTS] == [(DISTRICTS, "inei", "missing key")]
    census_rejects = [r for r in rejects if r[0] == CENSUS]
    assert sorted(r[2] for r in census_rejects) == unknown
    assert {r[3] for r in census_rejects} == {"unknown ubigeo"}
    assert json.loads(census_rejects[0][4])["ubigeo"] in unknown  # the whole record is kept
    # the census internet share lands exactly as published (nulls stay null)
    landed = dict(table_rows("raw.inei__census_indicators", "ubigeo, internet"))
    for obj in census:
        if obj["ubigeo"] not in unknown:
            assert landed[obj["ubigeo"]] == obj["internet"]


def test_real_stacked_sheet_blocks(real_dir: Path, real_landed) -> None:
    rows = query(
        "SELECT departamento, period, granularity, lines, block, _row_number "
        f"FROM raw.osiptel__mobile_lines WHERE _source_file = '{C21_XLSX}'"
    )
    by_key = {(r[0], r[1].isoformat(), r[2]): r for r in rows}
    wb = openpyxl.load_workbook(real_dir / C21_XLSX, read_only=True, data_only=True)
    sheet = [list(r) for r in wb.worksheets[0].iter_rows(values_only=True)]
    amazonas_2003 = next(i for i, r in enumerate(sheet) if r[0] == "Amazonas")  # first yearly block
    col_2003 = sheet[amazonas_2003 - 1].index(2003)
    assert by_key[("Amazonas", "2003-01-01", "year")][3] == sheet[amazonas_2003][col_2003]
    assert by_key[("Amazonas", "2003-01-01", "year")][5] == amazonas_2003 + 1  # the sheet row
    assert {r[2] for r in rows} == {"year", "month"}
    assert not any(r[0].lower().startswith("nota") for r in rows)  # notes are not data
    assert ("Total Perú", "2018-01-01", "year") in by_key  # the date-headed 2018 column of the yearly block


def test_same_folder_twice_changes_nothing(real_dir: Path, real_landed) -> None:
    before = {layout.table: table_rows(layout.table) for layout in LAYOUTS}
    rejects = table_rows("raw._rejects")
    second = ingest(real_dir)
    assert second.batch_id == real_landed.batch_id + 1
    assert {layout.table: table_rows(layout.table) for layout in LAYOUTS} == before
    assert table_rows("raw._rejects") == rejects
    flags = query("SELECT batch_id, newly_landed, count(*) FROM raw._batch_files GROUP BY ALL")
    assert flags == [(1, True, 13), (2, False, 13)]  # 13 files: the 12 extracts and enaho-sample's export
    assert [(f.rows_landed, f.rows_rejected) for f in second.files] == [
        (f.rows_landed, f.rows_rejected) for f in real_landed.files
    ]


def test_rebuild_from_archive_alone(src: Path, brecha_home: Path, tmp_path: Path) -> None:
    folder = copy_real(src, tmp_path / "in", DISTRICTS, CENSUS, C21_XLSX, C23, GEO_DIST)
    ingest(folder)
    (folder / C23).unlink()
    ingest(folder)  # a second batch, without C23
    tables = ["raw._batches", "raw._batch_files", "raw._rejects", *(layout.table for layout in LAYOUTS)]
    before = {t: table_rows(t) for t in tables}
    shutil.rmtree(folder)  # the originals are gone: only the archive remains
    result = rebuild_from_archive()
    assert not result.notes  # every file re-landed with the counts it had
    assert {t: table_rows(t) for t in tables} == before
    archived = list((brecha_home / "archive").glob("*/*/*"))
    assert sorted(p.name for p in archived) == sorted(
        Path(r).name for r in (DISTRICTS, CENSUS, C21_XLSX, C23, GEO_DIST)
    )


# --- damaged copies, the way a user's download can be ------------------------------------------------------
def test_renamed_file_in_a_subfolder_is_recognised(src: Path, brecha_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "descargas").mkdir(parents=True)
    shutil.copyfile(src / DISTRICTS, folder / "descargas" / "ubigeo_distrito (1).csv")
    shutil.copyfile(src / C23, folder / "datos.csv")
    (folder / ".DS_Store").write_bytes(b"\x00\x01")
    (folder / "notas.txt").write_text("léeme")
    result = ingest(folder)
    assert {(f.source_file, f.entity) for f in result.files} == {
        ("descargas/ubigeo_distrito (1).csv", "inei__districts"),
        ("datos.csv", "osiptel__mobile_line_share"),
    }
    assert dict(result.skipped) == {".DS_Store": "hidden file", "notas.txt": "documentation"}


def test_reordered_rows_and_columns_land_the_same_rows(src: Path, brecha_home: Path, tmp_path: Path) -> None:
    header, rows = csv_records(src / DISTRICTS)
    order = list(reversed(range(len(header))))
    write_csv(tmp_path / "a" / "d.csv", header, rows)
    write_csv(tmp_path / "b" / "d.csv", [header[i] for i in order], [[r[i] for i in order] for r in rows[::-1]])
    cols = ", ".join(c.name for c in LAYOUTS[0].columns)
    first = ingest(tmp_path / "a")
    a = table_rows("raw.inei__districts", cols)
    second = ingest(tmp_path / "b")
    both = table_rows("raw.inei__districts", cols)
    assert both == sorted(a + a)
    # the same records rejected for the same reasons (the real file: its one empty inei)
    rejects = query("SELECT _source_sha256, column_name, value, reason FROM raw._rejects")
    by_file = [sorted(r[1:] for r in rejects if r[0] == sha) for sha in sorted({r[0] for r in rejects})]
    assert first.rows_rejected == second.rows_rejected
    assert [len(r) for r in by_file] == [first.rows_rejected] * 2 and by_file[0] == by_file[1]


@pytest.mark.parametrize("change, column", [("drop", "capital"), ("rename", "inei")])
def test_missing_or_renamed_required_column_stops_the_batch(
    src: Path, brecha_home: Path, tmp_path: Path, change: str, column: str
) -> None:
    copy_real(src, tmp_path, CENSUS)
    header, rows = csv_records(src / DISTRICTS)
    i = header.index(column)
    if change == "drop":
        header, rows = header[:i] + header[i + 1 :], [r[:i] + r[i + 1 :] for r in rows]
    else:
        header = [*header[:i], "ubigeo", *header[i + 1 :]]
    write_csv(tmp_path / DISTRICTS, header, rows)
    with pytest.raises(InputFileError) as err:
        ingest(tmp_path)
    assert err.value.file == DISTRICTS and err.value.column == column
    assert f"required column '{column}' is missing" in str(err.value)
    if change == "rename":
        assert "ubigeo" in str(err.value)  # points at the renamed header
    # nothing landed, not even the good census file; the batch is recorded as failed
    assert table_rows("raw.inei__census_indicators") == [] and table_rows("raw._rejects") == []
    assert query("SELECT status FROM raw._batches") == [("failed",)]
    assert not list((brecha_home / "archive").glob("*/*/*"))


def test_duplicate_rows_keep_the_first(src: Path, brecha_home: Path, tmp_path: Path) -> None:
    header, rows = csv_records(src / DISTRICTS)
    dup = rows[10]
    write_csv(tmp_path / "d.csv", header, [*rows, dup])
    result = ingest(tmp_path)
    rejects = table_rows("raw._rejects", "_row_number, column_name, value, reason")
    assert (len(rows) + 1, "inei", dup[0], "duplicate key") in rejects
    # every record is landed or rejected, and the second copy is the one duplicate rejected
    assert result.files[0].rows_landed + result.files[0].rows_rejected == len(rows) + 1
    assert [r for r in rejects if r[3] == "duplicate key"] == [(len(rows) + 1, "inei", dup[0], "duplicate key")]
    landed = query(f"SELECT _row_number FROM raw.inei__districts WHERE inei = '{dup[0]}'")
    assert landed == [(11,)]


def test_bad_values_are_rejected_with_reason(src: Path, brecha_home: Path, tmp_path: Path) -> None:
    copy_real(src, tmp_path, DISTRICTS)
    census = json.loads((src / CENSUS).read_text())
    census[0]["pob"] = -5
    census[1]["internet"] = "12,5%"
    census[2]["agua"] = 140.0
    census[3]["vulnAlim"] = 101
    (tmp_path / "c.json").write_text(json.dumps(census))
    ingest(tmp_path)
    rejects = {
        r[0]: r[1:]
        for r in query(
            "SELECT _row_number, column_name, value, reason FROM raw._rejects WHERE entity = 'inei__census_indicators'"
        )
    }
    assert rejects[1] == ("pob", "-5", "negative count")
    assert rejects[2] == ("internet", "12,5%", "unparseable DOUBLE")
    assert rejects[3] == ("agua", "140.0", "share outside 0-100")
    assert rejects[4] == ("vuln_alim", "101", "share outside 0-100")


def test_out_of_range_rows_are_rejected_with_file_row_column_and_reason(
    src: Path, synthetic_dir: Path, brecha_home: Path, tmp_path: Path
) -> None:
    """The ranges landing alone checks (brecha/core/layouts.py): a district centroid outside Peru's bounding box, an
    ENAHO survey year and month out of range. Each bad row is rejected, named by file, row, column and reason;
    the other rows land. (ENAHO has no real sample: its file comes from the synthetic extracts, with their
    district reference.)"""
    from brecha.core.layouts import PERU_LATITUDE, PERU_LONGITUDE

    enaho = next(synthetic_dir.glob("**/enaho01-*-100.csv"))
    e_header, e_rows = csv_records(enaho)
    e_rows = e_rows[:30]
    e_rows[4][e_header.index("AÑO")] = "1915"
    e_rows[6][e_header.index("MES")] = "13"
    write_csv(tmp_path / "enaho" / enaho.name, e_header, e_rows, encoding="latin-1")
    surveyed = {r[e_header.index("UBIGEO")].zfill(6) for r in e_rows}
    header, rows = csv_records(synthetic_dir / DISTRICTS)
    i, j = [n for n, r in enumerate(rows) if r[header.index("inei")].zfill(6) not in surveyed][:2]
    rows[i][header.index("latitude")] = "4.61"  # Bogotá
    rows[j][header.index("longitude")] = "-60.0"
    write_csv(tmp_path / DISTRICTS, header, rows)

    result = ingest(tmp_path)

    rejects = query(
        "SELECT _source_file, _row_number, column_name, value, reason FROM raw._rejects WHERE reason LIKE 'outside %'"
    )  # (the extracts' own quirks are rejected too)
    assert rejects == sorted(
        [
            (DISTRICTS, i + 1, "latitude", "4.61", f"outside {PERU_LATITUDE[0]:g}..{PERU_LATITUDE[1]:g}"),
            (DISTRICTS, j + 1, "longitude", "-60.0", f"outside {PERU_LONGITUDE[0]:g}..{PERU_LONGITUDE[1]:g}"),
            (f"enaho/{enaho.name}", 5, "anio", "1915", "outside 2000..2035"),
            (f"enaho/{enaho.name}", 7, "mes", "13", "outside 1..12"),
        ],
        key=repr,
    )
    landed = {f.entity: (f.rows_landed, f.rows_rejected) for f in result.files}
    assert landed["inei__enaho_households"] == (28, 2)
    assert landed["inei__districts"][0] == len(rows) - landed["inei__districts"][1] < len(rows) - 2


def test_coverage_flags_and_counts(src: Path, brecha_home: Path, tmp_path: Path) -> None:
    """A short copy of the coverage sheet, with a bad flag, a negative count and a blank row."""
    book = openpyxl.load_workbook(src / COVERAGE, read_only=True)
    rows = [list(r) for _, r in zip(range(40), book.worksheets[0].iter_rows(values_only=True), strict=False)]
    rows[5][6] = 2  # 2G flag
    rows[6][12] = -1  # CANT_EB_2G
    rows[7][4] = "10101x"  # UBIGEO_CCPP
    rows[8][4] = 12345678901  # UBIGEO_CCPP of 11 digits: its first 6 are no district code
    wb = openpyxl.Workbook()
    for r in rows[:20] + [[]] + rows[20:]:
        wb.active.append(r)
    wb.save(tmp_path / "cov.xlsx")
    copy_real(src, tmp_path, DISTRICTS)
    result = ingest(tmp_path)
    cov = next(f for f in result.files if f.entity == "osiptel__mobile_coverage")
    assert (cov.rows_landed, cov.rows_rejected) == (35, 4)  # 39 records; the blank row is no record
    reasons = query(
        "SELECT _row_number, column_name, reason FROM raw._rejects WHERE entity = 'osiptel__mobile_coverage'"
    )
    assert reasons == [
        (5, "has_2g", "flag not 0/1"),
        (6, "cant_eb_2g", "negative count"),
        (7, "ubigeo_ccpp", "unparseable BIGINT"),
        (8, "ubigeo_ccpp", "malformed code (expected up to 10 digits)"),
    ]


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_other_encodings_land_the_same_text(src: Path, brecha_home: Path, tmp_path: Path, encoding: str) -> None:
    header, rows = csv_records(src / DISTRICTS)
    rows = [
        r
        for r in rows
        if "\n" not in "".join(r) and "".join(r).encode(encoding, errors="replace").decode(encoding) == "".join(r)
    ]  # rows the target encoding can carry
    write_csv(tmp_path / "a" / "d.csv", header, rows)
    write_csv(tmp_path / "b" / "d.csv", header, rows, encoding=encoding)
    ingest(tmp_path / "a")
    utf8 = table_rows("raw.inei__districts", "distrito, capital")
    with session() as con:
        con.execute("DELETE FROM raw.inei__districts")
    ingest(tmp_path / "b")
    assert table_rows("raw.inei__districts", "distrito, capital") == utf8
    assert any("Ñ" in f"{d}{c}" or "ñ" in f"{d}{c}" for d, c in utf8)


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"foo,bar\n1,2\n", "unknown layout"),
        (b"", "the file is empty"),
        (b"\x00\x01\x02binary\x00", "binary data"),
    ],
)
def test_unusable_files_stop_the_batch(
    src: Path, brecha_home: Path, tmp_path: Path, content: bytes, problem: str
) -> None:
    copy_real(src, tmp_path, DISTRICTS)
    (tmp_path / "extra.csv").write_bytes(content)
    with pytest.raises(InputFileError, match=problem) as err:
        ingest(tmp_path)
    assert err.value.file == "extra.csv"
    assert table_rows("raw.inei__districts") == []


def test_every_bad_file_is_named(src: Path, brecha_home: Path, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(b"foo,bar\n1,2\n")
    (tmp_path / "b.csv").write_bytes(b"")
    with pytest.raises(InputFileError) as err:
        ingest(tmp_path)
    assert "a.csv" in str(err.value) and "b.csv" in str(err.value)


def test_ubigeo_check_uses_the_latest_reference_or_says_it_skipped(
    src: Path, brecha_home: Path, tmp_path: Path
) -> None:
    census_only = copy_real(src, tmp_path / "c", CENSUS)
    first = ingest(census_only)
    assert first.rows_rejected == 0 and any("check was skipped" in n for n in first.notes)
    ingest(copy_real(src, tmp_path / "d", DISTRICTS))
    changed = json.loads((src / CENSUS).read_text())[:-1]  # other bytes: landed anew, and checked
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "c.json").write_text(json.dumps(changed))
    third = ingest(tmp_path / "e")
    assert third.rows_rejected == 1 and any("earlier batch" in n for n in third.notes)


# --- the CLI ---------------------------------------------------------------------------------------------------
def test_cli_ingest_ok_and_failure(src: Path, brecha_home: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from brecha.orchestrate.cli import cli

    good = copy_real(src, tmp_path / "good", C23, C22)
    ok = CliRunner().invoke(cli, ["ingest", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "osiptel__mobile_line_share" in ok.output and "osiptel__mobile_teledensity" in ok.output
    bad = copy_real(src, tmp_path / "bad", C23)
    (bad / "mystery.csv").write_text("a;b\n1;2\n")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "brecha"), "ingest", str(bad)],
        capture_output=True,
        text=True,
        env={"BRECHA_HOME": str(brecha_home), "PATH": "/usr/bin"},
    )
    assert proc.returncode == 1
    assert "error: mystery.csv" in proc.stderr and "unknown layout" in proc.stderr
