"""`brecha validate`: the Great Expectations gates on landed extracts and on marts.

Suites live as JSON in ``expectations/landed/`` and ``expectations/marts/`` (see ``brecha.warehouse.gx.suites``).
Every outcome is appended to ``ops.validation_results`` and to the Data Docs under ``$BRECHA_HOME/gx``;
any failed expectation raises ``GateFailed`` naming the suite, the expectation and the offending values.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from brecha.core.db import session
from brecha.core.errors import BrechaError, GateFailed
from brecha.core.settings import current, paths
from brecha.warehouse.gx import batches as batches_mod
from brecha.warehouse.gx import suites as suites_mod
from brecha.warehouse.gx.runner import Check

# Why an expectation is left out, per suite parameter without a value (see brecha.warehouse.gx.batches; previous_mean__<column>
# by its prefix).
LEFT_OUT_BECAUSE = {
    "previous_rows": "no earlier ok batch from the same input folder to compare with (a first load)",
    "previous_mean": "no earlier ok batch from the same input folder to compare with (a first load)",
    "reference_districts": "no district reference file in the latest batch",
}


@dataclass
class ValidationSummary:
    gates: tuple[str, ...]
    checks: list[Check] = field(default_factory=list)
    skipped_suites: list[str] = field(default_factory=list)
    docs: Path | None = None

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.success is False]

    @property
    def passed(self) -> int:
        return sum(c.success is True for c in self.checks)

    def left_out_reasons(self) -> dict[str, int]:
        """Why expectations were left out on this run (in words), with how many."""
        reasons: dict[str, int] = {}
        for c in self.checks:
            if c.success is None:
                why = "; ".join(dict.fromkeys(LEFT_OUT_BECAUSE.get(n.split("__")[0], f"no value for {n}")
                                              for n in c.missing_parameters))
                reasons[why] = reasons.get(why, 0) + 1
        return reasons

    def __str__(self) -> str:
        suites = len({c.suite for c in self.checks})
        left_out = sum(c.success is None for c in self.checks)
        why = self.left_out_reasons()
        left = f"{left_out} left out" + (f" ({'; '.join(f'{n}: {r}' for r, n in why.items())})" if why else "")
        without = (f"{len(self.skipped_suites)} suites without data"
                   + (f" ({'; '.join(self.skipped_suites)})" if self.skipped_suites else ""))
        return (f"validate {'+'.join(self.gates)}: {suites} suites, {self.passed} expectations passed, "
                f"{len(self.failed)} failed, {left}, {without}; Data Docs: {self.docs}")


def _failure_message(summary: ValidationSummary) -> str:
    lines = [f"{len(summary.failed)} expectation(s) failed in gate {'+'.join(summary.gates)}:"]
    for c in summary.failed:
        where = f" offending values: {'; '.join(c.sample)}" if c.sample else ""
        lines.append(f"  - suite {c.suite} ({c.asset}): {c.description} observed {c.observed}.{where}"
                     + (f" Expected because: {c.why}." if c.why else ""))
    lines.append("Fix the extract (landed gate: the files of that table in the latest batch, listed in "
                 "raw._batch_files) or the model (marts gate), or adjust the expectation in "
                 f"expectations/<gate>/<table>.json if it is wrong. Details: {summary.docs}")
    return "\n".join(lines)


def validate(suite: str = "all") -> ValidationSummary:
    """Run the ``landed`` and/or ``marts`` suites against the warehouse; raise ``GateFailed`` if one fails."""
    from brecha.warehouse.gx import record, runner

    gates = suites_mod.GATES if suite == "all" else (suite,)
    db = paths().db
    if current().storage == "embedded" and not db.exists():
        raise BrechaError(f"no warehouse at {db}: run `brecha ingest DIR` (or `brecha run`) first")
    loaded = {g: suites_mod.load(g) for g in gates}
    with session(read_only=True) as con:
        try:
            batches = [b for g in gates for b in getattr(batches_mod, g)(con, loaded[g])]
        except BrechaError as err:
            failure = err
        else:
            failure = None
    if failure is not None:
        from brecha.warehouse import gates as batch_gates

        for gate in gates:
            batch_gates.record(gate, False, str(failure))
        raise GateFailed(str(failure)) from failure
    run_id = f"validate-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{suite}"
    summary = ValidationSummary(gates, skipped_suites=[f"{b.suite.name}: {b.note}" for b in batches if b.frame is None])
    summary.checks = runner.run(batches, run_id)
    summary.docs = runner.docs_index()
    record.record(summary.checks)
    _record_gates(gates, summary)
    if summary.failed:
        raise GateFailed(_failure_message(summary))
    return summary


def _record_gates(gates: tuple[str, ...], summary: ValidationSummary) -> None:
    """Each gate's outcome for the latest batch, in ``ops.batch_gates`` (publish requires them passed)."""
    from brecha.warehouse import gates as batch_gates

    for gate in gates:
        failed = [c for c in summary.failed if c.gate == gate]
        passed = sum(c.success is True for c in summary.checks if c.gate == gate)
        detail = (f"{len(failed)} expectation(s) failed: " + "; ".join(f"{c.suite} {c.expectation}" for c in failed[:5])
                  if failed else f"{passed} expectations passed")
        batch_gates.record(gate, not failed, detail)
