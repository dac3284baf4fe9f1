"""The two priority lenses of ``marts.mart_district_priorities``: the one home of both scores.

"Where first?" has two honest answers, for two kinds of programme:

* **The divide lens** (``priority_score``, ``priority_rank``; what a universal-service fund or a rural programme
  funds): where the divide is widest, i.e. the districts with the highest divide index (low share of households
  online, little infrastructure, poor), moved up when the census share is far below what the district's profile
  predicts::

      priority_score = divide_index × (1 + shortfall_weight × min(max(shortfall_score, 0), 3) / 3)

  A district exactly as expected (or above) scores its divide index; one three interval half-widths (or more)
  below expectation, where the model is reliable, scores twice its divide index. Range 0–200.
* **The households-offline lens** (``offline_priority_score``, ``offline_priority_rank``; urban programmes):
  where the most households are offline, moved up by the same shortfall::

      offline_priority_score = households_offline × (1 + shortfall_weight × min(max(shortfall_score, 0), 3) / 3)

  Households offline, counted up to twice where the census share is far below expectation (the same factor as
  the divide lens): the order stays led by the number of households offline.

Their parts:

* ``households_offline`` = households × (1 − share/100), households = ``dim_districts.households_2025_estimated``
  (INEI's 2025 population projection / persons per household, computed once in dbt; ``households_source`` there
  says which persons per household: today the dbt var ``persons_per_household``, one national assumed figure),
  share = the census one when known, else the model's prediction.
* ``shortfall_score`` = (√predicted − √actual) / h: the out-of-fold shortfall below expectation on the model's
  sqrt scale (which does not vanish near 0 %: 0.5 % against an expected 3 % is a large shortfall, 40 % against
  42.5 % a small one) in units of the district's own 90 % interval half-width ``h`` on that scale. 1 = at the
  lower edge of the 90 % interval; 0 = at expectation; negative = above it. Null when the census share is unknown
  (no evidence of a shortfall: the term is 0).
* ``shortfall_weight`` = min(1, national out-of-fold MAE / out-of-fold MAE of the district's error group): a
  shortfall counts for less where the model is known to be weak. Error groups (``error_group``): Lima
  Metropolitana and Callao (provinces 1501 and 0701, where the model errs most), then the rest of the coast, the
  Andes and the Amazon (``brecha_ml.intervals.region_of``). The MAEs are the run's own out-of-fold residuals (pp).
  A group with no out-of-fold district gets weight 1.

Ranks: 1 = highest score, ties by ubigeo; a district without a score (no divide index) comes last.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brecha_ml.intervals import region_of

SHORTFALL_CAP = 3.0
LIMA_CALLAO = "lima_callao"
# Lima Metropolitana (the province of Lima, 1501) and the constitutional province of Callao (0701)
LIMA_CALLAO_PROVINCES = ("1501", "0701")


def shortfall_score(predicted_pct: pd.Series, actual_pct: pd.Series, half_width_scale: pd.Series) -> pd.Series:
    """(√predicted − √actual) / half-width on the sqrt scale; null when the actual share is unknown."""
    diff = np.sqrt(predicted_pct.clip(lower=0)) - np.sqrt(actual_pct.clip(lower=0))
    return diff / half_width_scale.where(half_width_scale > 0)


def error_group(ubigeo: pd.Series) -> pd.Series:
    """``lima_callao`` for Lima Metropolitana and Callao, else the natural region (costa / sierra / selva)."""
    ub = ubigeo.astype(str)
    region = region_of(ub.str[:2].to_numpy())
    return pd.Series(np.where(ub.str[:4].isin(LIMA_CALLAO_PROVINCES), LIMA_CALLAO, region), index=ubigeo.index)


def shortfall_weight(predicted_pct: pd.Series, actual_pct: pd.Series, is_out_of_fold: pd.Series,
                     groups: pd.Series) -> pd.DataFrame:
    """``error_group_mae_pp`` (out-of-fold MAE of the district's error group, pp) and ``shortfall_weight``
    (min(1, national out-of-fold MAE / that MAE); 1 where the group has no out-of-fold district)."""
    oof = is_out_of_fold.fillna(False).astype(bool) & actual_pct.notna()
    err = (actual_pct - predicted_pct).abs().where(oof)
    national = err.mean()
    group_mae = err.groupby(groups).transform("mean")
    weight = (national / group_mae).clip(upper=1.0).where(group_mae > 0).fillna(1.0)
    return pd.DataFrame({"error_group_mae_pp": group_mae, "shortfall_weight": weight})


def rank_desc(score: pd.Series) -> pd.Series:
    """1 = highest score, ties by index (ubigeo), null scores last."""
    order = pd.DataFrame({"s": -score.round(12).fillna(-np.inf), "u": score.index}).sort_values(["s", "u"],
                                                                                               kind="stable")
    return pd.Series(np.arange(1, len(order) + 1), index=order.index).reindex(score.index)


def priority(households: pd.Series, predicted_pct: pd.Series, actual_pct: pd.Series,
             half_width_scale: pd.Series, divide_index: pd.Series, is_out_of_fold: pd.Series) -> pd.DataFrame:
    """Both lenses and their parts, with the index of the inputs (the district's ubigeo)."""
    share = actual_pct.where(actual_pct.notna(), predicted_pct)
    offline = (households.astype(float) * (1 - share / 100)).clip(lower=0).fillna(0)
    short = shortfall_score(predicted_pct, actual_pct, half_width_scale)
    groups = error_group(pd.Series(predicted_pct.index.astype(str), index=predicted_pct.index))
    weights = shortfall_weight(predicted_pct, actual_pct, is_out_of_fold, groups)
    term = weights["shortfall_weight"] * short.clip(lower=0, upper=SHORTFALL_CAP).fillna(0)
    divide = divide_index.astype(float) * (1 + term / SHORTFALL_CAP)
    offline_score = offline * (1 + term / SHORTFALL_CAP)
    return pd.DataFrame({
        "households_offline": offline, "shortfall_score": short, "error_group": groups,
        "error_group_mae_pp": weights["error_group_mae_pp"], "shortfall_weight": weights["shortfall_weight"],
        "priority_score": divide, "priority_rank": rank_desc(divide),
        "offline_priority_score": offline_score, "offline_priority_rank": rank_desc(offline_score),
    })
