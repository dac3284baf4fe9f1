"""Which marts (and mart columns) a batch leaves empty, which extract would fill them, and which Grafana panels
will show nothing. Read from the dbt manifest (a mart's source ancestors), the latest batch's files
(``raw._batch_files``), the layouts (``brecha.core.layouts``) and the dashboards' SQL (``grafana/dashboards``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from brecha.core.layouts import BY_ENTITY
from brecha.core.settings import GRAFANA_DIR, paths
from brecha.warehouse import gates


@dataclass
class Gap:
    relation: str  # marts.<name>, or "marts.<name> columns a, b" for columns left all null
    missing: list[str]  # layouts with no file in the latest batch: "description (e.g. file.csv)"
    panels: list[str] = field(default_factory=list)  # "Dashboard · Panel"

    def __str__(self) -> str:
        fill = "; ".join(self.missing) if self.missing else "no missing extract found (check the rejects)"
        shown = f" Empty panels: {'; '.join(self.panels)}." if self.panels else ""
        state = "have no value" if " columns " in self.relation else "is empty"
        return f"{self.relation} {state}. Filled by: {fill}.{shown}"


def _panels() -> list[tuple[str, str]]:
    """(``Dashboard · Panel``, SQL of every query of the panel) for every dashboard panel."""
    out = []
    for path in sorted((GRAFANA_DIR / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        title = board.get("title", path.stem).removeprefix("Brecha · ")

        def walk(panels: list[dict], title: str = title) -> None:
            for panel in panels:
                sql = " ".join(t.get("rawSql", "") for t in panel.get("targets", []) or [])
                if sql:
                    out.append((f"{title}: \"{panel.get('title', '?')}\"", sql))
                walk(panel.get("panels", []) or [])

        walk(board.get("panels", []))
    return out


def _ancestor_entities(manifest: dict, node_id: str) -> set[str]:
    """The raw entities (``source('raw', entity)``) a model reads, directly or through other models."""
    seen, todo, entities = set(), [node_id], set()
    while todo:
        nid = todo.pop()
        if nid in seen:
            continue
        seen.add(nid)
        if nid.startswith("source."):
            src = manifest["sources"][nid]
            if src["source_name"] == "raw" and src["name"] in BY_ENTITY:
                entities.add(src["name"])
            continue
        node = manifest["nodes"].get(nid)
        if node is not None:
            todo.extend(node.get("depends_on", {}).get("nodes", []))
    return entities


def _describe(entity: str) -> str:
    layout = BY_ENTITY[entity]
    example = f" (e.g. {', '.join(layout.example_names)})" if layout.example_names else ""
    return f"{layout.description}{example}"


def gaps(con: duckdb.DuckDBPyConnection, manifest_path: Path | None = None) -> list[Gap]:
    """Marts with no rows, and mart columns with no value, after the latest build; each with the extracts of the
    layouts it reads that had no file in the latest batch, and the dashboard panels that read it."""
    manifest_path = manifest_path or paths().dbt_target / "manifest.json"
    if not manifest_path.exists():
        return []
    manifest = json.loads(manifest_path.read_text())
    batch = gates.latest_ok_batch(con)
    present = {e for (e,) in con.execute("SELECT DISTINCT entity FROM raw._batch_files WHERE batch_id = ?",
                                         [batch]).fetchall()}
    tables = {t for (t,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'marts'").fetchall()}
    panels = _panels()
    out: list[Gap] = []
    for nid, node in sorted(manifest["nodes"].items()):
        if node.get("resource_type") != "model" or node.get("schema") != "marts" or node["name"] not in tables:
            continue
        name = node["name"]
        missing = [_describe(e) for e in sorted(_ancestor_entities(manifest, nid) - present)]
        n = con.execute(f'SELECT count(*) FROM marts."{name}"').fetchone()[0]
        reading = [(title, sql) for title, sql in panels if re.search(rf"\bmarts\.{name}\b", sql)]
        if n == 0:
            out.append(Gap(f"marts.{name}", missing, [title for title, _ in reading]))
            continue
        if not missing:
            continue
        cols = [c for (c,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'marts' AND table_name = ?", [name]).fetchall()]
        exprs = ", ".join(f'count("{c}")' for c in cols)
        counts = con.execute(f'SELECT {exprs} FROM marts."{name}"').fetchone()
        null_cols = [c for c, k in zip(cols, counts, strict=True) if k == 0]
        if null_cols:
            using = [title for title, sql in reading if any(re.search(rf"\b{c}\b", sql) for c in null_cols)]
            out.append(Gap(f"marts.{name} columns {', '.join(null_cols)}", missing, using))
    return out


@dataclass
class MapCounts:
    """How the district boundary features that landed reach the maps (the run report's "District maps" line)."""

    features: int  # features of the latest district boundaries GeoJSON (staging)
    null_geometry: int  # of which with a null geometry
    polygons: int  # rows of marts.dim_district_boundaries
    recoded: int  # of which drawn from a feature under the district's older code (crosswalk seed)
    districts: int  # rows of marts.mart_district_profile (every district of the reference)
    drawn_polygon: int
    drawn_marker: int
    marker_reasons: dict[str, int]  # map_reason -> districts drawn as a point

    @property
    def unaccounted(self) -> int:
        """Features with a geometry that reach no polygon of the marts (0 unless a feature was dropped)."""
        return self.features - self.null_geometry - self.polygons

    def __str__(self) -> str:
        reasons = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(self.marker_reasons.items()))
        return (f"District maps: {self.features:,} boundary features landed ({self.null_geometry} with a null geometry) "
                f"-> {self.polygons:,} polygons in marts.dim_district_boundaries ({self.recoded} under an older code) "
                f"-> {self.districts:,} districts of the reference on every map: {self.drawn_polygon:,} drawn by "
                f"polygon, {self.drawn_marker} by marker ({reasons}); features dropped: {self.unaccounted}")


def map_counts(con: duckdb.DuckDBPyConnection) -> MapCounts | None:
    """The counts behind the maps, from the warehouse ``con``; None until the profile mart is built."""
    from brecha.core.db import table_exists

    if not table_exists(con, "marts", "mart_district_profile"):
        return None
    features, null_geometry = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE NOT has_geometry) FROM staging.stg_geo__district_boundaries"
    ).fetchone()
    polygons, recoded = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE boundary_source = 'recoded') FROM marts.dim_district_boundaries"
    ).fetchone()
    districts, by_polygon = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE map_shape = 'polygon') FROM marts.mart_district_profile").fetchone()
    reasons = dict(con.execute("SELECT map_reason, count(*) FROM marts.mart_district_profile "
                               "WHERE map_shape = 'marker' GROUP BY 1 ORDER BY 1").fetchall())
    return MapCounts(features=features, null_geometry=null_geometry, polygons=polygons, recoded=recoded,
                     districts=districts, drawn_polygon=by_polygon, drawn_marker=districts - by_polygon,
                     marker_reasons=reasons)
