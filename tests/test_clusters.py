"""Spatial clusters (ml/clusters.py): the LISA table on a hand-made grid whose clusters are known, the neighbour
graph's fallbacks, and the step + cluster marts on the synthetic warehouse."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from conftest import settings_for
from shapely.geometry import box

from brecha_ml.clusters import CLUSTER_LABELS, KNN_K, PERMUTATIONS, build_graph, lisa_table

N = 7
HIGH = {(r, c) for r in range(3) for c in range(3)}  # top-left 3x3 block
LOW = {(r, c) for r in range(4, 7) for c in range(4, 7)}  # bottom-right 3x3 block


def ring(block: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """The block and every cell touching it (queen)."""
    return {(r + dr, c + dc) for r, c in block for dr in (-1, 0, 1) for dc in (-1, 0, 1)}


def cell(r: int, c: int) -> str:
    return f"{r}{c}"


def grid(noise_seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray, dict, pd.Series]:
    """A 7x7 grid of unit squares (queen contiguity: up to 8 neighbours), a high block and a low block."""
    ids = [cell(r, c) for r in range(N) for c in range(N)]
    geoms = {cell(r, c): box(c, -r - 1, c + 1, -r) for r in range(N) for c in range(N)}
    lon = np.array([int(u[1]) + 0.5 for u in ids])
    lat = np.array([-int(u[0]) - 0.5 for u in ids])
    rng = np.random.default_rng(noise_seed)
    values = pd.Series(
        [10.0 if (int(u[0]), int(u[1])) in HIGH else -10.0 if (int(u[0]), int(u[1])) in LOW else 0.0 for u in ids],
        index=ids,
    ) + rng.normal(0, 0.5, len(ids))
    return ids, lon, lat, geoms, values


def moran_by_hand(y: np.ndarray, neighbours: dict[str, list[str]], ids: list[str]) -> float:
    """Moran's I with row-standardised weights, straight from its formula: (n / S0) * z'Wz / z'z."""
    pos = {u: i for i, u in enumerate(ids)}
    z = y - y.mean()
    n = len(y)
    num = sum(z[pos[u]] * sum(z[pos[v]] for v in neighbours[u]) / len(neighbours[u]) for u in ids)
    return n / n * num / (z @ z)  # S0 = n for row-standardised weights


def test_lisa_finds_the_high_and_the_low_block_on_a_queen_grid() -> None:
    ids, lon, lat, geoms, values = grid()
    graph = build_graph(ids, lon, lat, geoms)
    assert set(graph.source.values()) == {"queen"}
    assert graph.w.cardinalities[cell(0, 0)] == 3 and graph.w.cardinalities[cell(3, 3)] == 8  # queen, not rook
    table, summary = lisa_table(values, graph, seed=42)
    by = table.set_index("ubigeo")
    assert set(table["cluster"]) <= set(CLUSTER_LABELS)
    # the cores of both blocks (every neighbour inside the block or beside it) are significant, with their label
    assert {by.loc[cell(r, c), "cluster"] for r, c in [(0, 0), (0, 1), (1, 0), (1, 1)]} == {"high-high"}
    assert {by.loc[cell(r, c), "cluster"] for r, c in [(5, 5), (5, 6), (6, 5), (6, 6)]} == {"low-low"}
    hh = set(by.index[by.cluster == "high-high"])
    ll = set(by.index[by.cluster == "low-low"])
    # never away from its block: inside it, or a background cell touching it (whose neighbours are mostly high/low)
    assert hh <= {cell(*rc) for rc in ring(HIGH)} and ll <= {cell(*rc) for rc in ring(LOW)}
    assert hh.isdisjoint(ll)
    assert len(hh) >= 6 and len(ll) >= 6
    # the far corners between the blocks have no pattern
    assert by.loc[cell(0, 6), "cluster"] == by.loc[cell(6, 0), "cluster"] == "not significant"
    # global I: esda's value equals the formula; strongly positive, and the permutation p-value is at its floor
    neighbours = {u: list(graph.w.neighbors[u]) for u in ids}
    assert summary["moran_i"] == pytest.approx(moran_by_hand(values.to_numpy(), neighbours, ids), rel=1e-9)
    assert summary["moran_i"] > 0.5 and summary["p_value"] == pytest.approx(1 / (PERMUTATIONS + 1))
    assert summary["expected_i"] == pytest.approx(-1 / (len(ids) - 1))
    # spatial lag = mean of the neighbours' values
    assert by.loc[cell(0, 0), "spatial_lag"] == pytest.approx(values[[cell(0, 1), cell(1, 0), cell(1, 1)]].mean())


def test_a_spatially_random_grid_has_no_significant_global_pattern() -> None:
    ids, lon, lat, geoms, _ = grid()
    values = pd.Series(np.random.default_rng(7).permutation(np.arange(len(ids), dtype=float)), index=ids)
    _, summary = lisa_table(values, build_graph(ids, lon, lat, geoms), seed=42)
    assert abs(summary["moran_i"]) < 0.2 and summary["p_value"] > 0.05


def test_same_seed_same_table_other_seed_other_p_values() -> None:
    ids, lon, lat, geoms, values = grid()
    graph = build_graph(ids, lon, lat, geoms)
    a, sa = lisa_table(values, graph, seed=42)
    b, sb = lisa_table(values, graph, seed=42)
    c, _ = lisa_table(values, graph, seed=43)
    pd.testing.assert_frame_equal(a, b)
    assert sa == sb
    assert not np.array_equal(a["p_value"].to_numpy(), c["p_value"].to_numpy())


def test_districts_without_polygon_or_touching_none_fall_back_to_nearest_centroids() -> None:
    ids, lon, lat, geoms, values = grid()
    geoms = dict(geoms)
    del geoms[cell(3, 3)]  # no boundary: a hole in the middle of the grid
    ids = [*ids, "far"]  # an island: a square far from the others
    geoms["far"] = box(20, -4, 21, -3)
    lon, lat = np.append(lon, 20.5), np.append(lat, -3.5)
    values = pd.concat([values, pd.Series({"far": 1.0})])
    graph = build_graph(ids, lon, lat, geoms)
    assert graph.source[cell(3, 3)] == "knn_no_boundary" and graph.source["far"] == "knn_island"
    assert sum(s == "queen" for s in graph.source.values()) == N * N - 1
    # the hole's k nearest centroids are its 8 ring neighbours' closest ones; the links go both ways
    hole = set(graph.w.neighbors[cell(3, 3)])
    assert len(hole) == KNN_K and hole <= {cell(r, c) for r in (2, 3, 4) for c in (2, 3, 4)}
    assert all(cell(3, 3) in graph.w.neighbors[v] for v in hole)
    assert len(graph.w.neighbors["far"]) == KNN_K and graph.w.islands == []
    table, _ = lisa_table(values, graph, seed=1)
    assert table.set_index("ubigeo").loc["far", "neighbour_source"] == "knn_island"
    with pytest.raises(ValueError, match="needs a value"):
        lisa_table(values.drop("far").reindex(ids), graph, seed=1)


# --- the step and the marts on the synthetic warehouse ---------------------------------------------------------


def test_cluster_step_writes_one_row_per_district_and_measure_and_the_marts_read_it(session_home: Path) -> None:
    with duckdb.connect(str(session_home / "brecha.duckdb"), read_only=True) as con:
        n_districts = con.execute("SELECT count(*) FROM marts.mart_district_priorities").fetchone()[0]
        per_measure = dict(
            con.execute("SELECT measure, count(*) FROM marts.fct_district_clusters GROUP BY ALL").fetchall()
        )
        known = dict(
            con.execute("""SELECT 'internet_pct', count(internet_pct) FROM marts.mart_district_priorities
            UNION ALL SELECT 'divide_index', count(divide_index) FROM marts.mart_district_priorities
            UNION ALL SELECT 'gap_pp', count(gap_pp) FROM marts.mart_district_priorities""").fetchall()
        )
        wide = con.execute(
            "SELECT count(*), count(internet_pct_cluster), count(DISTINCT ubigeo) FROM marts.mart_district_clusters"
        ).fetchone()
        sources = dict(
            con.execute(
                "SELECT neighbour_source, count(*) FROM marts.fct_district_clusters "
                "WHERE measure = 'divide_index' GROUP BY ALL"
            ).fetchall()
        )
        no_polygon = con.execute("""SELECT count(*) FROM marts.mart_district_priorities p
            WHERE p.divide_index IS NOT NULL AND p.ubigeo NOT IN (SELECT ubigeo FROM marts.dim_district_boundaries)""").fetchone()[
            0
        ]
        glob = con.execute(
            "SELECT measure, moran_i, p_value, n_districts, n_high_high + n_low_low + n_high_low + n_low_high "
            "FROM marts.mart_spatial_autocorrelation ORDER BY measure"
        ).fetchall()
        significant = dict(
            con.execute(
                "SELECT measure, count(*) FROM marts.fct_district_clusters "
                "WHERE cluster <> 'not significant' GROUP BY ALL"
            ).fetchall()
        )
    assert per_measure == known and n_districts > 100
    assert wide[0] == wide[2] == n_districts and wide[1] == known["internet_pct"]
    assert sources.get("knn_no_boundary", 0) == no_polygon > 0  # the synthetic boundaries leave districts out
    assert sum(sources.values()) == known["divide_index"]
    assert [g[0] for g in glob] == ["divide_index", "gap_pp", "internet_pct"]
    for measure, moran_i, p_value, n, n_significant in glob:
        assert -1 <= moran_i <= 1 and 0 < p_value <= 1 and n == known[measure]
        assert n_significant == significant.get(measure, 0)


def test_cluster_step_is_deterministic_and_replaces_its_run(session_home: Path) -> None:
    from brecha.orchestrate import steps

    query = "SELECT * EXCLUDE (computed_at) FROM ml.district_clusters ORDER BY run_id, ubigeo, measure"
    with duckdb.connect(str(session_home / "brecha.duckdb"), read_only=True) as con:
        before = con.execute(query).df()
    steps.clusters(settings_for(session_home, seed=42))
    with duckdb.connect(str(session_home / "brecha.duckdb"), read_only=True) as con:
        after = con.execute(query).df()
    pd.testing.assert_frame_equal(before, after)


def test_false_discovery_rate_control_drops_the_chance_clusters_of_values_without_pattern() -> None:
    """A 20 x 20 grid of shuffled values has no spatial pattern: the earlier rule (esda's directed p <= 0.05 for each
    of 400 cells) still finds chance clusters; two-sided p-values under the Benjamini-Hochberg cut-off find none."""
    n = 20
    ids = [f"{r:02d}{c:02d}" for r in range(n) for c in range(n)]
    geoms = {u: box(int(u[2:]), -int(u[:2]) - 1, int(u[2:]) + 1, -int(u[:2])) for u in ids}
    lon = np.array([int(u[2:]) + 0.5 for u in ids])
    lat = np.array([-int(u[:2]) - 0.5 for u in ids])
    values = pd.Series(np.random.default_rng(3).normal(size=len(ids)), index=ids)
    table, summary = lisa_table(values, build_graph(ids, lon, lat, geoms), seed=42)
    assert summary["n_significant_directed"] >= 10  # ~5-10 % of 400 cells by chance
    assert summary["n_significant_directed"] > summary["n_significant_two_sided"] > summary["n_significant"]
    assert summary["n_significant"] <= 1 and summary["p_value_cutoff"] < 0.05
    assert (table["cluster"] != "not significant").sum() == summary["n_significant"]


def test_two_sided_p_values_keep_the_blocks_under_the_false_discovery_rate_cut_off() -> None:
    ids, lon, lat, geoms, values = grid()
    table, summary = lisa_table(values, build_graph(ids, lon, lat, geoms), seed=42)
    significant = table["cluster"] != "not significant"
    assert (table.loc[significant, "p_value"] <= summary["p_value_cutoff"]).all()
    assert (table.loc[~significant, "p_value"] > summary["p_value_cutoff"]).all()
    assert summary["n_significant"] == significant.sum() >= 12  # both 3 x 3 blocks' cores and more


def test_readme_cluster_figures_are_generated_from_the_marts(session_home: Path) -> None:
    from brecha_ml.clusters import README_END, README_START, readme_block, replace_readme_block

    with duckdb.connect(str(session_home / "brecha.duckdb"), read_only=True) as con:
        block = readme_block(con)
        glob = con.execute(
            "SELECT measure, n_high_high, n_low_low, n_significant_directed, run_id "
            "FROM marts.mart_spatial_autocorrelation ORDER BY measure"
        ).fetchall()
    for measure, hh, ll, directed, run_id in glob:
        row = next(x for x in block.splitlines() if x.startswith(f"| {measure} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[3:5] == [str(hh), str(ll)] and cells[-1] == str(directed)
        assert run_id in block
    text = f"before\n{README_START}\nold figures\n{README_END}\nafter\n"
    assert replace_readme_block(text, block) == f"before\n{block}\nafter\n"
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert readme.count(README_START) == 1 and readme.count(README_END) == 1  # the README holds the block
