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
    # every district of the session warehouse has a census share: all shown out of fold
    assert preds["is_out_of_fold"].all() and result.n_without_target == 0
    assert preds["priority_score"].notna().all() and preds["households_offline"].gt(0).all()


def test_coverage_is_stored_per_department_and_predicted_level(trained_home) -> None:
    home, result = trained_home
    with duckdb.connect(str(home / "brecha.duckdb"), read_only=True) as con:
        cov = con.execute("select * from ml.interval_coverage_by_group where run_id = ? and model_name = ?",
                          [result.run_id, result.selected_model]).df()
        runs = con.execute("select model_name, interval_coverage, cv_mae, cv_mae_household_weighted "
                           "from ml.model_runs where run_id = ?", [result.run_id]).df().set_index("model_name")
        preds = con.execute("select p.*, d.department_code from ml.district_predictions p join marts.dim_districts d "
                            "using (ubigeo) where run_id = ?", [result.run_id]).df()
    assert set(cov["scope"]) == {"pooled", "department", "predicted_level"}
    by_dept = cov[cov["scope"] == "department"].set_index("group_value")
    assert len(by_dept) == preds["department_code"].nunique()
    # the stored table is the coverage of the stored (out-of-fold) intervals, recomputed here from them
    hit = preds["actual_internet_pct"].between(preds["lower_90"] - 1e-9, preds["upper_90"] + 1e-9)
    recomputed = hit.groupby(preds["department_code"]).mean()
    np.testing.assert_allclose(by_dept.loc[recomputed.index, "coverage"], recomputed.to_numpy())
    pooled = cov.loc[cov["scope"] == "pooled", "coverage"].iloc[0]
    assert pooled == pytest.approx(hit.mean()) == pytest.approx(runs.loc[result.selected_model, "interval_coverage"])
    assert 0.85 <= pooled <= 0.95  # out-of-fold intervals: close to their 90 %, not the in-sample ~97 %
    assert by_dept["n_districts"].sum() == len(preds)
    assert runs["cv_mae_household_weighted"].notna().all()


def test_known_districts_are_predicted_by_the_model_that_never_saw_their_department(trained_home, use_home) -> None:
    """Refit the selected model without one department's fold: its prediction for that department is the
    stored one; predict_frame (the final model, fitted on everything) gives something else."""
    from sklearn.base import clone

    from ml.config import FULL
    from ml.models import candidates, from_model_scale, to_model_scale
    from ml.predict import load_selected, predict_frame

    home, result = trained_home
    use_home(home)
    with duckdb.connect(str(paths().db), read_only=True) as con:
        marts = load_marts(con)
    _, regressor, config = load_selected(result.run_id)
    X = build_feature_table(marts)[config["features"]]  # noqa: N806
    stored = _predictions(home, result.run_id).set_index("ubigeo").loc[marts.index]
    fold_deps = set(regressor.fold_departments[0])
    test = marts["department_code"].isin(fold_deps).to_numpy()
    estimator = next(c.estimator for c in candidates(FULL, config["seed"]) if c.name == result.selected_model)
    refit = clone(estimator).fit(X[~test], to_model_scale(marts.loc[~test, "internet_pct"].to_numpy(float)))
    np.testing.assert_allclose(stored.loc[test, "predicted_internet_pct"], from_model_scale(refit.predict(X[test])),
                               atol=1e-9)
    assert stored.loc[test, "is_out_of_fold"].all()
    final = predict_frame(result.run_id, X)
    assert list(final.columns) == ["predicted_internet_pct", "lower_90", "upper_90"]
    assert final.index.equals(X.index) and (final["lower_90"] <= final["upper_90"]).all()
    # the final model has seen the known districts: closer to their census share than the out-of-fold one
    err_final = (final["predicted_internet_pct"] - marts["internet_pct"]).abs().mean()
    err_oof = (stored["predicted_internet_pct"] - marts["internet_pct"]).abs().mean()
    assert err_final < err_oof


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
    """Withhold the census share of three whole departments: the marts gate counts them and passes, training
    predicts them with the final model, the prediction marts and publish succeed; the predictions are compared
    with the withheld values. Trained twice (FAST) in two homes: identical."""
    from brecha import steps
    from brecha.pipeline import PREDICTION_MARTS
    from ml.train import train

    results = {}
    for name in ("a", "b"):
        home = _copy_home(built_home, tmp_path / name, monkeypatch)
        with duckdb.connect(str(home / "brecha.duckdb")) as con:
            truth = con.execute("select ubigeo, internet_pct from marts.fct_district_connectivity").df()
            deps = [r[0] for r in con.execute("select department_code from marts.dim_districts group by 1 "
                                              "order by count(*) desc limit 3").fetchall()]
            con.execute("update marts.fct_district_connectivity set internet_pct = null where ubigeo in "
                        "(select ubigeo from marts.dim_districts where department_code in (?, ?, ?))", deps)
            withheld = con.execute("select count(*) from marts.fct_district_connectivity "
                                   "where internet_pct is null").fetchone()[0]
        if name == "a":
            gate = steps.validate("marts")
            (count,) = [c for c in gate.checks if c.suite == "marts.fct_district_connectivity"
                        and c.expectation == "expect_column_values_to_not_be_null" and c.column == "internet_pct"]
            assert count.success and count.unexpected_count == withheld
        results[name] = (home, train(seed=7, config=FAST))
    (ha, ra), (hb, rb) = results["a"], results["b"]
    assert ra.n_without_target == withheld > 100
    monkeypatch.setenv("BRECHA_HOME", str(ha))
    steps.dbt_build(select=PREDICTION_MARTS)
    published = steps.publish(run_id=ra.run_id)
    assert published is not None
    with duckdb.connect(str(ha / "brecha.duckdb"), read_only=True) as con:
        mart = con.execute("select * from marts.mart_district_priorities").df()
    unknown = mart["internet_pct"].isna()
    assert unknown.sum() == withheld and (~mart.loc[unknown, "is_out_of_fold"]).all()
    assert mart.loc[~unknown, "is_out_of_fold"].all() and mart["priority_rank"].is_unique
    assert mart.loc[unknown, ["predicted_internet_pct", "lower_90", "upper_90", "priority_score"]].notna().all().all()
    assert mart.loc[unknown, "gap_pp"].isna().all() and mart.loc[unknown, "shortfall_score"].isna().all()
    # against the withheld census shares
    hidden = mart.loc[unknown].merge(truth, on="ubigeo", suffixes=("", "_withheld"))
    err = (hidden["predicted_internet_pct"] - hidden["internet_pct_withheld"]).abs()
    covered = hidden["internet_pct_withheld"].between(hidden["lower_90"], hidden["upper_90"])
    baseline = (hidden["internet_pct_withheld"] - mart.loc[~unknown, "internet_pct"].mean()).abs().mean()
    assert err.mean() < 0.5 * baseline, (err.mean(), baseline)  # far better than the mean of the other districts
    assert covered.mean() > 0.6, f"withheld departments covered {covered.mean():.0%}"
    pa, pb = _predictions(ha, ra.run_id), _predictions(hb, rb.run_id)
    cols = ["ubigeo", "model_name", "predicted_internet_pct", "lower_90", "upper_90", "priority_rank",
            "underserved_probability", "is_out_of_fold"]
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
