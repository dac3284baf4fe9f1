"""The candidate regressors and the target scale they are trained on.

Every candidate is trained on ``sqrt(internet_pct)`` (variance-stabilising for a share with many
near-zero districts); predictions are squared back and clipped to 0..100. The same scale is used by the
conformal intervals, so they are narrow near zero and widen with the predicted share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.ensemble import HistGradientBoostingRegressor, VotingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import Bunch

from brecha_ml.config import TrainConfig
from brecha_ml.torch_model import TorchMLPRegressor

Family = Literal["sklearn", "torch"]
TARGET_TRANSFORM = "sqrt"


def to_model_scale(y: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(np.asarray(y, dtype=float), 0, None))


def from_model_scale(z: np.ndarray) -> np.ndarray:
    return np.clip(np.clip(np.asarray(z, dtype=float), 0, None) ** 2, 0, 100)


RIDGE_ALPHAS = tuple(np.logspace(-2, 3, 11))


class GroupedRidgeCV(RegressorMixin, BaseEstimator):
    """Ridge whose alpha is chosen by ``GroupKFold`` over ``groups`` (``fit(X, y, groups=departments)``): the
    alpha that predicts best for departments left out, not by leave-one-row-out (``RidgeCV``'s default), which
    rewards fitting each department's own pattern. Without ``groups`` (or fewer than 2): efficient LOO."""

    def __init__(self, alphas: tuple[float, ...] = RIDGE_ALPHAS, n_splits: int = 5) -> None:
        self.alphas = alphas
        self.n_splits = n_splits

    def fit(self, X, y, groups=None) -> GroupedRidgeCV:  # noqa: N803
        n_groups = 0 if groups is None else len(np.unique(groups))
        cv = (list(GroupKFold(min(self.n_splits, n_groups)).split(X, y, groups)) if n_groups >= 2 else None)
        self.ridge_ = RidgeCV(alphas=self.alphas, cv=cv, scoring="neg_mean_absolute_error" if cv else None).fit(X, y)
        self.alpha_ = float(self.ridge_.alpha_)
        self.n_features_in_ = self.ridge_.n_features_in_
        return self

    def predict(self, X):  # noqa: N803
        return self.ridge_.predict(X)


def fit_grouped(estimator: RegressorMixin, X, z: np.ndarray, groups: np.ndarray | None) -> RegressorMixin:  # noqa: N803
    """Fit a candidate, passing the rows' departments to the step that chooses hyper-parameters on held-out
    departments (``GroupedRidgeCV``'s alpha, ``TorchMLPRegressor``'s early stopping). A ``VotingRegressor`` is
    assembled from its members fitted this way (what its own ``fit`` does, plus the groups)."""
    if isinstance(estimator, VotingRegressor):
        return assemble_voting(estimator, {name: fit_grouped(clone(est), X, z, groups)
                                           for name, est in estimator.estimators})
    last_name, last = estimator.steps[-1] if isinstance(estimator, Pipeline) else (None, estimator)
    if groups is None or not isinstance(last, GroupedRidgeCV | TorchMLPRegressor):
        return estimator.fit(X, z)
    key = f"{last_name}__groups" if last_name else "groups"
    return estimator.fit(X, z, **{key: np.asarray(groups)})


@dataclass(frozen=True)
class Candidate:
    name: str
    family: Family
    estimator: RegressorMixin
    description: str


def _standardised(final: RegressorMixin, named: bool = False) -> Pipeline:
    """Median imputation (with missing-value indicators), then standardisation, then ``final``; ``named``: the
    steps hand ``final`` a DataFrame with the column names (what a ``TorchMLPRegressor`` with ``monotone`` needs)."""
    pipe = make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler(), final)
    return pipe.set_output(transform="pandas") if named else pipe


def monotone_rules(cfg: TrainConfig, features: list[str] | None = None) -> dict[str, int]:
    """``cfg.monotone`` as {feature: +1 / -1}, limited to ``features`` when given (a dropped feature has no rule)."""
    return {name: sign for name, sign in cfg.monotone if features is None or name in features}


def _hgb(cfg: TrainConfig, seed: int, features: list[str] | None = None) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(learning_rate=cfg.hgb_learning_rate, max_iter=cfg.hgb_max_iter,
                                         max_depth=cfg.hgb_max_depth, min_samples_leaf=cfg.hgb_min_samples_leaf,
                                         monotonic_cst=monotone_rules(cfg, features) or None, random_state=seed)


def _mlp(cfg: TrainConfig, seed: int, features: list[str] | None = None) -> Pipeline:
    rules = monotone_rules(cfg, features)
    return _standardised(TorchMLPRegressor(hidden=cfg.mlp_hidden, max_epochs=cfg.mlp_max_epochs,
                                           patience=cfg.mlp_patience, batch_size=cfg.mlp_batch_size,
                                           lr=cfg.mlp_lr, random_state=seed, n_bags=cfg.mlp_bags,
                                           refit_all=cfg.mlp_refit_all, monotone=rules or None,
                                           monotone_units=cfg.mlp_monotone_units),
                         named=bool(rules))


ENSEMBLE = "ensemble_gbm_mlp"
ENSEMBLE_MEMBERS = ("hist_gbm", "torch_mlp")  # candidate names, also the VotingRegressor's member names


def assemble_voting(template: VotingRegressor, fitted: dict[str, RegressorMixin]) -> VotingRegressor:
    """A fitted ``VotingRegressor`` made of already fitted members (the same estimators ``fit`` would clone and
    fit on the same rows, so predictions are identical); saves refitting every member for the ensemble."""
    vote = clone(template)
    names = [name for name, _ in vote.estimators]
    vote.estimators_ = [fitted[name] for name in names]
    vote.named_estimators_ = Bunch(**{name: fitted[name] for name in names})
    return vote


def candidates(cfg: TrainConfig, seed: int, features: list[str] | None = None) -> list[Candidate]:
    """The candidates; ``features``: the columns they will be fitted on (monotone rules for absent ones are
    dropped). ``hist_gbm`` and ``torch_mlp`` (and so their mean) are monotone in ``cfg.monotone``'s features:
    ``monotonic_cst`` in the trees, ``brecha_ml.torch_model.MonotoneMLP`` in the network."""
    return [
        Candidate("ridge", "sklearn", _standardised(GroupedRidgeCV()),
                  "Linear baseline: ridge (alpha by GroupKFold over departments) on imputed, standardised features"),
        Candidate("hist_gbm", "sklearn", _hgb(cfg, seed, features),
                  "scikit-learn HistGradientBoostingRegressor (native missing-value handling)"),
        Candidate("torch_mlp", "torch", _mlp(cfg, seed, features),
                  "PyTorch MLP on imputed, standardised features; early stopping on held-out departments"),
        Candidate(ENSEMBLE, "torch",
                  VotingRegressor([(ENSEMBLE_MEMBERS[0], _hgb(cfg, seed, features)),
                                   (ENSEMBLE_MEMBERS[1], _mlp(cfg, seed, features))]),
                  "Mean of hist_gbm and torch_mlp (on the sqrt scale)"),
    ]
