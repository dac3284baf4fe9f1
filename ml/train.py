"""``brecha train``: compare models under spatial CV, keep the best, score every district, write ``ml.*``."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import numpy as np
import pandas as pd
import sklearn
import torch
from sklearn.base import clone
from sklearn.inspection import permutation_importance
from threadpoolctl import threadpool_limits

from brecha.core.db import session
from brecha.core.errors import BrechaError
from brecha.core.settings import DEFAULT_SEED
from brecha_ml import artifacts, drift, seeds, segments, store
from brecha_ml.config import FULL, TrainConfig
from brecha_ml.features import FEATURE_NAMES, GROUP, TARGET, build_feature_table, load_marts
from brecha_ml.intervals import BAND_FEATURE, MIN_PER_BIN, coverage_tables, oof_intervals
from brecha_ml.models import (
    ENSEMBLE,
    ENSEMBLE_MEMBERS,
    TARGET_TRANSFORM,
    Candidate,
    assemble_voting,
    candidates,
    fit_grouped,
    from_model_scale,
    to_model_scale,
)
from brecha_ml.predict import apply_regressor
from brecha_ml.scoring import oof_departments, score_districts
from brecha_ml.selected import SelectedRegressor
from brecha_ml.spatial_cv import CVResult, cross_validate, cross_validate_ensemble, fold_indices, household_weights
from brecha_ml.underserved import MODEL_NAME as CLASSIFIER_NAME
from brecha_ml.underserved import evaluate_and_fit

MIN_KNOWN = 30


@dataclass
class TrainResult:
    run_id: str
    selected_model: str
    n_districts: int
    n_known: int
    features: list[str]
    cv: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> r2/mae/rmse/coverage
    n_segments: int = 0
    seconds: float = 0.0
    n_without_target: int = 0  # districts predicted by the final model because their census share is unknown
    departments_below_85: int = 0  # departments whose out-of-fold 90 % interval coverage is below 85 %

    def __str__(self) -> str:
        lines = [f"run {self.run_id}: {self.n_districts} districts scored ({self.n_known} with a known target, "
                 f"shown out of fold; {self.n_without_target} predicted without a census target), "
                 f"{len(self.features)} features, {self.n_segments} segments, {self.seconds:.1f} s",
                 "spatial CV (folds by department), pooled out-of-fold:"]
        for name, m in sorted(self.cv.items(), key=lambda kv: kv[1]["mae"]):
            mark = "*" if name == self.selected_model else " "
            lines.append(f" {mark} {name:<18} R² {m['r2']:.3f}  MAE {m['mae']:.2f} pp  RMSE {m['rmse']:.2f} pp  "
                         f"90% interval coverage {m['coverage']:.1%}  (household-weighted: R² {m['r2_hh']:.3f}, "
                         f"MAE {m['mae_hh']:.2f} pp)")
        why = ("its MAE beats the best single model's by at least the ensemble margin" if self.selected_model == ENSEMBLE
               else "lowest spatial-CV MAE of the single models; the ensemble is served only when it beats that by "
                    "the ensemble margin")
        lines.append(f"selected: {self.selected_model} ({why}); its intervals cover less than 85 % "
                     f"in {self.departments_below_85} department(s)")
        return "\n".join(lines)


def select(cands: list[Candidate], mae: dict[str, float], ensemble_margin_pp: float) -> Candidate:
    """The candidate to serve: the lowest spatial-CV MAE among the single models, or the ensemble when its MAE is
    lower than that by at least ``ensemble_margin_pp`` (an average of two models is served only when it earns its
    extra moving part; a difference of a few hundredths of a point is noise between seeds)."""
    single = min((c for c in cands if c.name != ENSEMBLE), key=lambda c: mae[c.name])
    ensemble = next((c for c in cands if c.name == ENSEMBLE), None)
    if ensemble is not None and mae[ensemble.name] <= mae[single.name] - ensemble_margin_pp:
        return ensemble
    return single


def data_fingerprint(X: pd.DataFrame, y: pd.Series, groups: pd.Series) -> str:  # noqa: N803
    h = hashlib.sha256()
    for part in (X, y.to_frame(), groups.to_frame()):
        h.update(pd.util.hash_pandas_object(part, index=True).to_numpy().tobytes())
    return h.hexdigest()


def active_features(X: pd.DataFrame, min_coverage: float) -> list[str]:  # noqa: N803
    """Features with enough non-null, non-constant values in the training rows (e.g. the fixed-connection
    features are dropped on the real files, which have no fixed-connections extract)."""
    return [c for c in X.columns if X[c].notna().mean() >= min_coverage and X[c].nunique(dropna=True) > 1]


def _load() -> pd.DataFrame:
    try:
        with session(read_only=True) as con:
            return load_marts(con)
    except duckdb.CatalogException as err:
        raise BrechaError(f"the marts are missing from the warehouse ({err}). Run `brecha ingest <folder>` and "
                          "`brecha build --exclude tag:needs_predictions` first.") from err


def _importance(cand: Candidate, cv: CVResult, X: pd.DataFrame, y: np.ndarray,  # noqa: N803
                folds: list[tuple[np.ndarray, np.ndarray]], repeats: int, seed: int) -> pd.DataFrame:
    """Permutation importance on the held-out departments of each fold: increase in MAE (pp)."""

    def neg_mae(est, Xs, ys):  # noqa: N803
        return -float(np.mean(np.abs(from_model_scale(est.predict(Xs)) - ys)))

    drops = []
    for model, (_, te) in zip(cv.models, folds, strict=True):
        r = permutation_importance(model, X.iloc[te], y[te], scoring=neg_mae, n_repeats=repeats, random_state=seed)
        drops.append(r.importances)
    allr = np.concatenate(drops, axis=1)
    df = pd.DataFrame({"model_name": cand.name, "feature": X.columns, "importance_mean": allr.mean(axis=1),
                       "importance_std": allr.std(axis=1)})
    df["rank"] = df["importance_mean"].rank(ascending=False, method="first").astype(int)
    return df.sort_values("rank")


def train(seed: int = DEFAULT_SEED, config: TrainConfig = FULL) -> TrainResult:
    """Train with single-threaded BLAS/OpenMP and torch: on a small table (~1,900 rows) on a shared 2-core
    machine, OpenMP thread synchronisation costs far more than it saves, and one thread is deterministic."""
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        return _train(seed, config)


@dataclass
class TrainingData:
    """The marts and the training rows every training-like step starts from (``load_training_data``)."""

    marts: pd.DataFrame
    features_all: pd.DataFrame  # every district, the used features
    known: np.ndarray  # districts with a census share
    used: list[str]
    X: pd.DataFrame  # noqa: N815 (known districts, used features)
    y: np.ndarray
    groups: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    fingerprint: str
    weights: np.ndarray  # households of the known districts
    config: TrainConfig


def load_training_data(config: TrainConfig = FULL) -> TrainingData:
    """Marts → feature table, used features, spatial folds, data fingerprint (what ``brecha train`` trains on)."""
    marts = _load()
    features_all = build_feature_table(marts)
    known = marts[TARGET].notna().to_numpy()
    if known.sum() < MIN_KNOWN:
        raise BrechaError(f"marts.fct_district_connectivity has only {known.sum()} districts with internet_pct; "
                          f"training needs at least {MIN_KNOWN}. Check the census indicators extract.")
    used = active_features(features_all[known], config.min_feature_coverage)
    X_all = features_all[used]  # noqa: N806
    X = X_all[known]  # noqa: N806
    groups = marts[GROUP].astype(str).to_numpy()[known]
    return TrainingData(marts, features_all, known, used, X, marts[TARGET].to_numpy(float)[known], groups,
                        fold_indices(X, groups, config.n_splits), data_fingerprint(X_all, marts[TARGET], marts[GROUP]),
                        household_weights(marts["population"].to_numpy(float)[known]), config)


@dataclass
class CandidatesCV:
    """Every candidate's spatial CV on ``data`` for one seed, its out-of-fold intervals and the selected one."""

    data: TrainingData
    seed: int
    cands: list[Candidate]
    cvs: dict[str, CVResult]
    timing: dict[str, float]
    calibrated: dict[str, tuple]  # name -> (MondrianIntervals, out-of-fold interval frame)
    cover: dict[str, pd.DataFrame]
    best: Candidate

    def seed_rows(self, seconds: float, run_id: str | None = None) -> pd.DataFrame:
        """One ``ml.seed_metrics`` row per candidate (``brecha_ml.seeds``)."""
        d = self.data
        ubigeos = d.marts["ubigeo"].astype(str).to_numpy()[d.known]
        rows = [{"data_fingerprint": d.fingerprint, "seed": self.seed, "model_name": c.name, "run_id": run_id,
                 "computed_at": datetime.now(UTC).replace(tzinfo=None), "selected": c is self.best,
                 **seeds.figures(self.cvs[c.name], self.calibrated[c.name][1], d.y, d.groups, d.weights, ubigeos),
                 "seconds": seconds} for c in self.cands]
        return pd.DataFrame(rows)


def cross_validate_candidates(data: TrainingData, seed: int) -> CandidatesCV:
    """Spatial CV of every candidate (the ensemble assembled from its members' fold models), Mondrian intervals
    from each one's out-of-fold residuals, and the one to serve (``select``)."""
    config, X, y, groups, folds = data.config, data.X, data.y, data.groups, data.folds  # noqa: N806
    cands = candidates(config, seed, data.used)
    cvs: dict[str, CVResult] = {}
    timing: dict[str, float] = {}
    with threadpool_limits(limits=1):
        torch.set_num_threads(1)
        for cand in cands:
            t = time.perf_counter()
            if cand.name == ENSEMBLE:  # members are candidates too: reuse their fold models
                members = {name: cvs[name] for name in ENSEMBLE_MEMBERS}
                cvs[cand.name] = cross_validate_ensemble(cand.estimator, members, X, y, groups, folds)
                timing[cand.name] = time.perf_counter() - t + sum(timing[name] for name in ENSEMBLE_MEMBERS)
            else:
                cvs[cand.name] = cross_validate(cand.estimator, X, y, groups, folds)
                timing[cand.name] = time.perf_counter() - t
    bands = X[BAND_FEATURE].to_numpy(float) if BAND_FEATURE in X.columns else None
    upper, lower = config.side_levels()
    calibrated = {c.name: oof_intervals(cvs[c.name].oof_scale, y, folds, upper, config.interval_level_bins,
                                        band_values=bands, n_bands=config.interval_poverty_bands,
                                        lower_confidence=lower) for c in cands}
    cover = {c.name: coverage_tables(y, calibrated[c.name][1], groups, data.weights).assign(model_name=c.name)
             for c in cands}
    best = select(cands, {name: cv.pooled["mae"] for name, cv in cvs.items()}, config.ensemble_margin_pp)
    return CandidatesCV(data, seed, cands, cvs, timing, calibrated, cover, best)


def _train(seed: int, config: TrainConfig) -> TrainResult:
    started = time.perf_counter()
    data = load_training_data(config)
    marts, features_all, known, used = data.marts, data.features_all, data.known, data.used
    X_all = features_all[used]  # noqa: N806
    X, y, groups, folds, fingerprint, weights = data.X, data.y, data.groups, data.folds, data.fingerprint, data.weights  # noqa: N806
    run_at = datetime.now(UTC).replace(tzinfo=None)
    run_id = f"{run_at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"

    ccv = cross_validate_candidates(data, seed)
    cands, cvs, timing, calibrated, cover, best = ccv.cands, ccv.cvs, ccv.timing, ccv.calibrated, ccv.cover, ccv.best
    coverage = {name: float(t.loc[t["scope"] == "pooled", "coverage"].iloc[0]) for name, t in cover.items()}
    seed_rows = ccv.seed_rows(sum(timing[c.name] for c in cands if c.name != ENSEMBLE), run_id)

    full_fits: dict = {}
    final = _fit_final(best, cands, X, y, groups, full_fits)
    regressor = SelectedRegressor(best.name, final, cvs[best.name].models,
                                  [sorted(set(groups[te])) for _, te in folds], calibrated[best.name][0])
    classifier, cls_metrics = evaluate_and_fit(X, y, groups, folds, config.underserved_threshold_pct, seed,
                                               config.hgb_max_iter, config.hgb_learning_rate)
    seg = segments.fit_segments(features_all, config.segment_k, seed)
    assigned = segments.assign(seg, features_all)
    importance = _importance(best, cvs[best.name], X, y, folds, config.importance_repeats, seed)
    predictions = score_districts(apply_regressor(regressor, X_all, oof_departments(marts),
                                                  marts[GROUP].astype(str)), classifier, X_all, marts, best.name)

    common = {"run_id": run_id, "seed": seed, "features": used, "target": TARGET,
              "target_transform": TARGET_TRANSFORM, "data_fingerprint": fingerprint, "train_config": config.as_dict(),
              "versions": {"scikit-learn": sklearn.__version__, "torch": torch.__version__}}
    weighted = {c.name: cvs[c.name].weighted(y, weights) for c in cands}
    runs = []
    for cand in cands:
        is_best = cand is best
        model = regressor if is_best else _fit_final(cand, cands, X, y, groups, full_fits)
        metrics = {**cvs[cand.name].pooled, "interval_coverage_cv": coverage[cand.name],
                   "household_weighted": weighted[cand.name], "folds": cvs[cand.name].folds.to_dict("records")}
        params = {k: repr(v) for k, v in cand.estimator.get_params(deep=False).items()}
        cfg = {**common, "model_name": cand.name, "description": cand.description, "params": params,
               "selected": is_best,
               "wrapper": "brecha_ml.selected.SelectedRegressor" if is_best else None,
               "conformal": {"confidence": config.confidence, "conformal_level": config.conformal_level,
                             "side_levels": dict(zip(("upper", "lower"), config.side_levels(), strict=True)),
                             "sides": "a conformal quantile per side (above / below the prediction), each at "
                                      "1 - (1 - its side level) / 2",
                             "library": "crepes.ConformalRegressor (Mondrian)",
                             "bins": f"up to {config.interval_level_bins} equal-frequency bins of the predicted level"
                                     f" (at least {MIN_PER_BIN} residuals each)"
                                     + (f" within each of up to {config.interval_poverty_bands} equal-frequency "
                                        f"bands of {BAND_FEATURE}" if config.interval_poverty_bands > 1 else ""),
                             "cv": f"GroupKFold({config.n_splits}) by {GROUP}",
                             "score": "out-of-fold residual above / below the prediction, sqrt scale",
                             "fold_departments": regressor.fold_departments}
               if is_best else None}
        path = artifacts.save_model(run_id, cand.name, model, cand.family, cfg, metrics)
        runs.append({"run_id": run_id, "run_at": run_at, "data_fingerprint": fingerprint, "seed": seed,
                     "model_name": cand.name, "model_family": cand.family,
                     "params": json.dumps(params),
                     "cv_r2": cvs[cand.name].pooled["r2"], "cv_mae": cvs[cand.name].pooled["mae"],
                     "cv_rmse": cvs[cand.name].pooled["rmse"], "interval_coverage": coverage[cand.name],
                     "selected": is_best, "artifact_path": str(path), "n_train": int(len(y)),
                     "n_features": len(used), "fit_seconds": timing[cand.name],
                     "cv_r2_household_weighted": weighted[cand.name]["r2"],
                     "cv_mae_household_weighted": weighted[cand.name]["mae"]})
    cls_cfg = {**common, "model_name": CLASSIFIER_NAME, "threshold_pct": config.underserved_threshold_pct}
    artifacts.save_model(run_id, CLASSIFIER_NAME, classifier, "sklearn", cls_cfg,
                         {"metrics": cls_metrics.to_dict("records")})
    artifacts.save_model(run_id, "segments", seg, "sklearn", {**common, "model_name": "segments", "k": seg.k,
                         "silhouettes": seg.silhouettes, "labels": seg.labels}, {"silhouettes": seg.silhouettes})
    artifacts.save_features(run_id, features_all)

    fold_rows = pd.concat([cvs[c.name].folds.assign(model_name=c.name) for c in cands], ignore_index=True)
    with session() as con:
        store.ensure_tables(con)
        prev = store.latest_run_id(con)
        drift_df = drift.summarise(features_all, artifacts.load_features(prev) if prev else None)
        con.execute("BEGIN TRANSACTION")
        store.append(con, "model_runs", pd.DataFrame(runs))
        store.append(con, "model_fold_metrics", fold_rows.assign(run_id=run_id))
        store.append(con, "district_predictions", predictions.assign(run_id=run_id))
        store.append(con, "feature_importance", importance.assign(run_id=run_id))
        store.append(con, "district_segments", assigned.assign(run_id=run_id, ubigeo=marts["ubigeo"].astype(str)))
        store.append(con, "segment_profiles", segments.profiles(seg, features_all, assigned, marts[TARGET])
                     .assign(run_id=run_id, silhouette=seg.silhouettes[seg.k]))
        store.append(con, "classification_metrics", cls_metrics.assign(run_id=run_id))
        store.append(con, "feature_drift", drift_df.assign(run_id=run_id))
        store.append(con, "interval_coverage_by_group", pd.concat(cover.values(), ignore_index=True)
                     .assign(run_id=run_id))
        seeds.append(con, seed_rows)
        con.execute("COMMIT")

    summary = {}
    for c in cands:
        w = weighted[c.name]
        summary[c.name] = {**cvs[c.name].pooled, "coverage": coverage[c.name], "r2_hh": w["r2"], "mae_hh": w["mae"]}
    by_dept = cover[best.name].query("scope == 'department'")
    return TrainResult(run_id, best.name, len(marts), int(known.sum()), used, summary, seg.k,
                       time.perf_counter() - started, int((~known).sum()), int((by_dept["coverage"] < 0.85).sum()))


def _fit_final(best: Candidate, cands: list[Candidate], X: pd.DataFrame, y: np.ndarray,  # noqa: N803
               groups: np.ndarray, fits: dict):
    """The selected model refitted on every district with a known target (an ensemble is assembled from its
    members' full fits, which are kept in ``fits`` for their own artifacts)."""
    if best.name == ENSEMBLE:
        fits[best.name] = assemble_voting(best.estimator, {n: _fit_full(cands, n, X, y, groups, fits)
                                                           for n in ENSEMBLE_MEMBERS})
        return fits[best.name]
    return _fit_full(cands, best.name, X, y, groups, fits)


def _fit_full(cands: list[Candidate], name: str, X: pd.DataFrame, y: np.ndarray,  # noqa: N803
              groups: np.ndarray, fits: dict):
    """Candidate ``name`` fitted on every known district, once (cached in ``fits``); its hyper-parameters
    (ridge alpha, MLP early stopping) chosen on held-out departments (``fit_grouped``)."""
    if name not in fits:
        est = clone(next(c for c in cands if c.name == name).estimator)
        fits[name] = fit_grouped(est, X, to_model_scale(y), groups)
    return fits[name]


__all__ = ["FEATURE_NAMES", "TrainResult", "train"]
