"""What-if scenarios that agree with the map: one district's features with some overridden, answered from its
published prediction.

* **Baseline** = the district's published prediction and 90 % interval (``marts.mart_district_priorities``: the
  number the lookup, the atlas and the map show; out of fold for a district with a census share).
* **Scenario** = baseline + (final model at the scenario − final model at the observed features), the interval
  moved by the same change, both clipped to 0–100. The final model (fitted on every district with a share)
  gives the *change*; the published number stays the starting point, so a what-if that changes nothing
  answers exactly what the map shows.
* **Features computed from an overridden one** are recomputed where the feature table computes them from it
  (``DERIVED``: e.g. density from population, 3G-or-better coverage at least the 4G coverage) and otherwise held
  at the district's values and named, with the reason (``HELD_FIXED``: composites INEI or PNUD compute from data
  the warehouse does not hold, such as the food-vulnerability index or the IDH). The ``nb_*`` features and the
  distance to an urban centre average or measure *other* districts, so one district's override leaves its own
  unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

INTERVAL = ["predicted_internet_pct", "lower_90", "upper_90"]


@dataclass(frozen=True)
class Derived:
    feature: str  # recomputed
    rule: str  # in words
    # (scenario frame so far, baseline frame) -> the recomputed column
    compute: Callable[[pd.DataFrame, pd.DataFrame], pd.Series]


def _pow(x: pd.Series) -> pd.Series:
    return np.power(10.0, x.astype(float))


def _count_ratio(col: str) -> Callable[[pd.DataFrame, pd.DataFrame], pd.Series]:
    """new/old of a count stored as log10(1 + count)."""
    def ratio(s: pd.DataFrame, b: pd.DataFrame) -> pd.Series:
        old = _pow(b[col]) - 1
        return (_pow(s[col]) - 1) / old.where(old > 0)
    return ratio


_centres = _count_ratio("log_populated_centres")
_stations = _count_ratio("log_base_stations")

# overridden feature -> the features computed from it, in the order they are recomputed
DERIVED: dict[str, tuple[Derived, ...]] = {
    "log_population": (
        Derived("log_density", "log10(population / area): moves with log_population",
                lambda s, b: b["log_density"] + (s["log_population"] - b["log_population"])),
        Derived("centres_per_1k_pop", "populated centres per 1,000 inhabitants, over the new population",
                lambda s, b: b["centres_per_1k_pop"] / _pow(s["log_population"] - b["log_population"])),
        Derived("base_stations_per_10k_pop", "base stations per 10,000 inhabitants, over the new population",
                lambda s, b: b["base_stations_per_10k_pop"] / _pow(s["log_population"] - b["log_population"])),
        Derived("log_catchment_population", "population within 30 km, with the district's own population changed",
                lambda s, b: np.log10((_pow(b["log_catchment_population"]) + _pow(s["log_population"])
                                       - _pow(b["log_population"])).clip(lower=1))),
    ),
    "log_area": (
        Derived("log_density", "log10(population / area): moves against log_area",
                lambda s, b: b["log_density"] - (s["log_area"] - b["log_area"])),
    ),
    "log_populated_centres": (
        Derived("centres_per_1k_pop", "populated centres per 1,000 inhabitants, with the new count of centres",
                lambda s, b: b["centres_per_1k_pop"] * _centres(s, b)),
    ),
    "log_base_stations": (
        Derived("base_stations_per_10k_pop", "base stations per 10,000 inhabitants, with the new count",
                lambda s, b: b["base_stations_per_10k_pop"] * _stations(s, b)),
    ),
    "pct_centres_4g": (
        Derived("pct_centres_3g_plus", "a centre with 4G has 3G or better: at least pct_centres_4g",
                lambda s, b: np.maximum(b["pct_centres_3g_plus"], s["pct_centres_4g"])),
    ),
    "poverty_pct": (
        Derived("extreme_poverty_pct", "the extremely poor are poor: at most poverty_pct",
                lambda s, b: np.minimum(b["extreme_poverty_pct"], s["poverty_pct"])),
    ),
    "extreme_poverty_pct": (
        Derived("poverty_pct", "the extremely poor are poor: poverty_pct at least extreme_poverty_pct",
                lambda s, b: np.maximum(b["poverty_pct"], s["extreme_poverty_pct"])),
    ),
}

_FOOD = ("food_vulnerability_pct", "INEI's food-vulnerability index is a composite of poverty, services, health and "
         "nutrition computed outside the warehouse: held at the district's value")
_IDH = ("idh", "PNUD's human development index (life expectancy, education, income per capita) is computed "
        "outside the warehouse: held at the district's value")
_FIBRE = ("fibre_share_pct", "the technology mix of fixed connections is not known for the scenario: held")
_SHARE_4G = ("share_base_stations_4g", "the 4G share of base stations is not known for the scenario: held")
# overridden feature -> features that depend on it in reality but are not recomputed, with the reason
HELD_FIXED: dict[str, tuple[tuple[str, str], ...]] = {
    "poverty_pct": (_FOOD, _IDH),
    "extreme_poverty_pct": (_FOOD, _IDH),
    "electricity_pct": (_FOOD,),
    "water_pct": (_FOOD,),
    "sewage_pct": (_FOOD,),
    "fixed_connections_per_100_households": (_FIBRE,),
    "log_base_stations": (_SHARE_4G,),
}


@dataclass(frozen=True)
class Scenario:
    features: pd.DataFrame  # the scenario rows (same index and columns as the baseline rows)
    recomputed: dict[str, str]  # feature -> rule
    held_fixed: dict[str, str]  # feature -> reason


def scenario_features(baseline: pd.DataFrame, overrides: Mapping[str, float | pd.Series]) -> Scenario:
    """The baseline rows with ``overrides`` applied and the features computed from them recomputed. A feature
    given explicitly is never recomputed. Only features of ``baseline``'s columns are touched."""
    s = baseline.astype(float).copy()
    for name, value in overrides.items():
        s[name] = value
    recomputed, held = {}, {}
    for name in overrides:
        for d in DERIVED.get(name, ()):
            if d.feature in overrides or d.feature not in s.columns:
                continue
            s[d.feature] = d.compute(s, baseline).astype(float)
            recomputed[d.feature] = d.rule
        for feature, reason in HELD_FIXED.get(name, ()):
            if feature not in overrides and feature in s.columns:
                held[feature] = reason
    return Scenario(s, recomputed, held)


def from_published(published: pd.DataFrame, model_baseline: pd.DataFrame,
                   model_scenario: pd.DataFrame) -> pd.DataFrame:
    """The scenario: the published prediction and interval moved by the final model's change (scenario − baseline),
    clipped to 0–100; same index as ``published``."""
    change = model_scenario["predicted_internet_pct"].to_numpy(float) - \
        model_baseline["predicted_internet_pct"].to_numpy(float)
    out = published[INTERVAL].astype(float).add(pd.Series(change, index=published.index), axis=0).clip(0, 100)
    return out
