"""Concurrent what-ifs answered by one model call: the cost of applying the model is per call, hardly per row.

Applying the served model to two rows (baseline and scenario) costs about the same as applying it to sixteen:
scikit-learn's input checks and MAPIE's fold models run once per call. Requests that arrive while a call is
running wait for it to finish and then go together in the next one (dynamic batching), so under concurrent
load each model call serves several requests. Each request gets back exactly its own rows. The calls run in one
background thread per server process (started by `brecha serve` with OMP_NUM_THREADS=1 like the others).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class _Pending:
    run_id: str
    frame: pd.DataFrame
    departments: pd.Series
    future: Future = field(default_factory=Future)


class Batcher:
    """One background thread applies the model; requests queue their rows and wait for their own answer."""

    def __init__(self, predict: Callable[..., pd.DataFrame]) -> None:
        self._predict = predict  # (run_id, features, departments=) -> predictions with the features' index
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._serial = 0

    def predict(self, run_id: str, frame: pd.DataFrame, departments: pd.Series) -> pd.DataFrame:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="whatif-batcher", daemon=True)
                self._thread.start()
        item = _Pending(run_id, frame, departments)
        self._queue.put(item)
        return item.future.result()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]  # wait for one, then take everything queued meanwhile
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for run_id in dict.fromkeys(p.run_id for p in batch):  # a publish may change the run mid-batch
                self._call([p for p in batch if p.run_id == run_id])

    def _call(self, items: list[_Pending]) -> None:
        keys = list(range(self._serial, self._serial + len(items)))
        self._serial += len(items)
        try:
            joined = pd.concat([p.frame for p in items], keys=keys)
            departments = pd.concat([p.departments for p in items], keys=keys)
            out = self._predict(items[0].run_id, joined, departments=departments)
            for key, p in zip(keys, items, strict=True):
                p.future.set_result(out.loc[key])
        except BaseException as err:  # every waiting request gets the error, none hangs
            for p in items:
                if not p.future.done():
                    p.future.set_exception(err)
