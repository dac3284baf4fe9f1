"""Concurrent what-ifs answered by one model call: the cost of applying the model is per call, hardly per row.

Applying the served model to two rows (baseline and scenario) costs about the same as applying it to sixteen:
scikit-learn's input checks and MAPIE's fold models run once per call. Requests that arrive while a call is
running wait for it to finish and then go together in the next one (dynamic batching), so under concurrent
load each model call serves several requests. Each request gets back exactly its own rows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class _Pending:
    run_id: str
    frame: pd.DataFrame
    future: Future = field(default_factory=Future)


class Batcher:
    def __init__(self, predict: Callable[[str, pd.DataFrame], pd.DataFrame]) -> None:
        self._predict = predict  # (run_id, features) -> predictions with the features' index
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._running = False
        self._serial = 0

    def predict(self, run_id: str, frame: pd.DataFrame) -> pd.DataFrame:
        item = _Pending(run_id, frame)
        with self._lock:
            self._queue.append(item)
            lead = not self._running
            if lead:
                self._running = True
        if lead:  # this thread runs calls until the queue is empty; the others wait for their future
            self._drain()
        return item.future.result()

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._running = False
                    return
            for run_id in dict.fromkeys(p.run_id for p in batch):  # a publish may change the run mid-batch
                self._call([p for p in batch if p.run_id == run_id])

    def _call(self, items: list[_Pending]) -> None:
        keys = list(range(self._serial, self._serial + len(items)))  # only the draining thread gets here
        self._serial += len(items)
        try:
            joined = pd.concat([p.frame for p in items], keys=keys)
            out = self._predict(items[0].run_id, joined)
            for key, p in zip(keys, items, strict=True):
                p.future.set_result(out.loc[key])
        except BaseException as err:  # every waiting request gets the error, none hangs
            for p in items:
                if not p.future.done():
                    p.future.set_exception(err)
