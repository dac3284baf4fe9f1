"""`brecha atlas`: written from the serving copy, self-contained and deterministic, and rendered by headless
Chromium (Debian's `chromium`, which `make test` installs) from a file with the network off: the national map and a
department page are drawn, every district with a value has a filled polygon, one printed page per department."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from pathlib import Path

import browser
import duckdb
import pytest
from conftest import own_home

from brecha.atlas import GAP_SCALE, NO_VALUE, WORSE_SCALE


@pytest.fixture(scope="module")
def atlas(clustered_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Publish a copy of the clustered session warehouse in a home of our own, then write the atlas from it."""
    from brecha import publish, steps

    with own_home(clustered_home, tmp_path_factory.mktemp("atlas_home")) as own:
        published = publish.publish()  # the session fixtures ran (and recorded) every gate
        serving = published.serving_db
        result = steps.atlas()
        again = steps.atlas(own / "again.html")
    with duckdb.connect(str(serving), read_only=True) as con:
        values = con.execute("""SELECT d.ubigeo, d.department_code, p.internet_pct, p.divide_index, p.gap_pp,
                                       b.ubigeo IS NOT NULL AS has_polygon
                                FROM marts.dim_districts d
                                LEFT JOIN marts.mart_district_priorities p USING (ubigeo)
                                LEFT JOIN marts.dim_district_boundaries b USING (ubigeo)""").df()
    return {"result": result, "again": again, "home": own, "values": values, "published": published}


@pytest.fixture(scope="module")
def chromium() -> str:
    return browser.chromium()


class Maps(HTMLParser):
    """Per map (svg id): the fill of each district's <use>; and the path data of each district's definition."""

    def __init__(self) -> None:
        super().__init__()
        self.svg: str | None = None
        self.fills: dict[str, dict[str, str]] = {}
        self.paths: dict[str, str] = {}
        self.pages: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "svg":
            self.svg = a.get("id")
        elif tag == "use" and self.svg and "data-ubigeo" in a:
            self.fills.setdefault(self.svg, {})[a["data-ubigeo"]] = a.get("fill", "")
        elif tag == "path" and (a.get("id") or "").startswith("d-"):
            self.paths[a["id"][2:]] = a.get("d", "")
        elif tag == "section" and "page" in (a.get("class") or "").split():
            self.pages.append(a.get("id", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.svg = None


def test_atlas_is_self_contained_and_deterministic(atlas: dict) -> None:
    result = atlas["result"]
    assert result.path == atlas["home"] / "atlas" / "index.html"
    text = result.path.read_text(encoding="utf-8")
    assert not re.search(r"https?://|<script|<link|<img|@import|url\(", text)  # nothing fetched, nothing run
    assert text == atlas["again"].path.read_text(encoding="utf-8")
    published = atlas["published"]  # the atlas names the snapshot it was drawn from (the serving copy's ledger)
    assert f"snapshot {published.snapshot_id}, model run {published.run_id}" in text
    assert result.size_bytes == len(text.encode()) < 3_000_000
    values = atlas["values"]
    assert result.departments == values.department_code.nunique()
    assert result.drawn == int(values.has_polygon.sum()) and result.without_polygon == int((~values.has_polygon).sum())


def test_atlas_refuses_without_a_serving_copy(brecha_home: Path) -> None:
    from brecha.errors import BrechaError
    from brecha.steps import atlas

    with pytest.raises(BrechaError, match="no serving copy"):
        atlas()


def test_chromium_draws_every_district_with_a_value(atlas: dict, chromium: str, tmp_path: Path) -> None:
    url = atlas["result"].path.as_uri()
    dom = browser.run_chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", url).stdout
    maps = Maps()
    maps.feed(dom)
    values = atlas["values"].set_index("ubigeo")
    drawn = set(values.index[values.has_polygon])
    assert set(maps.paths) == drawn and all(re.fullmatch(r"(M-?\d+ -?\d+l[-\d ]+z)+", d) for d in maps.paths.values())
    for measure, palette in (("internet_pct", WORSE_SCALE), ("divide_index", WORSE_SCALE), ("gap_pp", GAP_SCALE)):
        fills = maps.fills[f"map-{measure}"]
        assert set(fills) == drawn  # every polygon is on the national map
        known = set(values.index[values[measure].notna()]) & drawn
        assert known and {u for u in known if fills[u] not in palette} == set()  # filled with a class colour
        assert {u for u in drawn - known if fills[u] != NO_VALUE} == set()  # no value: grey
        if measure != "gap_pp":  # quintiles: every class is used
            assert {fills[u] for u in known} == set(palette)
    for measure in ("internet_pct", "divide_index", "gap_pp"):
        assert set(maps.fills[f"clusters-{measure}"]) == drawn
    # one page per department, each drawing exactly its districts that have a polygon
    departments = sorted(values.department_code.unique())
    assert [p for p in maps.pages if p.startswith("dep-")] == [f"dep-{d}-page" for d in departments]
    for d in departments:
        mine = set(values.index[(values.department_code == d) & values.has_polygon])
        assert set(maps.fills.get(f"dep-{d}", {})) == mine


def non_blank(png: bytes, palette: tuple[str, ...]) -> tuple[int, float, int]:
    """(distinct colours, share of pixels that are not the page's white or grey, palette colours present)."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    counts = {colour: n for n, colour in img.getcolors(maxcolors=img.width * img.height)}
    colours = set(counts)
    inked = sum(n for c, n in counts.items() if c not in {(255, 255, 255), (238, 238, 238)}) / (img.width * img.height)
    wanted = {tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in palette}
    return len(colours), inked, len(wanted & colours)


def test_chromium_screenshots_of_the_national_map_and_a_department_page_are_not_blank(
        atlas: dict, chromium: str, tmp_path: Path) -> None:
    url = atlas["result"].path.as_uri()
    department = sorted(atlas["values"].department_code.unique())[0]
    for page, palette in (("map-divide_index-page", WORSE_SCALE), (f"dep-{department}-page", WORSE_SCALE)):
        shot = tmp_path / f"{page}.png"
        browser.run_chromium(tmp_path, "--window-size=800,1150", f"--screenshot={shot}", f"{url}#{page}")
        n_colours, inked, in_palette = non_blank(shot.read_bytes(), palette)
        assert n_colours > 20 and inked > 0.05, (page, n_colours, inked)
        assert in_palette >= 3, f"{page}: the map's class colours are not on screen"


def test_print_to_pdf_gives_one_page_per_department(atlas: dict, chromium: str, tmp_path: Path) -> None:
    from pypdf import PdfReader

    pdf = tmp_path / "atlas.pdf"
    browser.run_chromium(tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", atlas["result"].path.as_uri())
    maps = Maps()
    maps.feed(atlas["result"].path.read_text(encoding="utf-8"))
    front = [p for p in maps.pages if not p.startswith("dep-")]
    reader = PdfReader(str(pdf))
    departments = atlas["values"].department_code.nunique()
    assert len(reader.pages) == len(front) + departments
    # each department's name heads its own page, in order
    names = duckdb_names(atlas)
    texts = [page.extract_text() or "" for page in reader.pages[len(front):]]
    assert all(name in text for name, text in zip(names, texts, strict=True))


def duckdb_names(atlas: dict) -> list[str]:
    with duckdb.connect(str(atlas["home"] / "serving" / "brecha.duckdb"), read_only=True) as con:
        return [r[0] for r in con.execute("SELECT department FROM marts.dim_districts GROUP BY department_code, "
                                          "department ORDER BY department_code").fetchall()]


def test_reason_in_words_follows_the_numbers() -> None:
    import pandas as pd

    from brecha.atlas import reason

    base = {"population": 7000.0, "internet_pct": 1.0, "predicted_internet_pct": 6.0, "lower_90": 2.0,
            "upper_90": 11.0, "gap_pp": -5.0, "internet_pct_cluster": "low-low", "divide_index": 81.4,
            "national_rank": 12, "infrastructure_score": 90.0, "adoption_score": 70.0, "socioeconomic_score": 40.0}
    text = reason(pd.Series(base), persons=3.5)
    assert text.startswith("About 1,980 households offline; 5.0 pp below the 6.0 % its profile predicts — below its 90 %")
    assert "low-low" in text and "rank 12 of Peru" in text and "weakest on infrastructure (worse than 90 %" in text
    within = reason(pd.Series({**base, "lower_90": 0.5, "internet_pct_cluster": "not significant"}), persons=3.5)
    assert "(within its 90 % interval)" in within and "cluster" not in within
    unknown = reason(pd.Series({**base, "internet_pct": float("nan"), "gap_pp": float("nan")}), persons=3.5)
    assert "no census share" in unknown and "About 1,880 households offline" in unknown  # from the prediction
    above = reason(pd.Series({**base, "gap_pp": 2.0, "infrastructure_score": 30.0, "adoption_score": 20.0}), persons=3.5)
    assert "at or above" in above and "weakest" not in above
