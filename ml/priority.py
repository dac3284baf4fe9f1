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

import textwrap

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


# --- the README's figures of both lenses, from a run's marts -----------------------------------------------------

README_START = "<!-- priority:start (generated by `python -m tools.readme_figures priority --readme README.md`) -->"
README_END = "<!-- priority:end -->"
GROUP_NAMES = {LIMA_CALLAO: "Lima Metropolitana and Callao", "costa": "the rest of the coast", "sierra": "the Andes",
               "selva": "the Amazon", "": "department unknown"}
README_COLUMNS = ("run_id", "ubigeo", "district", "department", "internet_pct", "national_rank", "priority_rank",
                  "offline_priority_rank", "error_group", "error_group_mae_pp", "shortfall_weight")


def _names(rows: pd.DataFrame) -> str:
    """``A (DEPARTMENT), B (DEPARTMENT) and C (DEPARTMENT)``: names as the mart (INEI's reference) writes them."""
    names = [f"{r.district} ({r.department})" for r in rows.itertuples(index=False)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def readme_block(frame: pd.DataFrame, first: int = 5) -> str:
    """The README's figures of both lenses from ``frame`` (``marts.mart_district_priorities``, README_COLUMNS): the
    divide lens's first ``first`` names, the median census share online of its top 20 and how many of them lie in
    Lima Metropolitana or Callao, how many of its top 50 are in the divide index's top 500; the households-offline
    lens's first names and its top 20 in Lima Metropolitana and in Callao; each error group's out-of-fold MAE and
    shortfall weight."""
    if frame.empty:
        raise ValueError("marts.mart_district_priorities is empty: run `brecha run` (or `brecha train` and `brecha "
                         "build`) first")
    runs = sorted(frame["run_id"].dropna().unique())
    divide = frame.sort_values(["priority_rank", "ubigeo"])
    divide = divide[divide["priority_rank"].notna()]
    offline = frame[frame["offline_priority_rank"].notna()].sort_values(["offline_priority_rank", "ubigeo"])
    top20, top50, off20 = divide.head(20), divide.head(50), offline.head(20)
    province = lambda rows: rows["ubigeo"].astype(str).str[:4]  # noqa: E731
    median = top20["internet_pct"].median()
    lima_callao = int(province(top20).isin(LIMA_CALLAO_PROVINCES).sum())
    prose = (
        f"Run `{', '.join(runs)}`. The divide lens's top {len(top20)} start with {_names(top20.head(first))}; "
        f"median census share online {median:.1f}\u00a0%, {lima_callao} of them in Lima Metropolitana or Callao; "
        f"{int((top50['national_rank'] <= 500).sum())} of its top {len(top50)} are in the divide index's top 500. "
        f"The households-offline lens starts with {_names(off20.head(first))}: "
        f"{int((province(off20) == '1501').sum())} of its top {len(off20)} are in Lima Metropolitana and "
        f"{int((province(off20) == '0701').sum())} in Callao.")
    lines = [
        README_START,
        textwrap.fill(prose, width=118, break_long_words=False, break_on_hyphens=False),
        "",
        "| error group | districts | out-of-fold MAE (pp) | shortfall weight |",
        "|---|---|---|---|",
    ]
    groups = (frame.assign(error_group=frame["error_group"].fillna(""))
              .groupby("error_group").agg(districts=("ubigeo", "size"), mae=("error_group_mae_pp", "first"),
                                          weight=("shortfall_weight", "first"))
              .sort_values(["mae", "districts"], ascending=False))
    for group, g in groups.iterrows():
        mae = "–" if pd.isna(g.mae) else f"{g.mae:.2f}"
        weight = "–" if pd.isna(g.weight) else f"{g.weight:.2f}"
        lines.append(f"| {GROUP_NAMES.get(group, group)} | {int(g.districts):,} | {mae} | {weight} |")
    lines.append(README_END)
    return "\n".join(lines)


def readme_frame(con) -> pd.DataFrame:
    """README_COLUMNS of ``marts.mart_district_priorities`` of ``con``."""
    return con.execute(f"SELECT {', '.join(README_COLUMNS)} FROM marts.mart_district_priorities").df()
