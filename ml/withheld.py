"""Accuracy where the census is silent: withhold whole departments, train on the rest, compare.

``evaluate_set`` does, for one set of withheld departments (``department_sets`` draws random sets of 3-6, the
first 5 with Lima), what ``brecha train`` does on a warehouse where those departments have no census share: spatial CV
of every candidate on the other departments, the lowest-MAE one refitted on them, Mondrian intervals calibrated on its
out-of-fold residuals, then scores the withheld districts. ``python -m tools.withheld`` runs it over many sets on the
marts of ``$BRECHA_HOME`` (the figures in ml/README.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import clone

from brecha_ml.config import TrainConfig
from brecha_ml.features import GROUP, TARGET
from brecha_ml.intervals import BAND_FEATURE, MondrianIntervals, coverage_tables
from brecha_ml.models import (
    ENSEMBLE,
    ENSEMBLE_MEMBERS,
    assemble_voting,
    candidates,
    fit_grouped,
    from_model_scale,
    to_model_scale,
)
from brecha_ml.spatial_cv import (
    cross_validate,
    cross_validate_ensemble,
    fold_indices,
    household_weights,
    regression_metrics,
)
from brecha_ml.train import active_features, select

LIMA = "15"


def department_sets(departments: list[str], n_sets: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_sets):
        k = int(rng.integers(3, 7))
        pool = [d for d in departments if d != LIMA]
        chosen = list(rng.choice(pool, k - 1 if i < 5 else k, replace=False))
        out.append(sorted(chosen + ([LIMA] if i < 5 and LIMA in departments else [])))
    return out


def evaluate_set(marts: pd.DataFrame, features: pd.DataFrame, withheld: list[str], config: TrainConfig,
                 seed: int, compare_only: bool = False) -> dict:
    """Train as ``brecha train`` would without ``withheld``'s census shares, score them. ``compare_only``: skip the
    spatial CV (no selection, no intervals): only every candidate's final fit and its MAE on the withheld districts
    (about a fifth of the work; the evidence for the ensemble margin)."""
    known = marts[TARGET].notna().to_numpy()
    dept = marts[GROUP].astype(str).to_numpy()
    tr = known & ~np.isin(dept, withheld)
    te = known & np.isin(dept, withheld)
    used = active_features(features[tr], config.min_feature_coverage)
    X, Xt = features.loc[tr, used], features.loc[te, used]  # noqa: N806
    y, yt = marts.loc[tr, TARGET].to_numpy(float), marts.loc[te, TARGET].to_numpy(float)
    groups = dept[tr]
    cands = candidates(config, seed, used)
    finals = {n: fit_grouped(clone(next(c for c in cands if c.name == n).estimator), X, to_model_scale(y), groups)
              for n in ("ridge", *ENSEMBLE_MEMBERS)}
    finals[ENSEMBLE] = assemble_voting(next(c for c in cands if c.name == ENSEMBLE).estimator, finals)
    # every candidate's withheld MAE, whichever is served: the evidence for the ensemble margin
    each = {f"mae_{n}": regression_metrics(yt, from_model_scale(m.predict(Xt)))["mae"] for n, m in finals.items()}
    row = {"departments": ",".join(withheld), "n": int(te.sum()), **each}
    if compare_only:
        return row
    folds = fold_indices(X, groups, config.n_splits)
    cvs = {}
    for c in cands:
        if c.name == ENSEMBLE:
            cvs[c.name] = cross_validate_ensemble(c.estimator, {n: cvs[n] for n in ENSEMBLE_MEMBERS}, X, y, groups, folds)
        else:
            cvs[c.name] = cross_validate(c.estimator, X, y, groups, folds)
    best = select(cands, {name: cv.pooled["mae"] for name, cv in cvs.items()}, config.ensemble_margin_pp)
    final = finals[best.name]
    has_bands = BAND_FEATURE in X.columns
    upper, lower = config.side_levels()
    cal = MondrianIntervals.fit(cvs[best.name].oof_scale, y, folds, upper, config.interval_level_bins,
                                band_values=X[BAND_FEATURE] if has_bands else None,
                                n_bands=config.interval_poverty_bands, lower_confidence=lower)
    iv = cal.interval(final.predict(Xt), band_values=Xt[BAND_FEATURE] if has_bands else None)
    m = regression_metrics(yt, iv["predicted_internet_pct"].to_numpy())
    mw = regression_metrics(yt, iv["predicted_internet_pct"].to_numpy(),
                            household_weights(marts.loc[te, "population"].to_numpy(float)))
    cover = coverage_tables(yt, iv, dept[te])
    pooled = cover[cover.scope == "pooled"].iloc[0]
    return {**row, "selected": best.name, "r2": m["r2"], "mae": m["mae"], "r2_hh": mw["r2"], "mae_hh": mw["mae"],
            "coverage": float(pooled["coverage"]),
            "min_department_coverage": float(cover.loc[cover.scope == "department", "coverage"].min()),
            "mean_width_pp": float(pooled["mean_width_pp"])}
