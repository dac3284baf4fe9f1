"""Feature distributions per run and the population stability index (PSI) against the previous run."""

from __future__ import annotations

import numpy as np
import pandas as pd

PSI_BINS = 10
PSI_EPS = 1e-4


def psi(previous: pd.Series, current: pd.Series, bins: int = PSI_BINS) -> float | None:
    """PSI = Σ (cur − prev) · ln(cur / prev) over the previous run's decile bins (non-null values)."""
    prev, cur = previous.dropna().to_numpy(float), current.dropna().to_numpy(float)
    if len(prev) == 0 or len(cur) == 0:
        return None
    edges = np.unique(np.quantile(prev, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return float(0.0 if np.allclose(cur, edges[0]) else np.inf)
    edges[0], edges[-1] = -np.inf, np.inf
    p = np.histogram(prev, edges)[0] / len(prev) + PSI_EPS
    c = np.histogram(cur, edges)[0] / len(cur) + PSI_EPS
    return float(np.sum((c - p) * np.log(c / p)))


def summarise(features: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    rows = []
    for name in features.columns:
        s = features[name].astype(float)
        v = s.dropna()
        q = v.quantile([0.05, 0.5, 0.95]) if len(v) else pd.Series([np.nan] * 3, index=[0.05, 0.5, 0.95])
        rows.append({"feature": name, "mean": v.mean() if len(v) else None, "std": v.std() if len(v) > 1 else None,
                     "p05": q[0.05], "p50": q[0.5], "p95": q[0.95], "null_share": float(s.isna().mean()),
                     "psi_vs_previous": psi(previous[name], s) if previous is not None and name in previous else None})
    return pd.DataFrame(rows)
