"""Accuracy where the census is silent: ``python -m tools.withheld [--sets 20] [--seed 42] [--compare-only]``.

Reads the marts of ``$BRECHA_HOME`` (e.g. a warehouse built from the real extracts) and, for each of ``--sets`` random
sets of 3-6 departments (``brecha_ml.withheld.department_sets``), does what ``brecha train`` does on a warehouse where
those departments have no census share (``brecha_ml.withheld.evaluate_set``). It prints the pooled R², MAE and 90 %
coverage over each set's districts and their distribution over the sets (the figures in ml/README.md). An evaluation
tool: it writes nothing.
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from brecha.core.db import session
from brecha.core.settings import Settings
from brecha_ml.config import FULL
from brecha_ml.features import GROUP, TARGET, build_feature_table, load_marts
from brecha_ml.models import ENSEMBLE, candidates
from brecha_ml.withheld import department_sets, evaluate_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--compare-only", action="store_true",
                        help="only every candidate's withheld MAE (no spatial CV, selection or intervals)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with session(Settings.from_env(os.environ).paths.db, read_only=True) as con:  # a script: its own entry point
        marts = load_marts(con)
    features = build_feature_table(marts)
    deps = sorted(marts.loc[marts[TARGET].notna(), GROUP].astype(str).unique())
    # the candidates' withheld-MAE columns (not the served model's household-weighted "mae_hh")
    columns = [f"mae_{c.name}" for c in candidates(FULL, args.seed)]
    rows = []
    with threadpool_limits(limits=1):
        for i, withheld in enumerate(department_sets(deps, args.sets, args.seed), start=1):
            t = time.perf_counter()
            rows.append(evaluate_set(marts, features, withheld, FULL, args.seed, args.compare_only))
            r = rows[-1]
            maes = " ".join(f"{k[4:]} {r[k]:.2f}" for k in columns)
            print(f"set {i:2d} [{r['departments']}] n={r['n']} MAE {maes}" + ("" if args.compare_only else
                  f"; served {r['selected']}: R² {r['r2']:.3f} MAE {r['mae']:.2f} coverage {r['coverage']:.1%} "
                  f"(min dept {r['min_department_coverage']:.0%}) width {r['mean_width_pp']:.1f} pp")
                  + f" ({time.perf_counter() - t:.0f} s)", flush=True)
    df = pd.DataFrame(rows)
    if not args.compare_only:
        q = df[["r2", "mae", "coverage", "r2_hh", "mae_hh", "mean_width_pp"]].quantile([0, 0.1, 0.5, 0.9, 1]).T
        q["mean"] = df[["r2", "mae", "coverage", "r2_hh", "mae_hh", "mean_width_pp"]].mean()
        print(q.round(3).to_string())
    each = df[columns]
    print("withheld MAE of every candidate (pp), mean ± SD over the sets:")
    for col in each.columns:
        print(f"  {col[4:]:<18} {each[col].mean():.3f} ± {each[col].std():.3f}")
    best_single = min((c for c in each.columns if c != f"mae_{ENSEMBLE}"), key=lambda c: each[c].mean())
    gain = each[best_single].mean() - each[f"mae_{ENSEMBLE}"].mean()
    print(f"ensemble vs its best single model ({best_single[4:]}): {gain:+.3f} pp mean MAE "
          f"({'earns' if gain >= FULL.ensemble_margin_pp else 'does not earn'} the {FULL.ensemble_margin_pp:.2f} pp margin)")


if __name__ == "__main__":
    main()
