"""`brecha serve`: every endpoint and error through FastAPI's TestClient, the what-if against the artifact's own
prediction, pick-up of a new publish and a rollback, and the real server over HTTP.

The API reads a serving copy published from a copy of the session's trained warehouse (the shared one stays as
it is); the artifacts are the session's own (linked, read only).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import duckdb
import httpx2 as httpx
import numpy as np
import pandas as pd
import pytest
from browser import dump_dom
from conftest import free_port, own_home
from fastapi.testclient import TestClient

from brecha.core.settings import current
from brecha.serve.api import create_app
from brecha.serve.api.app import ASSOCIATIONAL, MAX_BODY_BYTES, MAX_ECHO, MAX_INT, MAX_PAGE_SIZE

PROFILE = "marts.mart_district_profile"  # what the district endpoints answer from


@pytest.fixture(scope="module")
def served_home(pipeline_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home of our own: a copy of the trained warehouse, the session's artifacts, one publish."""
    from brecha.warehouse import publish

    home = pipeline_run.home
    with own_home(home, tmp_path_factory.mktemp("api_home"), artifacts="link") as own:
        publish.publish()
    return own


@pytest.fixture
def client(served_home: Path, use_home) -> TestClient:
    use_home(served_home)
    return TestClient(create_app(current()))


def mart(
    home: Path, sql: str = f"SELECT * FROM {PROFILE} WHERE has_reference_data", params: list | None = None
) -> pd.DataFrame:
    """Read the serving copy directly (closed again at once, so DuckDB keeps no stale instance of the path); by
    default the districts of the profile that have reference data (and so a prediction)."""
    with duckdb.connect(str(home / "serving" / "brecha.duckdb"), read_only=True) as con:
        return con.execute(sql, params or []).df()


def assert_error(r: httpx.Response, status: int, loc_last: str) -> str:
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert any(d["loc"][-1] == loc_last for d in detail), detail
    return " ".join(str(d["msg"]) for d in detail)


# --- districts -----------------------------------------------------------------------------------------------


def test_district_answer_matches_the_served_mart(client: TestClient, served_home: Path) -> None:
    rows = mart(served_home)
    known = rows[rows["internet_pct"].notna()].iloc[0]
    unknown = rows[rows["internet_pct"].isna()]  # none in the synthetic default; real files withhold some
    for row in [known, *([unknown.iloc[0]] if len(unknown) else [])]:
        r = client.get(f"/districts/{row['ubigeo']}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["district"] == row["district"] and body["department"] == row["department"]
        assert body["run_id"] == row["run_id"] and body["model_name"] == row["model_name"]
        for field, col in [
            ("predicted_internet_pct", "predicted_internet_pct"),
            ("lower_90", "lower_90"),
            ("upper_90", "upper_90"),
            ("divide_index", "divide_index"),
            ("population", "population"),
        ]:
            assert body[field] == pytest.approx(row[col])
        assert body["national_rank"] == row["national_rank"] and body["priority_rank"] == row["priority_rank"]
        assert body["segment_id"] == row["segment_id"] and body["segment_label"] == row["segment_label"]
        assert body["lower_90"] <= body["predicted_internet_pct"] <= body["upper_90"]
        if pd.isna(row["internet_pct"]):
            assert body["internet_pct"] is None and body["gap_pp"] is None
        else:
            assert body["internet_pct"] == pytest.approx(row["internet_pct"])
            assert body["gap_pp"] == pytest.approx(row["internet_pct"] - row["predicted_internet_pct"])
        expected_oof = bool(row["is_out_of_fold"]) if "is_out_of_fold" in rows.columns else None
        assert body["is_out_of_fold"] == expected_oof


def test_district_errors_name_the_ubigeo(client: TestClient) -> None:
    msg = assert_error(client.get("/districts/999999"), 404, "ubigeo")
    assert msg == "no hay un distrito con ubigeo 999999 en la copia publicada"  # Spanish unless asked otherwise
    for ask in ({"params": {"lang": "en"}}, {"headers": {"Accept-Language": "en-GB,en;q=0.9"}}):
        english = assert_error(client.get("/districts/999999", **ask), 404, "ubigeo")
        assert english == "no district with ubigeo 999999 in the served copy"
    assert_error(client.get("/districts/01O101"), 422, "ubigeo")  # not six digits
    assert_error(client.get("/districts/0101011"), 422, "ubigeo")


def test_every_district_of_the_profile_is_answered_with_its_polygon_or_marker(
    client: TestClient, served_home: Path
) -> None:
    rows = mart(served_home, f"SELECT * FROM {PROFILE}")
    seen, page = [], 1
    while True:
        body = client.get("/districts", params={"page_size": 200, "page": page}).json()
        seen += body["items"]
        if len(seen) >= body["total"]:
            break
        page += 1
    assert sorted(d["ubigeo"] for d in seen) == sorted(rows["ubigeo"]) and body["total"] == len(rows)
    assert all(d["map_shape"] in ("polygon", "marker") and d["marker_latitude"] is not None for d in seen)
    marker = rows[rows["map_shape"] == "marker"].iloc[0]
    one = client.get(f"/districts/{marker['ubigeo']}").json()
    assert one["map_shape"] == "marker" and one["map_note"] == marker["map_note"] and one["map_note"]
    assert one["households_offline"] == (
        None if pd.isna(marker["households_offline"]) else pytest.approx(marker["households_offline"])
    )
    polygon = rows[rows["map_shape"] == "polygon"].iloc[0]
    assert json.loads(client.get(f"/districts/{polygon['ubigeo']}").json()["more"]["geometry_geojson"])["type"] in (
        "Polygon",
        "MultiPolygon",
    )


def test_list_filters_paginate_and_match_sql(client: TestClient, served_home: Path) -> None:
    rows = mart(served_home, f"SELECT * FROM {PROFILE}")  # every district, those without a rank last
    dept = rows["department"].value_counts().index[0]
    want = rows[rows["department"] == dept].sort_values(["priority_rank", "ubigeo"])
    r = client.get("/districts", params={"department": dept.lower(), "page_size": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == len(want) and [d["ubigeo"] for d in body["items"]] == list(want["ubigeo"][:5])
    page2 = client.get("/districts", params={"department": dept, "page_size": 5, "page": 2}).json()
    assert [d["ubigeo"] for d in page2["items"]] == list(want["ubigeo"][5:10])

    province = want["province"].iloc[0]
    seg = int(want["segment_id"].dropna().iloc[0])
    r = client.get(
        "/districts",
        params={
            "department": dept,
            "province": province,
            "segment_id": seg,
            "rank_by": "divide",
            "rank_min": 1,
            "rank_max": 1500,
            "page_size": 200,
        },
    )
    got = r.json()
    sel = want[(want["province"] == province) & (want["segment_id"] == seg) & want["national_rank"].between(1, 1500)]
    assert got["total"] == len(sel)
    assert [d["ubigeo"] for d in got["items"]] == list(sel.sort_values(["national_rank", "ubigeo"])["ubigeo"])

    top = client.get("/districts", params={"rank_min": 1, "rank_max": 10}).json()
    assert [d["priority_rank"] for d in top["items"]] == list(range(1, 11)) and top["total"] == 10


def test_list_errors(client: TestClient) -> None:
    assert_error(client.get("/districts", params={"page_size": MAX_PAGE_SIZE + 1}), 422, "page_size")
    assert_error(client.get("/districts", params={"page": 0}), 422, "page")
    assert "no está en la copia publicada" in assert_error(
        client.get("/districts", params={"department": "ATLANTIS"}), 422, "department"
    )
    assert "is not in the served copy" in assert_error(
        client.get("/districts", params={"department": "ATLANTIS", "lang": "en"}), 422, "department"
    )
    assert_error(client.get("/districts", params={"province": "NOWHERE"}), 422, "province")
    assert_error(client.get("/districts", params={"segment_id": 99}), 422, "segment_id")
    assert_error(client.get("/districts", params={"segment_id": "two"}), 422, "segment_id")
    assert_error(client.get("/districts", params={"rank_min": 10, "rank_max": 2}), 422, "rank_min")
    assert_error(client.get("/districts", params={"rank_min": -1}), 422, "rank_min")
    assert_error(client.get("/districts", params={"rank_by": "ubigeo; drop table x"}), 422, "rank_by")


def test_request_values_never_reach_sql_as_text(client: TestClient, served_home: Path) -> None:
    dept = mart(served_home)["department"].iloc[0]
    for attack in [f"{dept}' OR '1'='1", f"{dept}'; DROP TABLE {PROFILE}; --", "' OR 1=1 --"]:
        assert_error(client.get("/districts", params={"department": attack}), 422, "department")
    assert client.get("/districts", params={"page_size": 1}).json()["total"] == len(
        mart(served_home, f"SELECT * FROM {PROFILE}")
    )


# --- model and what-if ---------------------------------------------------------------------------------------


def test_model_endpoint_reports_the_served_run(client: TestClient, served_home: Path) -> None:
    body = client.get("/model").json()
    run_id = mart(served_home)["run_id"].iloc[0]
    runs = mart(served_home, "SELECT * FROM ml.model_runs WHERE run_id = ?", [run_id])
    sel = runs[runs["selected"]].iloc[0]
    assert body["run_id"] == run_id and body["model_name"] == sel["model_name"]
    assert body["metrics"]["cv_mae"] == pytest.approx(sel["cv_mae"])
    assert body["metrics"]["interval_coverage"] == pytest.approx(sel["interval_coverage"])
    assert {c["model_name"] for c in body["candidates"]} == set(runs["model_name"])
    config = json.loads((Path(sel["artifact_path"]) / "model_config.json").read_text())
    assert [f["name"] for f in body["features"]] == config["features"]
    share = {f["name"]: f for f in body["features"]}["pct_centres_4g"]
    assert (share["minimum"], share["maximum"], share["bounds"]) == (0, 100, "natural")
    assert body["snapshot"]["run_id"] == run_id
    schema = client.get("/openapi.json").json()
    assert {"/districts/{ubigeo}", "/districts", "/model", "/districts/{ubigeo}/whatif"} <= set(schema["paths"])
    overrides = schema["components"]["schemas"]["Overrides"]
    assert overrides["additionalProperties"] is False
    assert overrides["properties"]["pct_centres_4g"]["anyOf"][0]["maximum"] == 100
    observed = next(f for f in body["features"] if f["bounds"] == "observed")  # the data's range, in the schema
    number = overrides["properties"][observed["name"]]["anyOf"][0]
    assert (number["minimum"], number["maximum"]) == (observed["minimum"], observed["maximum"])


def test_whatif_is_the_published_prediction_moved_by_the_artifacts_own_change(
    client: TestClient, served_home: Path
) -> None:
    """Baseline = the district's published prediction and interval (the mart, the lookup); scenario = baseline +
    (the run's selected artifact, applied outside the API, at the modified features − at the district's own)."""
    from brecha_ml import artifacts
    from brecha_ml.features import build_feature_table, load_marts
    from brecha_ml.predict import apply_regressor

    rows = mart(served_home)
    published = rows.set_index("ubigeo")
    run_id = rows["run_id"].iloc[0]
    sel = mart(served_home, "SELECT artifact_path FROM ml.model_runs WHERE run_id = ? AND selected", [run_id])
    model, config = artifacts.load_model(Path(sel["artifact_path"].iloc[0]))
    with duckdb.connect(str(served_home / "serving" / "brecha.duckdb"), read_only=True) as con:
        marts = load_marts(con)
        feats = build_feature_table(marts)
    department_of = marts.set_index("ubigeo")["department_code"]
    low4g = feats[feats["pct_centres_4g"] < 30].index[:2]
    assert len(low4g), "expected districts with little 4G in the synthetic data"
    for ubigeo in low4g:
        overrides = {"pct_centres_4g": 80.0, "pct_centres_3g_plus": 90.0}
        r = client.post(f"/districts/{ubigeo}/whatif", json={"overrides": overrides})
        assert r.status_code == 200, r.text
        body = r.json()
        X = feats.loc[[ubigeo, ubigeo], config["features"]].copy()  # noqa: N806
        X.index = ["baseline", "scenario"]
        for k, val in overrides.items():
            X.loc["scenario", k] = val
        want = apply_regressor(model, X.astype(float), departments=pd.Series([department_of[ubigeo]] * 2))
        change = want.loc["scenario", "predicted_internet_pct"] - want.loc["baseline", "predicted_internet_pct"]
        assert body["model_change_pp"] == pytest.approx(change, abs=1e-9)
        for k in ("predicted_internet_pct", "lower_90", "upper_90"):
            assert body["baseline"][k] == pytest.approx(published.loc[ubigeo, k], abs=1e-9), k
            assert body["scenario"][k] == pytest.approx(
                min(100, max(0, published.loc[ubigeo, k] + change)), abs=1e-9
            ), k
        assert body["difference_pp"] == pytest.approx(
            body["scenario"]["predicted_internet_pct"] - body["baseline"]["predicted_internet_pct"], abs=1e-9
        )
        assert body["note"].startswith("Asociativo, no causal")  # Spanish by default
        english = client.post(f"/districts/{ubigeo}/whatif", params={"lang": "en"}, json={"overrides": overrides})
        assert english.json()["note"] == ASSOCIATIONAL and "not causal" in ASSOCIATIONAL
        assert body["recomputed"] == []  # both overrides given explicitly: nothing to recompute
        changed = {o["feature"]: o for o in body["overrides"]}
        assert changed["pct_centres_4g"]["baseline_value"] == pytest.approx(feats.loc[ubigeo, "pct_centres_4g"])
        assert changed["pct_centres_4g"]["scenario_value"] == 80.0


def test_whatif_baseline_equals_the_lookup_for_every_district_tried(client: TestClient, served_home: Path) -> None:
    """Out of fold (census share known) or not, the what-if starts from the number the lookup shows; a scenario
    that sets a feature to the district's own value answers that number unchanged."""
    rows = mart(served_home)
    # every 97th district out of fold, and the first five scored by the final model where the copy has any
    tried = pd.concat([rows[rows["is_out_of_fold"]].iloc[::97], rows[~rows["is_out_of_fold"]].iloc[:5]])
    assert len(tried) >= 20
    feature = "electricity_pct"
    own = _feature(served_home, None, feature)
    for ubigeo in tried["ubigeo"]:
        lookup = client.get(f"/districts/{ubigeo}").json()
        value = own.loc[ubigeo] if np.isfinite(own.loc[ubigeo]) else 50.0
        body = client.post(f"/districts/{ubigeo}/whatif", json={"overrides": {feature: value}}).json()
        for k in ("predicted_internet_pct", "lower_90", "upper_90"):
            assert body["baseline"][k] == lookup[k], (ubigeo, k)
            if np.isfinite(own.loc[ubigeo]):
                # float32 networks: the same row in a batch of two rounds within 1e-6 pp
                assert body["scenario"][k] == pytest.approx(lookup[k], abs=1e-6), (ubigeo, k)


def _all_districts_whatif(served_home: Path, overrides) -> pd.DataFrame:
    """Every district of the serving copy through the route's own functions at once (scenario_features,
    predict_frame, from_published): published baseline and scenario, index ubigeo."""
    from brecha_ml.predict import predict_frame
    from brecha_ml.whatif import INTERVAL, from_published, scenario_features

    rows = mart(served_home).set_index("ubigeo")
    marts, feats = _served(served_home)
    feats = feats.loc[rows.index]
    run_id = rows["run_id"].iloc[0]
    deps = marts.set_index("ubigeo").loc[rows.index, "department_code"]
    scen = scenario_features(feats, overrides(feats))
    base_model = predict_frame(run_id, feats, departments=deps)
    scen_model = predict_frame(run_id, scen.features, departments=deps)
    moved = from_published(rows[INTERVAL], base_model, scen_model)
    return (
        rows[INTERVAL]
        .join(moved.add_suffix("_scenario"))
        .assign(difference_pp=lambda d: d["predicted_internet_pct_scenario"] - d["predicted_internet_pct"])
    )


@pytest.fixture(params=["synthetic", "real"])
def whatif_home(request: pytest.FixtureRequest, use_home) -> Path:
    """The synthetic served copy, then the real extracts' (the session's real run; skipped without ../shared)."""
    return use_home(request.getfixturevalue("served_home" if request.param == "synthetic" else "real_run_home"))


@pytest.mark.parametrize(("feature", "step"), [("electricity_pct", 10.0), ("poverty_pct", -10.0)])
def test_whatif_effects_are_monotone_over_all_districts(whatif_home: Path, feature: str, step: float) -> None:
    """More electricity or less poverty never lowers any district's predicted share (the served model's own
    behaviour, every district of the served copy); the route answers what the batch computes."""
    out = _all_districts_whatif(whatif_home, lambda f: {feature: (f[feature] + step).clip(0, 100)})
    wrong = out[out["difference_pp"] < -1e-6]
    assert wrong.empty, (
        f"{len(wrong)} of {len(out)} districts move the wrong way when {feature} changes by "
        f"{step:+g} pp, e.g.\n{wrong.sort_values('difference_pp').head()}"
    )
    client = TestClient(create_app(current()))
    ubigeo = next(u for u in out.index if np.isfinite(_feature(whatif_home, u, feature)))
    own = client.get(f"/districts/{ubigeo}").json()
    body = client.post(
        f"/districts/{ubigeo}/whatif",
        json={"overrides": {feature: float(np.clip(_feature(whatif_home, ubigeo, feature) + step, 0, 100))}},
    ).json()
    assert body["baseline"]["predicted_internet_pct"] == own["predicted_internet_pct"]
    assert body["difference_pp"] == pytest.approx(out.loc[ubigeo, "difference_pp"], abs=1e-4)


def test_whatif_full_electricity_moves_little(whatif_home: Path) -> None:
    """Districts at about 93.5 % electricity (91-96 %) raised to 100 %: the predicted share rises by at most 1 pp
    on average (the audit found +2.5 pp, driven by the rich districts that happen to be fully electrified)."""
    near = _feature(whatif_home, None, "electricity_pct").between(91, 96)
    assert near.sum() >= 20, "expected districts near 93.5 % electricity"
    out = _all_districts_whatif(whatif_home, lambda f: {"electricity_pct": f["electricity_pct"].where(~near, 100.0)})
    effect = out.loc[near[near].index, "difference_pp"]
    assert effect.mean() <= 1.0, f"{near.sum()} districts: mean {effect.mean():+.2f} pp, max {effect.max():+.2f} pp"


def test_whatif_baseline_equals_the_lookup_on_the_real_extracts(real_run_home: Path, use_home) -> None:
    """Every 20th district of the real run (94): the what-if's baseline is the lookup's prediction and interval."""
    use_home(real_run_home)
    client = TestClient(create_app(current()))
    ubigeos = mart(real_run_home)["ubigeo"].iloc[::20]
    for ubigeo in ubigeos:
        lookup = client.get(f"/districts/{ubigeo}").json()
        body = client.post(f"/districts/{ubigeo}/whatif", json={"overrides": {"electricity_pct": 100.0}}).json()
        for k in ("predicted_internet_pct", "lower_90", "upper_90"):
            assert body["baseline"][k] == lookup[k], (ubigeo, k)


def test_whatif_recomputes_derived_features_or_names_them(client: TestClient, served_home: Path) -> None:
    """Features computed from an overridden one follow it (density with population, extreme poverty within
    poverty); composites computed outside the warehouse are held and named."""
    model = client.get("/model").json()
    used = {f["name"] for f in model["features"]}
    rows = mart(served_home)
    ubigeo = rows["ubigeo"].iloc[3]
    if {"log_population", "log_density"} <= used:
        base = _feature(served_home, ubigeo, "log_population")
        body = client.post(f"/districts/{ubigeo}/whatif", json={"overrides": {"log_population": base + 1}}).json()
        got = {r["feature"]: r for r in body["recomputed"]}
        assert got["log_density"]["scenario_value"] == pytest.approx(got["log_density"]["baseline_value"] + 1)
    if {"poverty_pct", "extreme_poverty_pct"} <= used:
        body = client.post(f"/districts/{ubigeo}/whatif", json={"overrides": {"poverty_pct": 0.0}}).json()
        got = {r["feature"]: r for r in body["recomputed"]}
        assert got["extreme_poverty_pct"]["scenario_value"] == 0.0
        held = {h["feature"] for h in body["held_fixed"]}
        assert held == {"food_vulnerability_pct", "idh"} & used
        # given explicitly, a feature is the user's, not recomputed
        both = client.post(
            f"/districts/{ubigeo}/whatif", json={"overrides": {"poverty_pct": 0.0, "extreme_poverty_pct": 0.0}}
        ).json()
        assert "extreme_poverty_pct" not in {r["feature"] for r in both["recomputed"]}


@lru_cache(maxsize=2)
def _served(home: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(marts, feature table) of the serving copy, index ubigeo, built once per home."""
    from brecha_ml.features import build_feature_table, load_marts

    with duckdb.connect(str(home / "serving" / "brecha.duckdb"), read_only=True) as con:
        marts = load_marts(con)
    return marts, build_feature_table(marts)


def _feature(home: Path, ubigeo: str | None, name: str):
    col = _served(home)[1][name]
    return col if ubigeo is None else float(col.loc[ubigeo])


def test_concurrent_whatifs_batched_together_get_their_own_answers(client: TestClient, served_home: Path) -> None:
    """Concurrent what-ifs share model calls (brecha.serve.api.batching); each must get exactly its own rows."""
    from concurrent.futures import ThreadPoolExecutor

    ubigeos = list(mart(served_home)["ubigeo"].iloc[:6])
    asks = [(ubigeos[i % 6], float(i * 4)) for i in range(24)]

    def ask(a: tuple[str, float]) -> dict:
        return client.post(f"/districts/{a[0]}/whatif", json={"overrides": {"pct_centres_4g": a[1]}}).json()

    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, asks))
    for a, got in zip(asks, together, strict=True):
        alone = ask(a)
        assert got["ubigeo"] == a[0] and got["overrides"][0]["scenario_value"] == a[1]
        for part in ("baseline", "scenario"):
            for k in ("predicted_internet_pct", "lower_90", "upper_90"):  # float32 networks: batch rounding
                assert got[part][k] == pytest.approx(alone[part][k], abs=1e-4)


def test_whatif_errors_name_the_field(client: TestClient, served_home: Path) -> None:
    ubigeo = mart(served_home)["ubigeo"].iloc[0]
    url = f"/districts/{ubigeo}/whatif"
    assert_error(client.post("/districts/999999/whatif", json={"overrides": {"pct_centres_4g": 50}}), 404, "ubigeo")
    assert "variable desconocida 'broadband_magic'" in assert_error(
        client.post(url, json={"overrides": {"broadband_magic": 50}}), 422, "broadband_magic"
    )
    assert "unknown feature" in assert_error(
        client.post(url, params={"lang": "en"}, json={"overrides": {"broadband_magic": 50}}), 422, "broadband_magic"
    )
    assert_error(client.post(url, json={"overrides": {"pct_centres_4g": 120}}), 422, "pct_centres_4g")
    assert_error(client.post(url, json={"overrides": {"pct_centres_4g": -1}}), 422, "pct_centres_4g")
    assert_error(client.post(url, json={"overrides": {"idh": 1.5}}), 422, "idh")
    assert_error(client.post(url, json={"overrides": {"pct_centres_4g": "lots"}}), 422, "pct_centres_4g")
    assert_error(client.post(url, json={"overrides": {}}), 422, "overrides")
    assert_error(client.post(url, json={}), 422, "overrides")
    r = client.post(
        url, content=b'{"overrides": {"pct_centres_4g": NaN}}', headers={"content-type": "application/json"}
    )
    assert_error(r, 422, "pct_centres_4g")
    # a feature bounded by the data: just outside the observed range is refused, its maximum is accepted
    feats = {f["name"]: f for f in client.get("/model").json()["features"]}
    observed = next(f for f in feats.values() if f["bounds"] == "observed")
    name, top = observed["name"], observed["maximum"]
    msg = assert_error(client.post(url, json={"overrides": {name: top + abs(top) * 0.01 + 1}}), 422, name)
    assert "fuera de su rango válido" in msg
    english = client.post(url, json={"overrides": {name: top + abs(top) * 0.01 + 1}}, headers={"Accept-Language": "en"})
    assert "outside its valid range" in assert_error(english, 422, name)
    assert client.post(url, json={"overrides": {name: top}}).status_code == 200


# --- publish and rollback without restart ---------------------------------------------------------------------


def test_new_publish_and_rollback_are_picked_up_without_restart(client: TestClient, served_home: Path) -> None:
    from brecha.warehouse import publish

    ubigeo = mart(served_home)["ubigeo"].iloc[0]
    before = client.get(f"/districts/{ubigeo}").json()
    first = client.get("/health").json()["snapshot"]["snapshot_id"]
    with duckdb.connect(str(served_home / "brecha.duckdb")) as con:  # a changed warehouse, then publish
        con.execute(f"UPDATE {PROFILE} SET district = 'RENAMED FOR THE TEST' WHERE ubigeo = ?", [ubigeo])
    try:
        second = publish.publish()
        assert client.get("/health").json()["snapshot"]["snapshot_id"] == second.snapshot_id != first
        renamed = client.get(f"/districts/{ubigeo}")
        assert renamed.json()["district"] == "RENAMED FOR THE TEST"
        assert renamed.headers["X-Brecha-Snapshot"] == second.snapshot_id  # every answer names its snapshot
        rolled = publish.rollback()
        assert rolled.snapshot_id == first
        assert client.get("/health").json()["snapshot"]["snapshot_id"] == first
        assert client.get(f"/districts/{ubigeo}").json() == before
    finally:
        with duckdb.connect(str(served_home / "brecha.duckdb")) as con:
            con.execute(f"UPDATE {PROFILE} SET district = ? WHERE ubigeo = ?", [before["district"], ubigeo])


def test_without_a_serving_copy_the_api_says_what_to_run(brecha_home: Path) -> None:
    r = TestClient(create_app(current())).get("/districts/010101")
    assert r.status_code == 503 and "brecha publish" in r.json()["detail"][0]["msg"]


# --- abuse: never a 5xx, never a large echo, never a server path ----------------------------------------------


def test_the_root_leads_to_the_docs_page_whose_assets_are_served_here(client: TestClient) -> None:
    root = client.get("/", follow_redirects=False)
    assert root.status_code in (302, 307) and root.headers["location"] == "/docs"
    page = client.get("/docs").text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(a.startswith("/") for a in assets), assets  # nothing from another host (no CDN)
    for asset in assets:
        assert client.get(asset).status_code == 200, asset


def test_integers_past_their_range_are_422_or_an_empty_page(client: TestClient) -> None:
    for field, value in [
        ("page", 10**18),
        ("page", 2**64),
        ("page", 10**40),
        ("page", -1),
        ("page", MAX_INT + 1),
        ("page_size", -5),
        ("page_size", 10**20),
        ("rank_min", 2**63),
        ("rank_max", 10**19),
        ("rank_min", -(2**70)),
        ("segment_id", 2**64),
        ("segment_id", -1),
    ]:
        assert_error(client.get("/districts", params={field: str(value)}), 422, field)
    assert_error(client.get("/districts", params={"page": "9" * 5000}), 422, "page")  # past Python's int parsing
    last = client.get("/districts", params={"page": MAX_INT, "page_size": MAX_PAGE_SIZE})  # the largest page asked
    assert last.status_code == 200 and last.json()["items"] == [] and last.json()["total"] > 0
    assert client.get("/districts", params={"rank_min": MAX_INT, "rank_by": "divide"}).json()["total"] == 0


def test_whatif_numbers_must_be_json_numbers(client: TestClient, served_home: Path) -> None:
    url = f"/districts/{mart(served_home)['ubigeo'].iloc[0]}/whatif"
    for value in ["80", "1e1", True, False, [80], {"value": 80}]:
        r = client.post(url, json={"overrides": {"pct_centres_4g": value}})
        assert_error(r, 422, "pct_centres_4g")
    for value in [1e400, -1e400, 10**400]:  # JSON numbers too large for a float, and a 400-digit integer
        r = client.post(
            url,
            content=json.dumps({"overrides": {"pct_centres_4g": value}}).replace("Infinity", "1e400"),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422, r.text
    for value in [80, 80.0]:  # an integer is a JSON number
        assert client.post(url, json={"overrides": {"pct_centres_4g": value}}).status_code == 200
    # bodies the JSON parser cannot read: 400 in the shape and language of the other errors
    for body in [
        b'{"overrides": {"pct_centres_4g": "\xff"}}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"overrides": {"pct_centres_4g": ' + b"9" * 5000 + b"}}",
    ]:
        msg = assert_error(client.post(url, content=body, headers={"content-type": "application/json"}), 400, "body")
        assert msg.startswith("el cuerpo de la solicitud no es un JSON legible"), msg
    assert client.get("/nowhere").status_code == 404  # an unknown route keeps FastAPI's answer


def test_a_large_body_is_refused_unparsed_and_errors_echo_little(client: TestClient, served_home: Path) -> None:
    url = f"/districts/{mart(served_home)['ubigeo'].iloc[0]}/whatif"
    garbage = b"{" * (20 * 1024 * 1024)  # 20 MB of invalid JSON: a parser would answer 422 or 400, not 413
    r = client.post(url, content=garbage, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["detail"][0]["msg"].startswith("el cuerpo de la solicitud supera")
    r = client.post(url, params={"lang": "en"}, content=garbage, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than the limit of 1 MB" in r.json()["detail"][0]["msg"]

    def chunks():  # no Content-Length: refused once the bytes received pass the limit
        for _ in range(20):
            yield b"[" * (1024 * 1024)

    assert client.post(url, content=chunks(), headers={"content-type": "application/json"}).status_code == 413
    at_limit = json.dumps({"overrides": {"pct_centres_4g": 50}}).encode().ljust(MAX_BODY_BYTES)  # trailing blanks
    assert client.post(url, content=at_limit, headers={"content-type": "application/json"}).status_code == 200

    big = "x" * 100_000
    for r, loc in [
        (client.post(url, json={"overrides": {"pct_centres_4g": big}}), "pct_centres_4g"),
        (client.post(url, json={"overrides": {big: 1}}), big[:MAX_ECHO] + "…"),
        (client.post(url, json={"overrides": [big]}), "overrides"),
        (
            client.post(
                url,
                content=json.dumps({"overrides": {"pct_centres_4g": [float("nan")] * 1000}}),
                headers={"content-type": "application/json"},
            ),
            "pct_centres_4g",
        ),
        (client.get(f"/districts/{big[:20_000]}"), "ubigeo"),  # URLs: within the client's limit
        (client.get("/districts", params={"department": big[:20_000]}), "department"),
        (client.get("/districts", params={"page": big[:20_000]}), "page"),
    ]:
        assert_error(r, 422, loc)
        assert len(r.content) < 2_000, (loc[:20], len(r.content), r.text[:300])
    short = client.post(url, json={"overrides": {"pct_centres_4g": "80"}}).json()["detail"][0]
    assert short["input"] == "80"  # a short input is still echoed as it came


def test_a_ubigeo_that_lost_its_leading_zero_is_padded_like_landing(client: TestClient, served_home: Path) -> None:
    from brecha.serve.api.app import UBIGEO_COLUMN

    assert UBIGEO_COLUMN.pad == 6  # the reference's code column, which landing left-pads
    rows = mart(served_home)
    ubigeo = rows.loc[rows["ubigeo"].str.startswith("0"), "ubigeo"].iloc[0]
    short = ubigeo.lstrip("0")
    r = client.get(f"/districts/{short}")
    assert r.status_code == 200 and r.json() == client.get(f"/districts/{ubigeo}").json()
    w = client.post(f"/districts/{short}/whatif", json={"overrides": {"pct_centres_4g": 50}})
    assert w.status_code == 200 and w.json()["ubigeo"] == ubigeo
    assert (
        assert_error(client.get("/districts/7", params={"lang": "en"}), 404, "ubigeo")
        == "no district with ubigeo 000007 in the served copy"
    )
    for bad in ("-10101", "10 101", "1e5", "0x1F"):
        assert_error(client.get(f"/districts/{bad}"), 422, "ubigeo")


def _no_server_path(r: httpx.Response, *homes: Path) -> None:
    from brecha.core.settings import PROJECT_ROOT

    for where in {str(h) for h in homes} | {str(h.resolve()) for h in homes} | {str(PROJECT_ROOT), "/tmp/"}:
        assert where not in r.text, f"{r.request.url}: {where} in {r.text[:500]}"


def test_no_absolute_server_path_in_any_answer(client: TestClient, served_home: Path) -> None:
    ubigeo = mart(served_home)["ubigeo"].iloc[0]
    answers = [
        client.get("/health"),
        client.get("/openapi.json"),
        client.get("/model"),
        client.get(f"/districts/{ubigeo}"),
        client.get("/districts/999999"),
        client.get("/districts", params={"department": "ATLANTIS"}),
        client.post(f"/districts/{ubigeo}/whatif", json={"overrides": {"pct_centres_4g": 500}}),
    ]
    for r in answers:
        _no_server_path(r, served_home)
    assert answers[0].json()["serving_db"] == "serving/brecha.duckdb"
    assert "serving/brecha.duckdb" in answers[1].json()["info"]["description"]


def test_a_copied_home_without_its_artifacts_answers_503(served_home: Path, use_home, tmp_path: Path) -> None:
    """A home copied without artifacts/: ml.model_runs still names the original's artifact folder (which exists),
    but the model is loaded from this home's: the what-if and /model say what is missing; districts still answer."""
    import shutil

    copy = use_home(tmp_path / "copied_home")
    shutil.copytree(served_home / "serving", copy / "serving")
    client = TestClient(create_app(current()))
    ubigeo = mart(copy)["ubigeo"].iloc[0]
    assert client.get(f"/districts/{ubigeo}").status_code == 200
    for lang, words in [(None, "falta o no se puede leer el artefacto"), ("en", "is missing or unreadable")]:
        params = {"lang": lang} if lang else {}
        for r in (
            client.post(f"/districts/{ubigeo}/whatif", params=params, json={"overrides": {"pct_centres_4g": 50}}),
            client.get("/model", params=params),
        ):
            assert r.status_code == 503, r.text
            msg = r.json()["detail"][0]["msg"]
            assert words in msg and "artifacts/" in msg and "brecha train" in msg, msg
            _no_server_path(r, copy, served_home)
    empty = TestClient(create_app(current()))  # no serving copy at all: 503 naming the relative path
    shutil.rmtree(copy / "serving")
    r = empty.get("/health")
    assert r.status_code == 503 and "serving/brecha.duckdb" in r.json()["detail"][0]["msg"]
    _no_server_path(r, copy)
    (copy / "serving").mkdir()
    (copy / "serving" / "brecha.duckdb").write_bytes(b"not a database" * 100)
    r = empty.get("/districts/010101")
    assert r.status_code == 503 and "no se puede abrir" in r.json()["detail"][0]["msg"]
    _no_server_path(r, copy)


# --- the real server ------------------------------------------------------------------------------------------


def test_brecha_serve_answers_over_http(served_home: Path, use_home, tmp_path: Path) -> None:
    """The real server: endpoints over HTTP, then a publish and a rollback while clients keep asking."""
    from concurrent.futures import ThreadPoolExecutor

    from brecha.warehouse import publish

    use_home(served_home)
    port = free_port()
    brecha = str(Path(sys.executable).with_name("brecha"))
    env = {**os.environ, "BRECHA_HOME": str(served_home)}
    proc = subprocess.Popen(
        [brecha, "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
                pytest.fail(f"`brecha serve` did not come up on port {port}: {out[-2000:]}")
            time.sleep(0.3)
        rows = mart(served_home)
        ubigeo = rows["ubigeo"].iloc[0]
        r = httpx.get(f"{base}/districts/{ubigeo}")
        assert r.status_code == 200 and r.json()["district"] == rows["district"].iloc[0]
        w = httpx.post(f"{base}/districts/{ubigeo}/whatif", json={"overrides": {"pct_centres_4g": 90}})
        assert w.status_code == 200 and np.isfinite(w.json()["difference_pp"])
        assert httpx.get(f"{base}/districts/000000").status_code == 404
        assert httpx.get(f"{base}/districts", params={"page_size": 10_000}).status_code == 422
        assert httpx.get(f"{base}/model").json()["run_id"] == rows["run_id"].iloc[0]
        assert httpx.get(f"{base}/openapi.json").json()["info"]["title"] == "Brecha prediction API"
        # the Swagger UI page renders offline (headless Chromium, every other host unreachable)
        dom = dump_dom(f"{base}/", tmp_path)
        assert "Brecha prediction API" in dom and "/districts/{ubigeo}/whatif" in dom, dom[-2000:]

        def ask(i: int) -> list[str]:
            bad = []
            with httpx.Client(base_url=base, timeout=30) as c:
                for k in range(30):
                    u = rows["ubigeo"].iloc[(i * 30 + k) % len(rows)]
                    r = (
                        c.get(f"/districts/{u}")
                        if k % 2
                        else c.post(f"/districts/{u}/whatif", json={"overrides": {"pct_centres_4g": k}})
                    )
                    if r.status_code != 200:
                        bad.append(f"{r.status_code} {r.text[:200]}")
            return bad

        def served_soon(snapshot_id: str) -> bool:
            """While one request prepares a new version, concurrent ones still answer from the previous one."""
            deadline = time.monotonic() + 60
            while httpx.get(f"{base}/health").json()["snapshot"]["snapshot_id"] != snapshot_id:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.1)
            return True

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(ask, i) for i in range(4)]
            second = publish.publish().snapshot_id
            assert served_soon(second)
            back = publish.rollback().snapshot_id  # the snapshot published before `second`
            errors = [e for f in futures for e in f.result()]
        assert errors == []
        assert back != second and served_soon(back)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_language_and_number_style() -> None:
    from brecha.serve.words import number, pick, signed

    assert [pick(x) for x in (None, "", "en", "en-GB,en;q=0.9", "fr-FR, es;q=0.8", "de")] == [
        "es",
        "es",
        "en",
        "en",
        "es",
        "es",
    ]
    assert number(12345.678, 1) == "12\u202f345,7" and number(12345.678, 1, lang="en") == "12,345.7"
    assert signed(-2.04, 1, " pp") == "−2,0 pp" and signed(0.04, 1) == "0,0" and number(float("nan")) == "–"
