"""A small PyTorch tabular network behind the scikit-learn estimator API (so CV, MAPIE and permutation
importance treat it like any other regressor). CPU only, deterministic for a given ``random_state``."""

from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted


def _mlp(n_in: int, hidden: tuple[int, ...], dropout: float) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.SiLU(), torch.nn.Dropout(dropout)]
        width = h
    layers.append(torch.nn.Linear(width, 1))
    return torch.nn.Sequential(*layers)


class TorchMLPRegressor(RegressorMixin, BaseEstimator):
    """Feed-forward network (SiLU, dropout, AdamW) on already standardised inputs.

    The target is standardised internally. Training stops early on an inner validation split
    (``val_fraction`` of the rows, drawn with ``random_state``) and keeps the best epoch's weights.
    ``n_bags`` networks are trained with seeds ``random_state``, ``random_state + 1``, ... (each with its own
    initialisation, batch order and validation split) and their predictions averaged: bagging over seeds
    removes most of a single network's seed sensitivity.
    """

    def __init__(self, hidden: tuple[int, ...] = (64, 32), dropout: float = 0.1, lr: float = 3e-3,
                 weight_decay: float = 1e-3, batch_size: int = 64, max_epochs: int = 300, patience: int = 30,
                 val_fraction: float = 0.15, random_state: int = 0, n_threads: int = 1, n_bags: int = 1) -> None:
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.random_state = random_state
        self.n_threads = n_threads
        self.n_bags = n_bags

    def fit(self, X, y) -> TorchMLPRegressor:  # noqa: N803 (scikit-learn naming)
        torch.set_num_threads(self.n_threads)
        torch.use_deterministic_algorithms(True)
        x = np.asarray(X, dtype=np.float32)
        t = np.asarray(y, dtype=np.float32).ravel()
        self.n_features_in_ = x.shape[1]
        self.y_mean_, self.y_std_ = float(t.mean()), float(t.std() or 1.0)
        t = (t - self.y_mean_) / self.y_std_
        fits = [self._fit_one(x, t, self.random_state + b) for b in range(max(1, self.n_bags))]
        self.nets_ = [net for net, _, _ in fits]
        self.net_ = self.nets_[0]
        self.val_loss_ = float(np.mean([v for _, v, _ in fits]))
        self.best_epoch_ = int(np.median([e for _, _, e in fits]))
        return self

    def _fit_one(self, x: np.ndarray, t: np.ndarray, seed: int) -> tuple[torch.nn.Sequential, float, int]:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(x))
        n_val = max(1, int(round(self.val_fraction * len(x))))
        val, tr = order[:n_val], order[n_val:]
        xt, yt = torch.from_numpy(x[tr]), torch.from_numpy(t[tr])
        xv, yv = torch.from_numpy(x[val]), torch.from_numpy(t[val])
        net = _mlp(x.shape[1], tuple(self.hidden), self.dropout)
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_fn = torch.nn.MSELoss()
        gen = torch.Generator().manual_seed(seed)
        best, best_state, waited, best_epoch = np.inf, copy.deepcopy(net.state_dict()), 0, 0
        for epoch in range(self.max_epochs):
            net.train()
            for idx in torch.randperm(len(xt), generator=gen).split(self.batch_size):
                opt.zero_grad()
                loss_fn(net(xt[idx]).squeeze(1), yt[idx]).backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                v = float(loss_fn(net(xv).squeeze(1), yv))
            if v < best - 1e-6:
                best, best_state, waited, best_epoch = v, copy.deepcopy(net.state_dict()), 0, epoch
            else:
                waited += 1
                if waited >= self.patience:
                    break
        net.load_state_dict(best_state)
        net.eval()
        return net, float(best), best_epoch

    def predict(self, X):  # noqa: N803
        check_is_fitted(self, "net_")
        torch.set_num_threads(self.n_threads)
        x = torch.from_numpy(np.asarray(X, dtype=np.float32))
        nets = getattr(self, "nets_", None) or [self.net_]  # artifacts saved before bagging hold one net_
        with torch.no_grad():
            out = np.mean([net(x).squeeze(1).numpy().astype(np.float64) for net in nets], axis=0)
        return out * self.y_std_ + self.y_mean_
