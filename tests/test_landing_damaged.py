"""Damaged downloads, made inside each test from tiny inline files (no ../shared needed): recognition that cannot
be fooled, whole-file stops that name the file, codes normalised once, rejects counted, nothing lost."""

from __future__ import annotations

import itertools
import json
import re
import threading
from pathlib import Path

import duckdb
import pytest

from brecha.core.errors import InputFileError
from brecha.core.layouts import NULL_STRINGS, Column
from brecha.core.settings import paths
from brecha.landing import checks
from brecha.landing.ingest import ingest
from brecha.landing.sql import is_null_text

REF_HEADER = (
    "inei,reniec,departamento,provincia,distrito,region,macroregion_inei,macroregion_minsa,iso_3166_2,fips,"
    "capital,superficie,pob_densidad_2020,altitude,latitude,longitude,indice_vulnerabilidad_alimentaria,"
    "idh_2019,pct_pobreza_total,pct_pobreza_extrema"
)
CODES = [f"0{d}010{i}" for d in (1, 2) for i in range(1, 7)]  # 12 districts: 010101..010106, 020101..020106


def ref_rows(codes: list[str] = CODES) -> list[str]:
    return [
        f"{c},{c},DEP{c[:2]},PROV,DIST{c},REG,CENTRO,MACRO,PE-X,{c[:2]},Cap {c},{100 + i}.25,{12 + i}.5,{2000 + i},"
        f"-9.{i + 10},-75.{i + 10},0.4{i},0.5{i},{40 + i}.5,{10 + i}.25"
        for i, c in enumerate(codes)
    ]


def write_ref(
    folder: Path, rows: list[str] | None = None, *, delim: str = ",", name: str = "ubigeo_distrito.csv"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(
        "\n".join([REF_HEADER.replace(",", delim), *(rows if rows is not None else ref_rows())]) + "\n",
        encoding="utf-8",
    )
    return path


def census(codes: list[str]) -> list[dict]:
    return [
        {
            "ubigeo": c,
            "pob": 1000 + i,
            "idh": 0.5,
            "pobreza": 30.0,
            "altitud": 2000,
            "agua": 50.0,
            "desague": 40.0,
            "electricidad": 80.0,
            "internet": 5.5,
        }
        for i, c in enumerate(codes)
    ]


def rows(sql: str) -> list[tuple]:
    with duckdb.connect(str(paths().db), read_only=True) as con:
        return con.execute(sql).fetchall()


def stops(folder: Path) -> InputFileError:
    with pytest.raises(InputFileError) as err:
        ingest(folder)
    assert "Traceback" not in str(err.value)
    return err.value


def nothing_landed() -> bool:
    return (
        rows("SELECT status FROM raw._batches ORDER BY batch_id DESC LIMIT 1") == [("failed",)]
        and rows("SELECT count(*) FROM raw._rejects") == [(0,)]
        and rows("SELECT count(*) FROM raw.inei__districts") == [(0,)]
    )


# --- 1. recognition by values, thousands separators, files that lose most of their rows ------------------


def wide(folder: Path, name: str, cells: list[list[str]], delim: str = ",") -> Path:
    years = [str(y) for y in range(2003, 2003 + len(cells[0]))]
    lines = [delim.join(["iden", "Departamento", *years])]
    for i, (dept, row) in enumerate(zip(["Amazonas", "Áncash", "Apurímac", "Arequipa"], cells, strict=False), 1):
        lines.append(delim.join([str(i), dept, *(f'"{v}"' if "," in v and delim == "," else v for v in row)]))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / name


def test_mobile_lines_with_thousands_separators_land_as_lines(brecha_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    wide(
        folder,
        "lineas.csv",
        [
            ["2,097", "5,458", "10,512"],
            ["52,967", "76,109", "112,382"],
            ["3,535", "7,725", "14,322"],
            ["154,912", "196,317", "1,305,259"],
        ],
    )
    result = ingest(folder)
    assert [f.entity for f in result.files] == ["osiptel__mobile_lines"]
    assert result.rows_rejected == 0
    got = dict(rows("SELECT departamento || ' ' || year(period), lines FROM raw.osiptel__mobile_lines"))
    assert got["Amazonas 2003"] == 2097 and got["Arequipa 2005"] == 1305259 and len(got) == 12
    assert rows("SELECT count(*) FROM raw.osiptel__mobile_teledensity") == [(0,)]


def test_teledensity_still_recognised_by_its_decimals(brecha_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    wide(
        folder, "c22.csv", [["0.5", "1.2", "2.6"], ["4.7", "6.7", "10.4"], ["1.1", "2.2", "33.3"], ["60.1", "70", "90"]]
    )
    assert [f.entity for f in ingest(folder).files] == ["osiptel__mobile_teledensity"]


def test_mobile_lines_with_thousands_points_are_not_taken_for_decimals(brecha_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    wide(
        folder,
        "lineas.csv",
        [
            ["2.097", "5.458", "10.512"],
            ["52.967", "76.109", "112.382"],
            ["3.535", "7.725", "14.322"],
            ["154.912", "196.317", "1.305.259"],
        ],
    )
    err = stops(folder)
    assert err.file == "lineas.csv" and "thousands points" in err.problem and "'1.305.259'" in err.problem


def test_wide_table_of_non_numbers_is_a_whole_file_problem(brecha_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    wide(folder, "odd.csv", [["a", "b", "c"], ["d", "e", "1"], ["x", "y", "z"], ["p", "q", "r"]])
    err = stops(folder)
    assert err.file == "odd.csv" and "not numbers" in err.problem and "'a'" in err.problem


def test_a_file_losing_most_rows_stops_before_anything_lands(brecha_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    good = ref_rows()
    # 9 of 12 rows carry a text where the area must be a number: the file is not what its header says
    bad = [re.sub(r",Cap (\d+),[0-9.]+,", r",Cap \1,n/d,", r) if i > 2 else r for i, r in enumerate(good)]
    write_ref(folder, bad)
    (folder / "census.json").write_text(json.dumps(census(CODES)), encoding="utf-8")
    err = stops(folder)
    assert err.file == "ubigeo_distrito.csv" and err.column == "superficie"
    assert "9 of its 12 rows" in err.problem and "unparseable DOUBLE" in err.problem and "'n/d' at row 4" in err.problem
    assert nothing_landed() and rows("SELECT count(*) FROM raw.inei__census_indicators") == [(0,)]


def test_whole_numbers_are_never_rounded(brecha_home: Path, tmp_path: Path) -> None:
    """DuckDB's cast reads '1.234' as 1 and '2.5' as 3: a count written so is rejected, not landed wrong."""
    folder = tmp_path / "in"
    write_ref(folder)
    docs = census(CODES)
    docs[3]["pob"], docs[4]["pob"], docs[5]["pob"] = 1.234, 2.5, 7.0
    (folder / "census.json").write_text(json.dumps(docs), encoding="utf-8")
    result = ingest(folder)
    assert result.rows_rejected == 2
    assert rows("SELECT value, reason FROM raw._rejects ORDER BY _row_number") == [
        ("1.234", "unparseable BIGINT"),
        ("2.5", "unparseable BIGINT"),
    ]
    assert rows(f"SELECT pob FROM raw.inei__census_indicators WHERE ubigeo = '{CODES[5]}'") == [(7,)]


# --- 4. Spanish-locale spreadsheet exports --------------------------------------------------------------


def spanish(rows_: list[str]) -> list[str]:
    out = []
    for r in rows_:
        cells = [c.replace(".", ",") if re.fullmatch(r"-?\d+\.\d+", c) else c for c in r.split(",")]
        cells[0] = str(int(cells[0]))  # and the leading zero dropped, as a spreadsheet does
        out.append(";".join(cells))
    return out


def test_spanish_locale_reference_is_named_and_nothing_cascades(brecha_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_ref(folder, spanish(ref_rows()), delim=";")
    (folder / "census.json").write_text(json.dumps(census(CODES)), encoding="utf-8")
    err = stops(folder)
    assert err.file == "ubigeo_distrito.csv" and "decimal commas" in err.problem and "'100,25'" in err.problem
    assert "'.' as the decimal separator" in err.fix
    assert nothing_landed()  # no reference quarantined, no census row rejected as "unknown ubigeo"


def test_spanish_locale_wide_table_is_named(brecha_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    wide(
        folder,
        "c22.csv",
        [["0,5", "1,2", "2,6"], ["4,7", "6,7", "10,4"], ["1,1", "2,2", "33,3"], ["60,1", "70", "90"]],
        delim=";",
    )
    err = stops(folder)
    assert err.file == "c22.csv" and "decimal commas" in err.problem


def landing_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("brecha-")]


def test_a_file_checked_ahead_stops_the_batch_in_its_turn(brecha_home: Path, tmp_path: Path) -> None:
    """Files after the district reference are checked ahead by another thread, against a copy of the reference
    handed to it: a file it refuses stops the batch with the same message when its turn comes, nothing lands,
    and no thread is left behind (nor after a batch that lands)."""
    folder = tmp_path / "in"
    write_ref(folder)
    wide(folder, "a_lineas.csv", [["2097", "5458", "10512"], ["52967", "76109", "112382"]])
    (folder / "b_census.json").write_text(json.dumps(census([f"9{c[1:]}" for c in CODES])), encoding="utf-8")
    wide(folder, "c22.csv", [["0.5", "1.2", "2.6"], ["4.7", "6.7", "10.4"]])
    err = stops(folder)
    assert err.file == "b_census.json" and "unknown ubigeo" in err.problem and "12 of its 12 rows" in err.problem
    assert "(12 districts)" in err.fix  # the reference the other thread checked against: the batch's
    assert nothing_landed() and not landing_threads()
    (folder / "b_census.json").write_text(json.dumps(census(CODES)), encoding="utf-8")
    result = ingest(folder)
    assert result.rows_rejected == 0 and not landing_threads()
    assert rows("SELECT count(*) FROM raw.inei__census_indicators") == [(12,)]


# --- 5. codes normalised once, before every check ------------------------------------------------------


def test_codes_without_leading_zero_are_padded_before_every_check(brecha_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_ref(folder, [r.lstrip("0") for r in ref_rows()])  # 10101 instead of 010101
    docs = census(CODES)
    docs.append({**docs[2], "pob": 99})
    docs[-1]["ubigeo"] = CODES[2].lstrip("0")  # the same district again, written '10103'
    (folder / "census.json").write_text(json.dumps(docs), encoding="utf-8")
    result = ingest(folder)
    assert rows("SELECT count(*) FROM raw.inei__districts WHERE NOT regexp_full_match(inei, '[0-9]{6}')") == [(0,)]
    assert sorted(r[0] for r in rows("SELECT inei FROM raw.inei__districts")) == CODES
    assert result.rows_rejected == 1
    assert rows("SELECT entity, column_name, value, reason FROM raw._rejects") == [
        ("inei__census_indicators", "ubigeo", "010103", "duplicate key")
    ]
    assert rows(f"SELECT pob FROM raw.inei__census_indicators WHERE ubigeo = '{CODES[2]}'") == [(1002,)]


def test_a_code_that_is_not_digits_is_rejected_at_landing(brecha_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_ref(folder)
    docs = census(CODES)
    docs[0]["ubigeo"] = "01O101"
    (folder / "census.json").write_text(json.dumps(docs), encoding="utf-8")
    ingest(folder)
    assert rows("SELECT value, reason FROM raw._rejects") == [("01O101", "malformed code (expected 6 digits)")]


# --- 6. crashes and misleading messages --------------------------------------------------------------------


def test_truncated_xlsx_names_the_file(brecha_home: Path, tmp_path: Path) -> None:
    import openpyxl

    folder = tmp_path / "in"
    folder.mkdir()
    wb = openpyxl.Workbook()
    wb.active.append(["DEPARTAMENTO", "PROVINCIA"])
    for i in range(200):
        wb.active.append([f"D{i}", f"P{i}"])
    wb.save(folder / "cobertura.xlsx")
    data = (folder / "cobertura.xlsx").read_bytes()
    (folder / "cobertura.xlsx").write_bytes(data[: len(data) // 2])
    err = stops(folder)
    assert err.file == "cobertura.xlsx" and "could not be read" in err.problem


def test_truncated_csv_says_truncated_not_unknown_layout(brecha_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    path = write_ref(folder)
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 40], encoding="utf-8")  # cut inside the last line
    err = stops(folder)
    assert err.file == "ubigeo_distrito.csv" and "unknown layout" not in err.problem
    assert "line 13" in err.problem and "truncated" in err.problem


def test_huge_cell_is_reported_on_its_own_line(brecha_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    lines = ref_rows()
    cells = lines[4].split(",")
    cells[4] = '"' + "x" * 2_100_000 + '"'
    lines[4] = ",".join(cells)
    write_ref(folder, lines)
    err = stops(folder)
    assert err.file == "ubigeo_distrito.csv" and "line 6 " in err.problem and "2,100,000" in err.problem


def test_invalid_geometries_are_counted_as_rejects(brecha_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    square = {"type": "Polygon", "coordinates": [[[-75, -9], [-74, -9], [-74, -8], [-75, -9]]]}
    feats = [{"type": "Feature", "properties": {"IDDIST": c, "NOMBDIST": "X"}, "geometry": square} for c in CODES]
    feats[1]["geometry"] = {"type": "Polygon", "coordinates": "corrupt"}
    feats[2]["geometry"] = {"type": "Polygon", "coordinates": [[[-75, -9], [-74, -9]]]}
    feats[3]["geometry"] = {"type": "MultiPolygon", "coordinates": [[[["a", -9], [-74, -9], [-74, -8], ["a", -9]]]]}
    feats[4]["geometry"] = None  # no geometry at all: lands, as the real file's 8 such features do
    (folder / "distritos.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    result = ingest(folder)
    assert (result.rows_landed, result.rows_rejected) == (9, 3)
    assert rows("SELECT _row_number, reason FROM raw._rejects ORDER BY 1") == [
        (2, "invalid geometry"),
        (3, "invalid geometry"),
        (4, "invalid geometry"),
    ]


# --- 7. a killed run's batch --------------------------------------------------------------------------------


def test_a_batch_left_running_by_a_killed_run_is_marked_aborted(brecha_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_ref(folder)
    ingest(folder)
    with duckdb.connect(str(paths().db)) as con:  # what a kill -9 during landing leaves behind
        con.execute("INSERT INTO raw._batches VALUES (2, now()::TIMESTAMP, NULL, '/x', 'running')")
    result = ingest(folder)
    assert rows("SELECT batch_id, status FROM raw._batches ORDER BY 1") == [(1, "ok"), (2, "aborted"), (3, "ok")]
    assert any("marked 'aborted'" in n for n in result.notes)


# --- the corpus runner (make corpus), on one cheap case ---------------------------------------------------


def test_corpus_runner_reports_a_case_end_to_end(tmp_path: Path) -> None:
    from tools import corpus

    source = tmp_path / "src"
    write_ref(source, ref_rows([f"{d:02d}{p:02d}{i:02d}" for d in (1, 2) for p in (1, 2) for i in range(1, 16)]))
    case = next(c for c in corpus.CASES if c.name.startswith("3 MB cell"))
    result = corpus.run_case(case, source, tmp_path / "work", baseline=None)
    assert result["ok"] is True, result
    assert result["observed"].startswith("error: ubigeo_distrito.csv: could not be read as CSV: line 43 holds")


def test_null_text_shortcut_changes_no_value() -> None:
    """``checks.text_sql`` skips the trim for texts that cannot be a null text (``_PLAIN_RANGES``): over every text of
    up to three characters from an alphabet of spaces (ASCII and Unicode), null-text letters, digits and range
    edges, it gives exactly what the plain definition (trim, then compare with every null text) gives."""
    alphabet = [
        " ",
        "\u00a0",
        "\u3000",
        "\u2009",
        "\t",
        "-",
        "N",
        "S",
        "A",
        ".",
        "I",
        "0",
        "7",
        "/",
        "B",
        "\x7f",
        "Á",
        "a",
        "!",
        ",",
        "M",
        "O",
        "T",
        "~",
    ]
    texts = ["".join(t) for n in range(4) for t in itertools.product(alphabet, repeat=n)]
    texts += [
        f"{pre}{s}{post}" for s in NULL_STRINGS for pre, post in [("", ""), (" ", ""), ("", " "), ("\u00a0", "\u3000")]
    ]
    con = duckdb.connect()
    con.execute(f"CREATE TABLE v AS SELECT unnest(from_json('{json.dumps(texts)}', '[\"VARCHAR\"]')) AS x")
    con.execute("INSERT INTO v VALUES (NULL)")
    trimmed = "trim(x)"
    for col, plain in [
        (Column("c", "c", "INTEGER"), f"CASE WHEN {is_null_text(trimmed)} THEN NULL ELSE x END"),
        (
            Column("u", "u", "VARCHAR", pad=6, ubigeo=6),
            f"CASE WHEN {is_null_text(trimmed)} THEN NULL WHEN regexp_full_match({trimmed}, '[0-9]{{1,6}}') "
            f"THEN lpad({trimmed}, 6, '0') ELSE x END",
        ),
    ]:
        total, differ, short = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE ({checks.text_sql(col, 'x')}) IS DISTINCT FROM ({plain})), "
            f"count(*) FILTER (WHERE {checks._plain('x')}) FROM v"
        ).fetchone()
        assert total == len(texts) + 1 and differ == 0
        assert 0 < short < total  # both branches are taken
