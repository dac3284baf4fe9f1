"""The candidate regressors and the target scale they are trained on.

Every candidate is trained on ``sqrt(internet_pct)`` (variance-stabilising for a share with many
near-zero districts); predictions are squared back and clipped to 0..100. The same scale is used by the
conformal intervals, so they are narrow near zero and widen with the predicted share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.base import RegressorMixin, clone
from sklearn.ensemble import HistGradientBoostingRegressor, VotingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import Bunch

from ml.config import TrainConfig
from ml.torch_model import TorchMLPRegressor

Family = Literal["sklearn", "torch"]
TARGET_TRANSFORM = "sqrt"


def to_model_scale(y: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(np.asarray(y, dtype=float), 0, None))


def from_model_scale(z: np.ndarray) -> np.ndarray:
    return np.clip(np.clip(np.asarray(z, dtype=float), 0, None) ** 2, 0, 100)


@dataclass(frozen=True)
class Candidate:
    name: str
    family: Family
    estimator: RegressorMixin
    description: str


def _standardised(final: RegressorMixin) -> Pipeline:
    """Median imputation (with missing-value indicators), then standardisation, then ``final``."""
    return make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler(), final)


def _hgb(cfg: TrainConfig, seed: int) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(learning_rate=cfg.hgb_learning_rate, max_iter=cfg.hgb_max_iter,
                                         max_depth=cfg.hgb_max_depth, min_samples_leaf=cfg.hgb_min_samples_leaf,
                                         random_state=seed)


def _mlp(cfg: TrainConfig, seed: int) -> Pipeline:
    return _standardised(TorchMLPRegressor(hidden=cfg.mlp_hidden, max_epochs=cfg.mlp_max_epochs,
                                           patience=cfg.mlp_patience, batch_size=cfg.mlp_batch_size,
                                           lr=cfg.mlp_lr, random_state=seed, n_bags=cfg.mlp_bags))


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


def candidates(cfg: TrainConfig, seed: int) -> list[Candidate]:
    return [
        Candidate("ridge", "sklearn", _standardised(RidgeCV(alphas=np.logspace(-2, 3, 11))),
                  "Linear baseline: ridge (alpha by efficient LOO) on imputed, standardised features"),
        Candidate("hist_gbm", "sklearn", _hgb(cfg, seed),
                  "scikit-learn HistGradientBoostingRegressor (native missing-value handling)"),
        Candidate("torch_mlp", "torch", _mlp(cfg, seed),
                  "PyTorch MLP on imputed, standardised features; early stopping on an inner validation split"),
        Candidate(ENSEMBLE, "torch",
                  VotingRegressor([(ENSEMBLE_MEMBERS[0], _hgb(cfg, seed)), (ENSEMBLE_MEMBERS[1], _mlp(cfg, seed))]),
                  "Mean of hist_gbm and torch_mlp (on the sqrt scale)"),
    ]
