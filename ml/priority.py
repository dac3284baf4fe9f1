"""The priority score: where would a peso of subsidy reach the most households that are offline for reasons
other than their circumstances?

Two quantities on comparable (logarithmic) scales:

* ``households_offline`` = households × (1 − share/100): households without internet, with households =
  population / persons_per_household (the dbt var, 3.5 persons: census 2017) and the share the census one
  when known, else the model's prediction. Enters as ``log10(1 + households_offline)``: one unit = ten
  times as many offline households.
* ``shortfall_score`` = (√predicted − √actual) / h, the out-of-fold shortfall below expectation measured on
  the model's sqrt scale (which does not vanish near 0 %: 0.5 % against an expected 3 % is a large
  shortfall, 40 % against 42.5 % a small one) in units of the district's own 90 % interval half-width ``h``
  on that scale. 1 = at the lower edge of the 90 % interval; 0 = at expectation; negative = above it.
  "Expected" is the spatial-CV prediction from a model that never saw the district's department, so a
  district's own census value cannot have fitted its shortfall away. Null when the census share is unknown.

    priority_score = log10(1 + households_offline) + min(max(shortfall_score, 0), SHORTFALL_CAP)

So one interval half-width below expectation weighs as much as ten times the offline households: a district
of 1,000 offline households at the interval's lower edge (score 4.0) ties with one of 10,000 at expectation.
Districts above expectation or without a census share get no shortfall term (no evidence of one); the cap
(3 half-widths) stops one extreme residual from outweighing everything else. ``priority_rank`` 1 = highest
score, ties by ubigeo. The divide index is not an input (it already contains 100 − internet_pct and is kept
as a separate, descriptive ranking).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import yaml

from brecha.config import DBT_PROJECT_DIR

SHORTFALL_CAP = 3.0


@cache
def persons_per_household() -> float:
    """The dbt var ``persons_per_household`` (one home for the households-from-population rule)."""
    doc = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text(encoding="utf-8"))
    return float(doc["vars"]["persons_per_household"])


def shortfall_score(predicted_pct: pd.Series, actual_pct: pd.Series, half_width_scale: pd.Series) -> pd.Series:
    """(√predicted − √actual) / half-width on the sqrt scale; null when the actual share is unknown."""
    diff = np.sqrt(predicted_pct.clip(lower=0)) - np.sqrt(actual_pct.clip(lower=0))
    return diff / half_width_scale.where(half_width_scale > 0)


def priority(population: pd.Series, predicted_pct: pd.Series, actual_pct: pd.Series,
             half_width_scale: pd.Series) -> pd.DataFrame:
    """households_offline, shortfall_score, priority_score and priority_rank (same index as the inputs)."""
    share = actual_pct.where(actual_pct.notna(), predicted_pct)
    households = population.astype(float) / persons_per_household()
    offline = (households * (1 - share / 100)).clip(lower=0).fillna(0)
    short = shortfall_score(predicted_pct, actual_pct, half_width_scale)
    score = np.log10(1 + offline) + short.clip(lower=0, upper=SHORTFALL_CAP).fillna(0)
    order = pd.DataFrame({"s": -score.round(12), "u": score.index}).sort_values(["s", "u"], kind="stable")
    rank = pd.Series(np.arange(1, len(order) + 1), index=order.index).reindex(score.index)
    return pd.DataFrame({"households_offline": offline, "shortfall_score": short, "priority_score": score,
                         "priority_rank": rank})
