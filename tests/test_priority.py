"""The priority score on constructed districts (ml/priority.py): households offline and the out-of-fold
shortfall on the sqrt scale, in units of the district's own interval."""

from __future__ import annotations

import numpy as np
import pandas as pd

from brecha_ml.priority import SHORTFALL_CAP, persons_per_household, priority, shortfall_score

HALF_WIDTH = 0.6  # a typical 90 % half-width on the sqrt scale for a low-share district


def _score(rows: dict[str, tuple[float, float, float | None]]) -> pd.DataFrame:
    """rows: ubigeo -> (population, predicted %, actual % or None)."""
    idx = list(rows)
    pop = pd.Series([rows[u][0] for u in idx], index=idx, dtype=float)
    pred = pd.Series([rows[u][1] for u in idx], index=idx, dtype=float)
    actual = pd.Series([np.nan if rows[u][2] is None else rows[u][2] for u in idx], index=idx, dtype=float)
    return priority(pop, pred, actual, pd.Series(HALF_WIDTH, index=idx))


def test_a_large_district_far_below_expectation_outranks_a_small_one_at_expectation() -> None:
    out = _score({"010101": (3_000, 4.0, 4.0),  # small, exactly as expected
                  "020202": (133_000, 5.7, 2.8)})  # large, 2.9 pp below expectation (the example)
    assert out.loc["020202", "priority_rank"] == 1 and out.loc["010101", "priority_rank"] == 2
    assert out.loc["010101", "shortfall_score"] == 0
    assert out.loc["020202", "shortfall_score"] > 1  # below the lower edge of its interval


def test_the_model_matters_a_shortfall_outranks_ten_times_fewer_households_at_expectation() -> None:
    # same district size: the one below expectation first
    same = _score({"010101": (20_000, 3.0, 3.0), "010102": (20_000, 3.0, 0.5)})
    assert same.loc["010102", "priority_rank"] == 1
    # one interval half-width below expectation is worth ten times the offline households: 1.5 half-widths
    # below beats 10× the households at expectation, half a half-width below does not
    def below(k: float) -> float:
        return float((np.sqrt(3.0) - k * HALF_WIDTH) ** 2)

    big = 200_000
    assert _score({"010101": (big, 3.0, 3.0), "010102": (big / 10, 3.0, below(1.5))}).loc["010102", "priority_rank"] == 1
    assert _score({"010101": (big, 3.0, 3.0), "010102": (big / 10, 3.0, below(0.5))}).loc["010101", "priority_rank"] == 1


def test_the_shortfall_does_not_vanish_near_zero() -> None:
    near_zero = shortfall_score(pd.Series([3.0]), pd.Series([0.5]), pd.Series([HALF_WIDTH]))[0]
    high = shortfall_score(pd.Series([42.5]), pd.Series([40.0]), pd.Series([HALF_WIDTH]))[0]
    # 2.5 pp in both cases; near 0 % it is a far larger departure from expectation
    assert near_zero > 1.5 and high < 0.5 and near_zero > 5 * high


def test_households_offline_unknown_targets_and_ties() -> None:
    out = _score({"030303": (35_000, 10.0, None),  # unknown census share: the prediction gives the offline share
                  "030302": (35_000, 10.0, None),  # identical: the tie goes to the smaller ubigeo
                  "030301": (35_000, 30.0, 10.0)})  # far below expectation, far beyond the cap
    hh = 35_000 / persons_per_household()
    np.testing.assert_allclose(out.loc["030303", "households_offline"], hh * 0.9)
    assert np.isnan(out.loc["030303", "shortfall_score"])
    np.testing.assert_allclose(out.loc["030303", "priority_score"], np.log10(1 + hh * 0.9))
    np.testing.assert_allclose(out.loc["030301", "priority_score"], np.log10(1 + hh * 0.9) + SHORTFALL_CAP)
    assert list(out.sort_values("priority_rank").index) == ["030301", "030302", "030303"]
    assert persons_per_household() == 3.5  # the dbt var persons_per_household
