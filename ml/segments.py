"""District typology: KMeans on standardised covariates, k chosen by silhouette, clusters named from
their centroids in plain words (e.g. "high-altitude, poor, little 4G")."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sklearn.cluster import KMeans
from sklearn.impute import SimpleImputer
from sklearn.metrics import silhouette_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

# feature -> (word when the centroid is well above the national mean, word when well below)
SEGMENT_FEATURES: dict[str, tuple[str, str]] = {
    "altitude_m": ("high-altitude", "lowland"),
    "poverty_pct": ("poor", "better-off"),
    "pct_centres_4g": ("good 4G", "little 4G"),
    "log_density": ("dense", "sparse"),
    "electricity_pct": ("well electrified", "poorly electrified"),
    "sewage_pct": ("sewered", "unsewered"),
    "idh": ("high human development", "low human development"),
    "log_population": ("populous", "small"),
}
WORD_Z = 0.35  # |centroid z-score| above which a feature earns its word
WORDS_PER_LABEL = 3


@dataclass
class Segmentation:
    model: Pipeline
    k: int
    silhouettes: dict[int, float]
    labels: dict[int, str]


def _label(z: pd.Series) -> str:
    strong = z[z.abs() >= WORD_Z].abs().sort_values(ascending=False, kind="stable").index[:WORDS_PER_LABEL]
    words = [SEGMENT_FEATURES[f][0] if z[f] > 0 else SEGMENT_FEATURES[f][1] for f in strong]
    return ", ".join(words) if words else "average on every covariate"


def fit_segments(features: pd.DataFrame, ks: tuple[int, ...], seed: int) -> Segmentation:
    X = features[list(SEGMENT_FEATURES)]  # noqa: N806
    prep = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler())
    Z = prep.fit_transform(X)  # noqa: N806
    best, sil = None, {}
    for k in ks:
        km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(Z)
        sil[k] = float(silhouette_score(Z, km.labels_, sample_size=None))
        if best is None or sil[k] > sil[best[0]]:
            best = (k, km)
    k, km = best
    centroids = pd.DataFrame(km.cluster_centers_, columns=list(SEGMENT_FEATURES))
    labels: dict[int, str] = {}
    for seg, z in centroids.iterrows():
        text = _label(z)
        if text in labels.values():
            text = f"{text} ({seg + 1})"
        labels[int(seg)] = text
    model = Pipeline([*prep.steps, ("kmeans", km)])
    return Segmentation(model, k, sil, labels)


def assign(seg: Segmentation, features: pd.DataFrame) -> pd.DataFrame:
    ids = seg.model.predict(features[list(SEGMENT_FEATURES)])
    return pd.DataFrame({"segment_id": ids.astype(int) + 1,
                         "segment_label": [seg.labels[int(i)] for i in ids]}, index=features.index)


def profiles(seg: Segmentation, features: pd.DataFrame, assigned: pd.DataFrame, internet: pd.Series) -> pd.DataFrame:
    """One row per segment: size, label, a sentence from its centroid, and centroid columns (member means)."""
    rows = []
    df = features[list(SEGMENT_FEATURES)].join(assigned).assign(internet_pct=internet)
    for sid, g in df.groupby("segment_id", sort=True):
        mean = g[list(SEGMENT_FEATURES)].mean()
        known = g["internet_pct"].dropna()
        desc = (f"{len(g)} districts ({seg.labels[sid - 1]}): altitude ~{mean['altitude_m']:,.0f} m, poverty "
                f"{mean['poverty_pct']:.0f} %, electricity {mean['electricity_pct']:.0f} %, sewage "
                f"{mean['sewage_pct']:.0f} %, 4G in {mean['pct_centres_4g']:.0f} % of populated centres, density "
                f"~{10 ** mean['log_density']:,.0f}/km²; census internet {known.mean():.1f} % on average"
                f" ({len(known)} districts with a known share).")
        rows.append({"segment_id": int(sid), "segment_label": seg.labels[sid - 1], "n_districts": len(g),
                     "description": desc, **{f"centroid_{c}": float(mean[c]) for c in SEGMENT_FEATURES},
                     "mean_internet_pct": float(known.mean()) if len(known) else None})
    return pd.DataFrame(rows)
