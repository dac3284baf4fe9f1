"""ml/: spatial CV, predictions for every district, ml.* tables, artifact reload, determinism."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from brecha.config import paths
from ml.config import FAST
from ml.features import FEATURE_NAMES, FEATURES, build_feature_table, load_marts
from ml.spatial_cv import fold_indices
from ml.store import DDL

TABLES = list(DDL)


def _copy_home(built_home: Path, dest: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the built synthetic warehouse (so FAST trainings never touch the session home)."""
    dest.mkdir(parents=True)
    shutil.copy(built_home / "brecha.duckdb", dest / "brecha.duckdb")
    monkeypatch.setenv("BRECHA_HOME", str(dest))
    return dest


def _predictions(home: Path, run_id: str) -> pd.DataFrame:
    with duckdb.connect(str(home / "brecha.duckdb"), read_only=True) as con:
        return con.execute("select * from ml.district_predictions where run_id = ? order by ubigeo", [run_id]).df()


def test_every_feature_is_documented() -> None:
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES))
    assert all(f.description.strip() for f in FEATURES)
    assert "internet_pct" not in FEATURE_NAMES


def test_spatial_folds_never_share_a_department(built_home: Path, use_home) -> None:
    use_home(built_home)
    with duckdb.connect(str(paths().db), read_only=True) as con:
        marts = load_marts(con)
    known = marts["internet_pct"].notna()
    groups = marts.loc[known, "department_code"].to_numpy()
    folds = fold_indices(marts[known], groups, 5)
    assert len(folds) == 5
    seen_test = np.concatenate([te for _, te in folds])
    assert sorted(seen_test) == list(range(known.sum()))  # every district tested exactly once
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])


def test_features_do_not_use_the_target(built_home: Path, use_home) -> None:
    use_home(built_home)
    with duckdb.connect(str(paths().db), read_only=True) as con:
        marts = load_marts(con)
    before = build_feature_table(marts)
    scrambled = marts.assign(internet_pct=np.random.default_rng(0).permutation(marts["internet_pct"].to_numpy()))
    pd.testing.assert_frame_equal(before, build_feature_table(scrambled))


def test_train_fills_tables_and_predicts_every_district(trained_home) -> None:
    home, result = trained_home
    with duckdb.connect(str(home / "brecha.duckdb"), read_only=True) as con:
        n_districts = con.execute("select count(*) from marts.dim_districts").fetchone()[0]
        for table in TABLES:
            n = con.execute(f"select count(*) from ml.{table} where run_id = ?", [result.run_id]).fetchone()[0]
            assert n > 0, f"ml.{table} has no row for run {result.run_id}"
        runs = con.execute("select model_name, model_family, selected, cv_mae, artifact_path from ml.model_runs "
                           "where run_id = ?", [result.run_id]).df()
        folds = con.execute("select distinct model_name, fold from ml.model_fold_metrics where run_id = ?",
                            [result.run_id]).df()
        profiles = con.execute("select * from ml.segment_profiles where run_id = ?", [result.run_id]).df()
    preds = _predictions(home, result.run_id)
    assert len(preds) == preds["ubigeo"].nunique() == n_districts
    assert preds["predicted_internet_pct"].between(0, 100).all()
    assert (preds["lower_90"] <= preds["predicted_internet_pct"]).all()
    assert (preds["predicted_internet_pct"] <= preds["upper_90"]).all()
    assert sorted(preds["priority_rank"]) == list(range(1, n_districts + 1))
    known = preds["actual_internet_pct"].notna()
    np.testing.assert_allclose(preds.loc[known, "gap_pp"],
                               preds.loc[known, "actual_internet_pct"] - preds.loc[known, "predicted_internet_pct"])
    assert {"sklearn", "torch"} <= set(runs["model_family"])
    assert runs["selected"].sum() == 1
    best = runs.loc[runs["selected"]].iloc[0]
    assert best["cv_mae"] == runs["cv_mae"].min() and best["model_name"] == result.selected_model
    for path in runs["artifact_path"]:
        d = Path(path)
        assert (d / "model_config.json").is_file() and (d / "metrics.json").is_file()
        assert (d / "model.pkl").is_file() or (d / "model.pt").is_file()
    assert len(folds) == len(runs) * 5
    assert 3 <= len(profiles) <= 8 and profiles["description"].str.len().gt(20).all()


def test_predict_reproduces_the_run(trained_home, use_home) -> None:
    from brecha import steps

    home, result = trained_home
    use_home(home)
    again = steps.predict(result.run_id)
    stored = _predictions(home, result.run_id).set_index("ubigeo")
    rescored = again.predictions.set_index("ubigeo").loc[stored.index]
    for col in ("predicted_internet_pct", "lower_90", "upper_90", "priority_rank", "underserved_probability"):
        np.testing.assert_array_equal(rescored[col].to_numpy(float), stored[col].to_numpy(float))
    assert again.max_abs_diff_vs_run == 0.0


def test_unknown_targets_are_predicted_and_runs_are_deterministic(built_home: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Withhold the target of two whole departments; train twice (FAST) in two homes; compare."""
    from ml.train import train

    results = {}
    for name in ("a", "b"):
        home = _copy_home(built_home, tmp_path / name, monkeypatch)
        with duckdb.connect(str(home / "brecha.duckdb")) as con:
            deps = [r[0] for r in con.execute("select distinct department_code from marts.dim_districts "
                                              "order by 1 limit 2").fetchall()]
            con.execute("update marts.fct_district_connectivity set internet_pct = null where ubigeo in "
                        "(select ubigeo from marts.dim_districts where department_code in (?, ?))", deps)
            withheld = con.execute("select count(*) from marts.fct_district_connectivity "
                                   "where internet_pct is null").fetchone()[0]
        results[name] = (home, train(seed=7, config=FAST))
    (ha, ra), (hb, rb) = results["a"], results["b"]
    pa, pb = _predictions(ha, ra.run_id), _predictions(hb, rb.run_id)
    unknown = pa["actual_internet_pct"].isna()
    assert unknown.sum() == withheld > 0
    assert pa.loc[unknown, ["predicted_internet_pct", "lower_90", "upper_90"]].notna().all().all()
    cols = ["ubigeo", "model_name", "predicted_internet_pct", "lower_90", "upper_90", "priority_rank",
            "underserved_probability"]
    pd.testing.assert_frame_equal(pa[cols], pb[cols])


def test_ensemble_cv_from_member_fold_models_equals_refitting(built_home: Path, use_home) -> None:
    """The ensemble's CV reuses its members' fold models; refitting the VotingRegressor must give the same."""
    from ml.models import ENSEMBLE, ENSEMBLE_MEMBERS, candidates
    from ml.spatial_cv import cross_validate, cross_validate_ensemble

    use_home(built_home)
    with duckdb.connect(str(paths().db), read_only=True) as con:
        marts = load_marts(con)
    known = marts["internet_pct"].notna().to_numpy()
    X = build_feature_table(marts)[known]  # noqa: N806
    y = marts["internet_pct"].to_numpy(float)[known]
    groups = marts["department_code"].to_numpy()[known]
    folds = fold_indices(X, groups, 3)
    cands = {c.name: c.estimator for c in candidates(FAST, 3)}
    members = {name: cross_validate(cands[name], X, y, groups, folds) for name in ENSEMBLE_MEMBERS}
    assembled = cross_validate_ensemble(cands[ENSEMBLE], members, X, y, groups, folds)
    refitted = cross_validate(cands[ENSEMBLE], X, y, groups, folds)
    np.testing.assert_allclose(assembled.oof_scale, refitted.oof_scale, rtol=0, atol=1e-12)
    mean_of_members = np.mean([members[n].oof_scale for n in ENSEMBLE_MEMBERS], axis=0)
    np.testing.assert_allclose(assembled.oof_scale, mean_of_members, rtol=1e-12)
    assert assembled.pooled == refitted.pooled
