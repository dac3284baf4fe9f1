"""Where the divide clusters: global Moran's I and local indicators of spatial association (LISA).

For each measure (census internet share, divide index, the model's gap), over the districts that have a
value, with PySAL (``libpysal`` for the neighbour graph, ``esda`` for the statistics):

* **Neighbour graph.** Queen contiguity of the district polygons (two districts are neighbours when their
  boundaries share at least one point). A district without a polygon (58 + 8 of the real reference), or
  whose polygon touches no other one (an island, or a simplified boundary that left a sliver), gets its
  ``KNN_K`` nearest district centroids instead; those links are made symmetric, so its neighbours count
  it as a neighbour too. ``neighbour_source`` says which rule gave a district its neighbours. Weights are
  row-standardised.
* **Global Moran's I** with a permutation p-value (``PERMUTATIONS`` random relabellings, fixed seed).
* **Local Moran's I** (Anselin 1995) with conditional permutation pseudo p-values (same seed), **two-sided**
  (``esda.significance.calculate_significance(..., alternative="folded")`` on the kept permutations: a local I
  far from the mean of its reference distribution on either side; esda's "two-sided" option instead counts
  both tails at the statistic's percentile, whose floor is 3 / (permutations + 1)), and a
  **false-discovery-rate** control over the
  measure's districts: ``esda.fdr`` (Benjamini-Hochberg at ``SIGNIFICANCE``) gives the p-value cut-off. A district
  whose p-value is at most that cut-off is labelled by its quadrant of the Moran scatterplot — ``high-high``
  (high value among high neighbours), ``low-low``, ``high-low`` (high among low: an outlier), ``low-high`` —
  else ``not significant``. "High" means above the measure's mean, whatever the measure's direction; the marts
  say which direction is bad. esda's default (and GeoDa's) is the "directed" p-value, half the two-sided one,
  compared with 0.05 for each of ~1,900 districts without correction: about 95 chance "clusters" per measure.
  ``ml.spatial_autocorrelation`` keeps the counts of both earlier rules (directed p ≤ 0.05; two-sided p ≤ 0.05)
  beside the controlled ones.

Writes ``ml.district_clusters`` (one row per run, district and measure) and ``ml.spatial_autocorrelation``
(one row per run and measure); the rows of the same run are replaced, so the step can be rerun.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from brecha.core.db import create_ddl

# measure name -> column of marts.mart_district_priorities
MEASURES: dict[str, str] = {"internet_pct": "internet_pct", "divide_index": "divide_index", "gap_pp": "gap_pp"}
# 4999, not esda's 999: a permutation p-value cannot fall below 1 / (permutations + 1), and the false-discovery-rate
# cut-off over ~1,870 districts needs smaller ones (with 999, the gap's 20 most extreme districts all sat at the
# floor 0.001, above their cut-off: no cluster at all; with 4999, 9).
PERMUTATIONS = 4999
SIGNIFICANCE = 0.05
KNN_K = 6  # about the mean number of queen neighbours of a Peruvian district (5.6 on the real boundaries)
EARTH_KM_PER_DEG = 111.32

QUADRANTS = {1: "high-high", 2: "low-high", 3: "low-low", 4: "high-low"}  # esda's Moran_Local.q codes
NOT_SIGNIFICANT = "not significant"
CLUSTER_LABELS = ("high-high", "low-low", "high-low", "low-high", NOT_SIGNIFICANT)

DDL: dict[str, str] = {
    "district_clusters": """run_id VARCHAR NOT NULL, ubigeo VARCHAR NOT NULL, measure VARCHAR NOT NULL,
        value DOUBLE, standardized_value DOUBLE, spatial_lag DOUBLE, local_i DOUBLE, p_value DOUBLE,
        quadrant VARCHAR, cluster VARCHAR NOT NULL, n_neighbours INTEGER, neighbour_source VARCHAR NOT NULL,
        permutations INTEGER, seed INTEGER, computed_at TIMESTAMP, PRIMARY KEY (run_id, ubigeo, measure)""",
    "spatial_autocorrelation": """run_id VARCHAR NOT NULL, measure VARCHAR NOT NULL, n_districts INTEGER,
        n_queen INTEGER, n_knn_no_boundary INTEGER, n_knn_island INTEGER, knn_k INTEGER, moran_i DOUBLE,
        expected_i DOUBLE, z_score DOUBLE, p_value DOUBLE, permutations INTEGER, seed INTEGER,
        n_high_high INTEGER, n_low_low INTEGER, n_high_low INTEGER, n_low_high INTEGER, seconds DOUBLE,
        computed_at TIMESTAMP, p_value_cutoff DOUBLE, n_significant INTEGER, n_significant_two_sided INTEGER,
        n_significant_directed INTEGER, PRIMARY KEY (run_id, measure)""",
}


@dataclass
class Graph:
    """A row-standardised libpysal ``W`` plus, per district, which rule gave it its neighbours."""

    w: Any
    source: dict[str, str]


@dataclass
class ClusterResult:
    run_id: str | None
    moran: dict[str, float] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0

    def __str__(self) -> str:
        if self.run_id is None:
            return "no predictions in marts.mart_district_priorities: clusters skipped"
        parts = []
        for m, i in self.moran.items():
            c = self.counts[m]
            parts.append(f"{m} I={i:.3f} (HH {c['high-high']}, LL {c['low-low']}, HL {c['high-low']}, LH {c['low-high']})")
        return f"run {self.run_id}: " + "; ".join(parts) + f" in {self.seconds:.1f} s"


def _projected(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Equirectangular kilometres around the mean latitude (Peru spans 18°: distances within 5 %)."""
    k = np.cos(np.radians(np.nanmean(lat)))
    return np.column_stack([lon * k * EARTH_KM_PER_DEG, lat * EARTH_KM_PER_DEG])


def build_graph(ubigeos: list[str], lon: np.ndarray, lat: np.ndarray, geometries: dict[str, Any],
                k: int = KNN_K) -> Graph:
    """Queen contiguity over the districts in ``geometries`` (shapely), k nearest centroids for the others.

    ``ubigeos`` fixes the order of the graph; ``lon``/``lat`` are every district's centroid.
    """
    from libpysal.weights import KNN, Queen, W

    ids = list(ubigeos)
    with_poly = [u for u in ids if geometries.get(u) is not None]
    neighbours: dict[str, set[str]] = {u: set() for u in ids}
    if len(with_poly) > 1:
        queen = Queen.from_iterable([geometries[u] for u in with_poly], ids=with_poly, silence_warnings=True)
        for u in with_poly:
            neighbours[u].update(queen.neighbors[u])
    source = {u: ("queen" if neighbours[u] else ("knn_island" if u in geometries and geometries[u] is not None
                                                  else "knn_no_boundary")) for u in ids}
    fallback = [u for u in ids if source[u] != "queen"]
    if fallback:
        kk = min(k, len(ids) - 1)
        knn = KNN.from_array(_projected(np.asarray(lon, float), np.asarray(lat, float)), k=kk, ids=ids,
                             silence_warnings=True)
        for u in fallback:
            for v in knn.neighbors[u]:
                neighbours[u].add(v)
                neighbours[v].add(u)  # symmetric: the fallback district is its neighbours' neighbour too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # islands and disconnected components are reported, not warned about
        w = W({u: sorted(neighbours[u]) for u in ids}, id_order=ids, silence_warnings=True)
    w.transform = "r"
    return Graph(w=w, source=source)


def lisa_table(values: pd.Series, graph: Graph, seed: int, permutations: int = PERMUTATIONS,
               significance: float = SIGNIFICANCE) -> tuple[pd.DataFrame, dict[str, float]]:
    """Local and global Moran's I of ``values`` (indexed by the graph's ids, in its order): two-sided pseudo
    p-values, clusters where p is at most the false-discovery-rate cut-off (``summary["p_value_cutoff"]``)."""
    from esda import fdr
    from esda.moran import Moran, Moran_Local
    from esda.significance import calculate_significance

    ids = graph.w.id_order
    y = values.reindex(ids).to_numpy(dtype=float)
    if np.isnan(y).any():
        raise ValueError("lisa_table: every district of the graph needs a value (drop the missing ones first)")
    state = np.random.get_state()
    try:
        np.random.seed(seed)  # esda's global Moran permutes with numpy's global generator
        glob = Moran(y, graph.w, transformation="r", permutations=permutations)
    finally:
        np.random.set_state(state)
    with warnings.catch_warnings():  # esda warns that its default alternative will change: we do not use it
        warnings.filterwarnings("ignore", message="The alternative hypothesis", category=DeprecationWarning)
        local = Moran_Local(y, graph.w, transformation="r", permutations=permutations, seed=seed, n_jobs=1,
                            keep_simulations=True)
    quadrant = pd.Series(local.q, index=ids).map(QUADRANTS)
    p = pd.Series(np.asarray(calculate_significance(local.Is, local.rlisas, alternative="folded"), float),
                  index=ids)
    cutoff = float(fdr(p.to_numpy(), significance))
    cluster = quadrant.where(p <= cutoff, NOT_SIGNIFICANT)
    z = (y - y.mean()) / y.std()
    table = pd.DataFrame({
        "ubigeo": ids, "value": y, "standardized_value": z,
        "spatial_lag": np.asarray(graph.w.sparse @ y).ravel(),
        "local_i": local.Is, "p_value": p.to_numpy(), "quadrant": quadrant.to_numpy(),
        "cluster": cluster.to_numpy(),
        "n_neighbours": [graph.w.cardinalities[u] for u in ids],
        "neighbour_source": [graph.source[u] for u in ids],
    })
    summary = {"moran_i": float(glob.I), "expected_i": float(glob.EI), "z_score": float(glob.z_sim),
               "p_value": float(glob.p_sim), "p_value_cutoff": cutoff, "n_significant": int((p <= cutoff).sum()),
               "n_significant_two_sided": int((p <= significance).sum()),
               "n_significant_directed": int((np.asarray(local.p_sim, float) <= significance).sum())}
    return table, summary


def _geometries(frame: pd.DataFrame) -> dict[str, Any]:
    from shapely.geometry import shape

    out: dict[str, Any] = {}
    for ubigeo, text in zip(frame["ubigeo"], frame["geometry_geojson"], strict=True):
        geom = shape(json.loads(text))
        out[str(ubigeo)] = geom if not geom.is_empty else None
    return out


def compute(con: duckdb.DuckDBPyConnection, seed: int, permutations: int = PERMUTATIONS,
            k: int = KNN_K) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both tables from the marts of ``con`` (mart_district_priorities, dim_district_boundaries)."""
    cols = ", ".join(sorted(set(MEASURES.values())))
    marts = con.execute(f"""SELECT run_id, ubigeo, longitude, latitude, {cols}
        FROM marts.mart_district_priorities WHERE longitude IS NOT NULL AND latitude IS NOT NULL
        ORDER BY ubigeo""").df()
    boundaries = con.execute("SELECT ubigeo, geometry_geojson FROM marts.dim_district_boundaries").df()
    geoms = _geometries(boundaries)
    now = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    locals_, globals_ = [], []
    for measure, column in MEASURES.items():
        started = time.perf_counter()
        sub = marts[marts[column].notna()].reset_index(drop=True)
        graph = build_graph(sub["ubigeo"].tolist(), sub["longitude"].to_numpy(), sub["latitude"].to_numpy(),
                            geoms, k=k)
        table, summary = lisa_table(sub.set_index("ubigeo")[column], graph, seed=seed, permutations=permutations)
        table.insert(1, "measure", measure)
        locals_.append(table)
        sources = pd.Series(graph.source).value_counts()
        counts = table["cluster"].value_counts()
        globals_.append({
            "measure": measure, "n_districts": len(sub), "n_queen": int(sources.get("queen", 0)),
            "n_knn_no_boundary": int(sources.get("knn_no_boundary", 0)),
            "n_knn_island": int(sources.get("knn_island", 0)), "knn_k": k, **summary,
            "permutations": permutations, "seed": seed,
            **{f"n_{c.replace('-', '_')}": int(counts.get(c, 0)) for c in CLUSTER_LABELS[:4]},
            "seconds": round(time.perf_counter() - started, 3),
        })
    run_id = str(marts["run_id"].iloc[0]) if len(marts) else None
    local_df = pd.concat(locals_, ignore_index=True)
    global_df = pd.DataFrame(globals_)
    for df in (local_df, global_df):
        df.insert(0, "run_id", run_id)
        df["computed_at"] = now
    local_df["permutations"], local_df["seed"] = permutations, seed
    return local_df, global_df


def write(con: duckdb.DuckDBPyConnection, local_df: pd.DataFrame, global_df: pd.DataFrame) -> None:
    """Replace the run's rows in ``ml.district_clusters`` and ``ml.spatial_autocorrelation``."""
    con.execute("CREATE SCHEMA IF NOT EXISTS ml")
    for name, cols in DDL.items():
        con.execute(create_ddl(con, f"CREATE TABLE IF NOT EXISTS ml.{name} ({cols})"))  # the lake: no keys
    run_ids = sorted(set(local_df["run_id"]))
    con.execute("BEGIN")
    try:
        for name, df in (("district_clusters", local_df), ("spatial_autocorrelation", global_df)):
            con.execute(f"DELETE FROM ml.{name} WHERE run_id IN (SELECT unnest(?::VARCHAR[]))", [run_ids])
            con.register("_frame", df)
            con.execute(f"INSERT INTO ml.{name} BY NAME SELECT * FROM _frame")
            con.unregister("_frame")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def run(seed: int, permutations: int = PERMUTATIONS) -> ClusterResult:
    """The pipeline step: compute the clusters from the warehouse's marts and write them to ``ml.*``."""
    from brecha.core.db import session

    started = time.perf_counter()
    with session(read_only=False) as con:
        has_rows = con.execute("SELECT count(*) FROM marts.mart_district_priorities").fetchone()[0]
        if not has_rows:
            return ClusterResult(run_id=None)
        local_df, global_df = compute(con, seed=seed, permutations=permutations)
        write(con, local_df, global_df)
    result = ClusterResult(run_id=str(local_df["run_id"].iloc[0]), seconds=time.perf_counter() - started)
    for g in global_df.itertuples(index=False):
        result.moran[g.measure] = g.moran_i
        result.counts[g.measure] = {c: int(getattr(g, f"n_{c.replace('-', '_')}")) for c in CLUSTER_LABELS[:4]}
    return result


README_START = "<!-- clusters:start (generated by `python -m tools.readme_figures clusters --readme README.md`) -->"
README_END = "<!-- clusters:end -->"


def readme_block(con: duckdb.DuckDBPyConnection) -> str:
    """The README's cluster figures as a markdown table, from ``marts.mart_spatial_autocorrelation`` of ``con``."""
    rows = con.execute("""SELECT measure, run_id, n_districts, moran_i, p_value, permutations, seed, n_high_high,
            n_low_low, n_high_low, n_low_high, p_value_cutoff, n_significant, n_significant_two_sided,
            n_significant_directed
        FROM marts.mart_spatial_autocorrelation ORDER BY measure""").df()
    if rows.empty:
        raise ValueError("marts.mart_spatial_autocorrelation is empty: run `brecha run` (or `brecha clusters` and the "
                         "cluster marts) first")
    lines = [README_START,
             f"Run `{rows['run_id'].iloc[0]}`, {int(rows['permutations'].iloc[0])} permutations, seed "
             f"{int(rows['seed'].iloc[0])}. Clusters: two-sided p at most the false-discovery-rate cut-off; the last "
             "two columns count the districts the looser rules would call significant.",
             "",
             "| measure | districts | Moran's I (p) | high-high | low-low | high-low | low-high | FDR cut-off "
             "| two-sided p ≤ 0.05 | directed p ≤ 0.05 (before) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows.itertuples(index=False):
        lines.append(f"| {r.measure} | {r.n_districts} | {r.moran_i:.3f} ({r.p_value:.4f}) | {r.n_high_high} | "
                     f"{r.n_low_low} | {r.n_high_low} | {r.n_low_high} | {r.p_value_cutoff:.2g} | "
                     f"{r.n_significant_two_sided} | {r.n_significant_directed} |")
    lines.append(README_END)
    return "\n".join(lines)


def replace_readme_block(text: str, block: str, start: str = README_START, end: str = README_END) -> str:
    """``text`` with the part between the markers ``start`` and ``end`` (included) replaced by ``block``."""
    first, last = text.find(start), text.find(end)
    if first < 0 or last < first:
        raise ValueError(f"no block between {start!r} and {end!r} in the README")
    return text[:first] + block + text[last + len(end):]
