"""`brecha atlas`: written from the serving copy, self-contained and deterministic, and rendered by headless
Chromium (Debian's `chromium`, which `make test` installs) from a file with the network off: the national map and a
department page are drawn, every district of the reference is on every map (a filled polygon, or a point when it has
none), markers never overlap at print size, Spanish by default, one printed page per department (and the list of
districts drawn as points after the maps). On the synthetic session warehouse and on the real extracts."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from pathlib import Path

import browser
import duckdb
import pytest
from conftest import own_home, settings_for

from brecha.serve.atlas import GAP_SCALE, NO_VALUE, WORSE_SCALE


@pytest.fixture(scope="module")
def atlas(session_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Publish a copy of the clustered session warehouse in a home of our own, then write the atlas from it."""
    from brecha.orchestrate import steps
    from brecha.warehouse import publish

    with own_home(session_home, tmp_path_factory.mktemp("atlas_home")) as own:
        published = publish.publish()  # the session fixtures ran (and recorded) every gate
        serving = published.serving_db
        result = steps.atlas(settings_for(own))
        again = steps.atlas(settings_for(own), own / "again.html")
        english = steps.atlas(settings_for(own), own / "english.html", lang="en")
    return {
        "result": result,
        "again": again,
        "english": english,
        "home": own,
        "values": profile(serving),
        "published": published,
    }


def profile(serving: Path):
    with duckdb.connect(str(serving), read_only=True) as con:
        return con.execute("""SELECT ubigeo, department_code, internet_pct, divide_index, gap_pp,
                                     map_shape = 'polygon' AS has_polygon
                              FROM marts.mart_district_profile""").df()


@pytest.fixture(scope="module")
def chromium() -> str:
    return browser.chromium()


class Maps(HTMLParser):
    """Per map (svg id): the fill of each district's <use>, the fill of each district drawn as a point, the circles of
    points and numbered markers (x, y, r in the map's units) and its print scale; the path data of each district's
    definition; the pages in order."""

    def __init__(self) -> None:
        super().__init__()
        self.svg: str | None = None
        self.fills: dict[str, dict[str, str]] = {}
        self.points: dict[str, dict[str, str]] = {}
        self.circles: dict[str, list[tuple[float, float, float]]] = {}
        self.scale: dict[str, float] = {}
        self.paths: dict[str, str] = {}
        self.pages: list[str] = []
        self.group: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "svg":
            self.svg = a.get("id")
            if self.svg and "data-mm-per-unit" in a:
                self.scale[self.svg] = float(a["data-mm-per-unit"])
        elif tag == "g" and self.svg:
            self.group = (a.get("class") or "") if a.get("class") in ("point", "label") else None
        elif tag == "circle" and self.svg and self.group and "spot" not in (a.get("class") or ""):
            self.circles.setdefault(self.svg, []).append((float(a["cx"]), float(a["cy"]), float(a["r"])))
            if self.group == "point":
                self.points.setdefault(self.svg, {})[a["data-ubigeo"]] = a.get("fill", "")
        elif tag == "use" and self.svg and "data-ubigeo" in a:
            self.fills.setdefault(self.svg, {})[a["data-ubigeo"]] = a.get("fill", "")
        elif tag == "path" and (a.get("id") or "").startswith("d-"):
            self.paths[a["id"][2:]] = a.get("d", "")
        elif tag == "section" and "page" in (a.get("class") or "").split():
            self.pages.append(a.get("id", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.svg = None
        elif tag == "g":
            self.group = None


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
    assert result.drawn == int(values.has_polygon.sum()) and result.markers == int((~values.has_polygon).sum())
    assert result.districts == len(values)
    assert text.startswith('<!DOCTYPE html>\n<html lang="es">') and "<title>Brecha — atlas distrital" in text
    english = atlas["english"].path.read_text(encoding="utf-8")
    assert '<html lang="en">' in english and "Peru&#39;s digital divide, district by district" in english


def test_atlas_refuses_without_a_serving_copy(brecha_home: Path) -> None:
    from brecha.core.errors import BrechaError
    from brecha.orchestrate.steps import atlas

    with pytest.raises(BrechaError, match="no serving copy"):
        atlas(settings_for(brecha_home))


def check_every_district_drawn(maps: Maps, values) -> None:
    """Every district of the profile is on every national map and on its department's page: a filled polygon, or a
    point when it has no polygon of its own; both filled with a class colour when it has a value, grey otherwise."""
    values = values.set_index("ubigeo")
    drawn = set(values.index[values.has_polygon])
    pointed = set(values.index[~values.has_polygon])
    assert set(maps.paths) == drawn and all(re.fullmatch(r"(M-?\d+ -?\d+l[-\d ]+z)+", d) for d in maps.paths.values())
    for measure, palette in (("internet_pct", WORSE_SCALE), ("divide_index", WORSE_SCALE), ("gap_pp", GAP_SCALE)):
        fills = maps.fills[f"map-{measure}"] | maps.points.get(f"map-{measure}", {})
        assert set(maps.fills[f"map-{measure}"]) == drawn and set(maps.points.get(f"map-{measure}", {})) == pointed
        known = set(values.index[values[measure].notna()])
        assert known and {u for u in known if fills[u] not in palette} == set()  # filled with a class colour
        assert {u for u in set(values.index) - known if fills[u] != NO_VALUE} == set()  # no value: grey
        if measure != "gap_pp":  # quantile classes: at least the quintiles' five colours are used
            assert len({fills[u] for u in known}) >= 5
    for measure in ("internet_pct", "divide_index", "gap_pp"):
        assert set(maps.fills[f"clusters-{measure}"]) == drawn
    # one page per department, each drawing exactly its districts, by polygon or point
    departments = sorted(values.department_code.unique())
    assert [p for p in maps.pages if p.startswith("dep-")] == [f"dep-{d}-page" for d in departments]
    for d in departments:
        mine = values.department_code == d
        assert set(maps.fills.get(f"dep-{d}", {})) == set(values.index[mine & values.has_polygon])
        assert set(maps.points.get(f"dep-{d}", {})) == set(values.index[mine & ~values.has_polygon])
    # the list of districts drawn as points comes after every map
    assert (maps.pages[-1] == "annex-page") == bool(pointed)


def check_no_marker_overlaps(maps: Maps) -> None:
    """No two points or numbered markers of a map overlap at print size (their circles, in the map's units)."""
    for svg, circles in maps.circles.items():
        for i, (x, y, r) in enumerate(circles):
            for x2, y2, r2 in circles[i + 1 :]:
                # radii are written with one decimal: allow that rounding
                assert ((x - x2) ** 2 + (y - y2) ** 2) ** 0.5 >= r + r2 - 0.11, (svg, (x, y, r), (x2, y2, r2))


def test_chromium_draws_every_district(atlas: dict, chromium: str, tmp_path: Path) -> None:
    url = atlas["result"].path.as_uri()
    dom = browser.run_chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", url).stdout
    maps = Maps()
    maps.feed(dom)
    check_every_district_drawn(maps, atlas["values"])
    check_no_marker_overlaps(maps)


def test_real_atlas_draws_every_district_of_the_reference(real_run) -> None:
    """On the real extracts: every district of the INEI reference (its superseded codes aside) is on the maps,
    1,826 by their polygon (Putumayo and Teniente Manuel Clavero from their pre-2014 codes) and the rest as points
    (Oronccoy, Santa Anita, the new districts of Putumayo...), markers never overlap, Lima has its inset."""
    import csv

    from conftest import REAL_DIR

    text = (real_run.home / "atlas" / "index.html").read_text(encoding="utf-8")
    maps = Maps()
    maps.feed(text)
    values = profile(real_run.home / "brecha.duckdb")  # the warehouse: the published copy may be open elsewhere
    check_every_district_drawn(maps, values)
    check_no_marker_overlaps(maps)
    with (REAL_DIR / "ubigeo-aumentado" / "ubigeo_distrito.csv").open(encoding="utf-8") as f:
        reference = {r["inei"] for r in csv.DictReader(f) if r["inei"] not in ("", "NA")}
    assert set(values.ubigeo) == reference - {"160109", "160114"}  # the pre-2014 codes of 160801 / 160803
    shape = values.set_index("ubigeo").has_polygon
    assert shape["160801"] and shape["160803"] and not shape["050511"] and not shape["150137"]
    assert int(shape.sum()) == 1826  # 1,834 features landed, 8 with a null geometry
    assert 'id="inset-dep-15"' in text and 'id="inset-internet_pct"' in text and "Lima Metropolitana y Callao" in text
    # the enlarged area is outlined on Lima's map; on Callao's, Lima Metropolitana is larger than the map: no outline
    main_map = {code: re.search(rf'<svg[^>]*id="dep-{code}".*?</svg>', text, re.S).group(0) for code in ("15", "07")}
    assert 'class="frame"' in main_map["15"] and 'class="frame"' not in main_map["07"]
    # every other inset truly enlarges its markers, twice the page's map at least (Tumbes' once showed the whole
    # department smaller than its page's map did)
    enlarged = {svg.removeprefix("inset-dep-") for svg in maps.scale if svg.startswith("inset-dep-")} - {"07", "15"}
    assert "24" in enlarged and all(maps.scale[f"inset-dep-{c}"] >= 1.99 * maps.scale[f"dep-{c}"] for c in enlarged)
    for u in ("050511", "150137", "160802", "160804"):  # Oronccoy, Santa Anita, Rosa Panduro, Yaguas: listed, with why
        assert f'<tr data-ubigeo="{u}"' in text
    # the run report accounts for every feature that landed
    assert (
        "District maps: 1,834 boundary features landed (8 with a null geometry) -> 1,826 polygons in "
        "marts.dim_district_boundaries (2 under an older code) -> 1,890 districts of the reference on every map: "
        "1,826 drawn by polygon, 64 by marker"
    ) in real_run.output and "features dropped: 0" in real_run.output


def non_blank(png: bytes, palette: tuple[str, ...]) -> tuple[int, float, int]:
    """(distinct colours, share of pixels that are not the page's white or grey, palette colours present)."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    counts = {colour: n for n, colour in img.getcolors(maxcolors=img.width * img.height)}
    colours = set(counts)
    inked = sum(n for c, n in counts.items() if c not in {(255, 255, 255), (238, 238, 238)}) / (img.width * img.height)
    wanted = {tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in palette}
    return len(colours), inked, len(wanted & colours)


def test_chromium_screenshots_of_the_national_map_and_a_department_page_are_not_blank(
    atlas: dict, chromium: str, tmp_path: Path
) -> None:
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
    front = [p for p in maps.pages if not p.startswith("dep-") and p != "annex-page"]
    reader = PdfReader(str(pdf))
    departments = atlas["values"].department_code.nunique()
    # the list of districts drawn as points flows on after the department pages (never cut): one sheet or more
    annex = len(reader.pages) - len(front) - departments
    assert annex >= 1 and maps.pages[-1] == "annex-page"
    # each department's name heads its own page, in order, and the list starts after the last one
    names = duckdb_names(atlas)
    texts = [page.extract_text() or "" for page in reader.pages]
    assert all(name in text for name, text in zip(names, texts[len(front) : len(front) + departments], strict=True))
    assert "Distritos dibujados como punto" in texts[len(front) + departments]


# Run in the page by Chromium with print media emulated: per page (section.page), what does not fit its A4 sheet. A
# page's content taller or wider than its box (scrollHeight/scrollWidth past clientHeight/clientWidth: cut at the
# sheet's edge, as `overflow: hidden` cuts it), and any element (a drawing counted as its box) that runs out of the
# page's padding box or out of its row (a child of the page: the map row, a note, the table), where it would print
# over the text below it.
FITS_A4 = r"""(async () => {
  await document.fonts.ready;
  const mm = 96 / 25.4, slack = 0.5;  // CSS px per mm; half a pixel of rounding
  const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
    (typeof e.className === 'string' && e.className ? '.' + e.className.trim().replace(/\s+/g, '.') : '');
  const out = [];
  for (const page of document.querySelectorAll('section.page')) {
    const box = page.getBoundingClientRect(), css = getComputedStyle(page);
    const inner = {top: box.top + parseFloat(css.paddingTop), bottom: box.bottom - parseFloat(css.paddingBottom),
                   left: box.left + parseFloat(css.paddingLeft), right: box.right - parseFloat(css.paddingRight)};
    const problems = [];
    if (page.scrollHeight > page.clientHeight || page.scrollWidth > page.clientWidth)
      problems.push(`content ${(page.scrollHeight / mm).toFixed(1)} x ${(page.scrollWidth / mm).toFixed(1)} mm ` +
                    `in a box of ${(page.clientHeight / mm).toFixed(1)} x ${(page.clientWidth / mm).toFixed(1)} mm`);
    for (const row of page.children) {
      const frame = row.getBoundingClientRect();
      for (const e of [row, ...row.querySelectorAll('*')]) {
        if (e.ownerSVGElement) continue;  // inside a drawing: the drawing's own box counts
        const r = e.getBoundingClientRect();
        if (r.width === 0 && r.height === 0) continue;
        for (const [what, b] of [['page', inner], [name(row), frame]]) {
          const past = Math.max(r.bottom - b.bottom, b.top - r.top, r.right - b.right, b.left - r.left);
          if (past > slack) { problems.push(`${name(e)} runs ${(past / mm).toFixed(1)} mm out of its ${what}`); break; }
        }
      }
    }
    out.push([page.id, problems.slice(0, 5)]);
  }
  return out;
})()"""


def pages_that_do_not_fit(atlas_html: Path, tmp: Path) -> tuple[list[str], dict[str, list[str]]]:
    """(every page's id, {page id: what does not fit}) of the atlas at ``atlas_html``, laid out for print."""
    pages = browser.evaluate(atlas_html.as_uri(), tmp, FITS_A4, media="print")
    return [page for page, _ in pages], {page: problems for page, problems in pages if problems}


def test_every_page_fits_its_a4_sheet_in_print(atlas: dict, chromium: str, tmp_path: Path) -> None:
    """The synthetic atlas (ENAHO trends on every department page, Lima's inset): nothing cut, nothing over the text."""
    pages, problems = pages_that_do_not_fit(atlas["result"].path, tmp_path)
    maps = Maps()
    maps.feed(atlas["result"].path.read_text(encoding="utf-8"))
    assert pages == maps.pages and problems == {}


def test_every_page_of_the_real_atlas_fits_its_a4_sheet_in_print(real_run, chromium: str, tmp_path: Path) -> None:
    """On the real extracts (Cusco's eight districts drawn as points, Lima's inset, Piura's long reasons): every
    department page holds its map, its list of points, its table and the table's footnote on one A4 sheet."""
    pages, problems = pages_that_do_not_fit(real_run.home / "atlas" / "index.html", tmp_path)
    assert sum(p.startswith("dep-") for p in pages) == 25 and problems == {}


def duckdb_names(atlas: dict) -> list[str]:
    with duckdb.connect(str(atlas["home"] / "serving" / "brecha.duckdb"), read_only=True) as con:
        return [
            r[0]
            for r in con.execute(
                "SELECT department FROM marts.dim_districts GROUP BY department_code, "
                "department ORDER BY department_code"
            ).fetchall()
        ]


def test_reason_in_words_follows_the_numbers() -> None:
    import pandas as pd

    from brecha.serve.atlas import reason

    base = {
        "households_offline": 1980.0,
        "internet_pct": 1.0,
        "predicted_internet_pct": 6.0,
        "lower_90": 2.0,
        "upper_90": 11.0,
        "gap_pp": -5.0,
        "internet_pct_cluster": "low-low",
        "divide_index": 81.4,
        "national_rank": 1234,
        "infrastructure_score": 90.0,
        "adoption_score": 70.0,
        "socioeconomic_score": 40.0,
    }
    text = reason(pd.Series(base), "en")
    assert text.startswith(
        "About 1,980 households offline; 5.0 pp below the 6.0 % its profile predicts — below its 90 %"
    )
    assert "low-low" in text and "rank 1,234 of Peru" in text and "weakest on infrastructure (worse than 90 %" in text
    spanish = reason(pd.Series(base))  # Spanish by default, INEI's number style
    assert spanish.startswith("Unos 1\u202f980 hogares sin internet; 5,0 pp por debajo del 6,0 % que predice su perfil")
    assert "puesto 1\u202f234 del Perú" in spanish and "la infraestructura" in spanish
    within = reason(pd.Series({**base, "lower_90": 0.5, "internet_pct_cluster": "not significant"}), "en")
    assert "(within its 90 % interval)" in within and "cluster" not in within
    # a census share of 0.00 % (published with two decimals) is not below a lower end of 0.0004 %, printed 0,0 %;
    # 0.58 % is below 0.62 %
    zero = reason(pd.Series({**base, "internet_pct": 0.0, "lower_90": 0.0004, "gap_pp": -0.5}), "en")
    assert "(within its 90 % interval)" in zero
    near = reason(pd.Series({**base, "internet_pct": 0.58, "lower_90": 0.6219, "gap_pp": -3.5}), "en")
    assert "below its 90 % interval" in near
    unknown = reason(pd.Series({**base, "internet_pct": float("nan"), "gap_pp": float("nan")}), "en")
    assert "no census share" in unknown and "About 1,980 households offline" in unknown
    above = reason(pd.Series({**base, "gap_pp": 2.0, "infrastructure_score": 30.0, "adoption_score": 20.0}), "en")
    assert "at or above" in above and "weakest" not in above


def test_markers_are_pushed_apart_until_none_overlaps() -> None:
    from brecha.serve.atlas import overlaps, place

    spots = {"a": (10.0, 10.0, 2.0), "b": (10.0, 10.0, 2.0), "c": (11.0, 10.5, 2.0), "d": (40.0, 40.0, 1.0)}
    placed = place(spots, (0, 0, 50, 50))
    assert overlaps(placed, {k: v[2] for k, v in spots.items()}) == []
    assert placed["d"] == (40.0, 40.0)  # a marker with room stays where it is
    assert all(0 <= x <= 50 and 0 <= y <= 50 for x, y in placed.values())
    assert place(spots, (0, 0, 50, 50)) == placed  # deterministic
