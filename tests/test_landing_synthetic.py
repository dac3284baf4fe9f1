"""Landing the synthetic extracts (every layout, including PUNKU fixed connections and latin-1 ENAHO)."""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pytest
from conftest import own_home
from test_landing import csv_records, query, wide_cells

from brecha.core.files import sha256_of
from brecha.core.layouts import LAYOUTS
from brecha.landing.ingest import ingest

WIDE = ("osiptel__mobile_line_share", "osiptel__mobile_teledensity", "osiptel__internet_booths")


@pytest.fixture(scope="module")
def synthetic_landed(pipeline_run, synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The session run's landing of its synthetic extracts, which are ``synthetic_dir``'s files byte for byte (the
    same seed and scale; checked here), and a copy of its warehouse, which this module ingests into again: landing
    ``synthetic_dir`` in a fresh home would repeat that same ingest."""
    result = pipeline_run.results["ingest"]
    assert result.files and all(sha256_of(synthetic_dir / f.source_file) == f.sha256 for f in result.files)
    with own_home(pipeline_run.home, tmp_path_factory.mktemp("landing_synthetic_home")) as own:
        pass
    return result, own


@pytest.fixture
def in_home(synthetic_landed, use_home):
    use_home(synthetic_landed[1])
    return synthetic_landed[0]


def _source_rows(path: Path, entity: str) -> int:
    """Records in the source file, counted with Python's csv/json/openpyxl (cells, for wide tables), pyreadstat for
    INEI's zipped Stata and SPSS files."""
    if path.suffix == ".zip":
        from test_synthetic import ENAHO_FILES, enaho_year

        year = next(y for y, name in ENAHO_FILES.items() if name == path.name)
        return len(enaho_year(path.parent.parent, year))
    if path.suffix == ".csv" and (entity in WIDE or entity == "osiptel__mobile_lines"):
        return wide_cells(path)
    if path.suffix == ".csv":
        return len(csv_records(path)[1])
    if path.suffix == ".geojson":
        return len(json.loads(path.read_text())["features"])
    if path.suffix == ".json":
        return len(json.loads(path.read_text()))
    book = openpyxl.load_workbook(path, read_only=True)
    if "Dataset" in book.sheetnames:  # PUNKU's download: two title rows above the header
        rows = list(book["Dataset"].iter_rows(values_only=True))
        return sum(1 for r in rows if any(v is not None for v in r)) - 3
    rows = book.worksheets[0].iter_rows(values_only=True)
    return sum(1 for r in rows if any(v is not None for v in r)) - 1


def test_every_layout_lands(synthetic_dir: Path, in_home) -> None:
    result = in_home
    assert all(files >= 1 for files, _, _ in result.per_entity().values()), result.per_entity()
    assert set(result.per_entity()) == {layout.entity for layout in LAYOUTS}
    readers = {r[0]: r[1] for r in query("SELECT source_file, entity FROM raw._batch_files")}
    for f in result.files:
        assert readers[f.source_file] == f.entity
        if f.source_file.endswith("IndMovil-C21.xlsx"):
            continue  # the stacked sheet is checked on the real file
        expected = _source_rows(synthetic_dir / f.source_file, f.entity)
        assert f.rows_landed + f.rows_rejected == expected, f.source_file
        landed = query(
            f"SELECT count(*) FROM raw.{f.entity} WHERE _source_sha256 = '{f.sha256}' "
            "AND _row_number >= 1 AND _loaded_at IS NOT NULL"
        )
        assert landed == [(f.rows_landed,)]


def test_enaho_is_latin1_and_lands_as_published(synthetic_dir: Path, in_home) -> None:
    path = sorted(synthetic_dir.rglob("enaho01-*-100.csv"))[0]
    raw = path.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # the generator writes latin-1, as INEI publishes it
    header, rows = csv_records(path)
    assert header[0] == "AÑO"
    rel = path.relative_to(synthetic_dir).as_posix()
    landed = query(
        f"SELECT conglome, vivienda, hogar, ubigeo, factor07 FROM raw.inei__enaho_households "
        f"WHERE _source_file = '{rel}'"
    )
    at = [header.index(h) for h in ("CONGLOME", "VIVIENDA", "HOGAR", "UBIGEO", "FACTOR07")]
    source = sorted(((r[at[0]], r[at[1]], r[at[2]], r[at[3]], float(r[at[4]])) for r in rows if r[at[4]]), key=repr)
    rejected = {r[0] for r in query(f"SELECT _row_number FROM raw._rejects WHERE _source_file = '{rel}'")}
    assert len(landed) == len(rows) - len(rejected)
    assert set(landed) <= set(source)


def test_fixed_connections_and_enaho_row_checks(synthetic_dir: Path, brecha_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    punku = next(synthetic_dir.rglob("conexiones_internet_fijo_distrito.csv"))
    lines = punku.read_text(encoding="utf-8").splitlines()[:30]
    cells = lines[3].split(",")
    cells[-1] = "-4"
    lines[3] = ",".join(cells)
    (folder / "fijo.csv").write_text("\n".join(lines + [lines[5]]) + "\n", encoding="utf-8")  # + a duplicate
    enaho = sorted(synthetic_dir.rglob("enaho01-*-100.csv"))[0]
    rows = enaho.read_bytes().decode("latin-1").splitlines()[:20]
    bad_weight = rows[2].split(",")
    bad_weight[-1] = "0"
    bad_flag = rows[3].split(",")
    bad_flag[rows[0].split(",").index("P1141")] = "2"
    rows[2], rows[3] = ",".join(bad_weight), ",".join(bad_flag)
    (folder / "hogares.csv").write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    result = ingest(folder)
    assert {f.source_file: f.entity for f in result.files} == {
        "fijo.csv": "osiptel__fixed_connections",
        "hogares.csv": "inei__enaho_households",
    }
    rejects = query("SELECT _source_file, _row_number, column_name, reason FROM raw._rejects")
    assert rejects == sorted(
        [
            ("fijo.csv", 3, "conexiones", "negative count"),
            ("fijo.csv", 30, "periodo,empresa,departamento,provincia,distrito,tecnologia,segmento", "duplicate key"),
            ("hogares.csv", 2, "factor07", "non-positive value"),
            ("hogares.csv", 3, "p1141", "flag not 0/1"),
        ],
        key=repr,
    )
    assert any("check was skipped" in n for n in result.notes)  # no district reference in this folder


def test_second_ingest_changes_nothing(synthetic_dir: Path, in_home) -> None:
    before = query("SELECT entity, count(*) FROM raw._rejects GROUP BY ALL")
    again = ingest(synthetic_dir)
    assert not any(f.newly_landed for f in again.files)
    assert query("SELECT entity, count(*) FROM raw._rejects GROUP BY ALL") == before
