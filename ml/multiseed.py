"""`brecha seeds`: the spatial CV of ``brecha train`` repeated for several seeds (``brecha_ml.seeds`` holds the figures
and the ``ml.seed_metrics`` table; this module drives the training's cross-validation, so ``train`` and ``seeds``
do not import each other)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from brecha_ml.config import FULL, TrainConfig
from brecha_ml.seeds import DEFAULT_SEEDS, append, format_table, latest


@dataclass
class SeedsResult:
    table: str
    seconds: float

    def __str__(self) -> str:
        return f"{self.table}\n({self.seconds:.0f} s; rows in ml.seed_metrics)"


def run(seeds: tuple[int, ...] = DEFAULT_SEEDS, config: TrainConfig = FULL) -> SeedsResult:
    """Cross-validate every candidate for each seed on the warehouse's marts; append to ``ml.seed_metrics``."""
    from brecha.core.db import session
    from brecha_ml.train import cross_validate_candidates, load_training_data

    started = time.perf_counter()
    data = load_training_data(config)
    for seed in seeds:
        t = time.perf_counter()
        rows = cross_validate_candidates(data, seed).seed_rows(time.perf_counter() - t)
        with session() as con:
            append(con, rows)
        print(f"seed {seed}: {time.perf_counter() - t:.0f} s", flush=True)
    with session(read_only=True) as con:
        table = format_table(latest(con, data.fingerprint))
    return SeedsResult(table, time.perf_counter() - started)
