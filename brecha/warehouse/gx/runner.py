"""Run the suites with Great Expectations (pandas path) in a file context under ``$BRECHA_HOME/gx``.

The context keeps every validation result and builds Data Docs at
``$BRECHA_HOME/gx/gx/uncommitted/data_docs/local_site/index.html``. ``great_expectations`` is imported here
only (it takes seconds), so importing the rest of brecha stays fast.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brecha.core.settings import paths
from brecha.warehouse.gx.batches import Batch

DATASOURCE = "warehouse"
MAX_VALUES = 10  # offending values kept per expectation


@dataclass
class Check:
    """The outcome of one expectation on one batch (also one row of ``ops.validation_results``)."""

    validated_at: dt.datetime
    run_id: str
    gate: str
    suite: str
    asset: str
    expectation: str
    column: str | None
    kwargs: dict[str, Any]
    success: bool | None  # None: left out on this run (a parameter had no value)
    observed: str
    unexpected_count: int | None
    element_count: int | None
    sample: list[str]  # offending values (up to 10)
    why: str
    missing_parameters: tuple[str, ...] = ()  # left out: the suite parameters that had no value

    @property
    def description(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.expectation}({args})"


def docs_index() -> Path:
    return paths().gx / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def _context() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    root = paths().ensure().gx
    root.mkdir(parents=True, exist_ok=True)
    ctx = gx.get_context(mode="file", project_root_dir=root)
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def _batch_definition(ctx: Any, asset_name: str) -> Any:
    try:
        source = ctx.data_sources.get(DATASOURCE)
    except (KeyError, ValueError, LookupError):
        source = ctx.data_sources.add_pandas(DATASOURCE)
    try:
        asset = source.get_asset(asset_name)
    except LookupError:
        asset = source.add_dataframe_asset(asset_name)
    try:
        return asset.get_batch_definition("whole")
    except (KeyError, ValueError, LookupError):
        return asset.add_batch_definition_whole_dataframe("whole")


def _observed(result: dict[str, Any], exception: dict[str, Any] | None) -> str:
    if exception and exception.get("raised_exception"):
        return f"error: {exception.get('exception_message')}"
    if "observed_value" in result:
        return str(result["observed_value"])
    if "unexpected_count" in result:
        return f"{result['unexpected_count']} of {result.get('element_count')} rows unexpected"
    return "column not found" if not result else str(result)


def run(batches: list[Batch], run_id: str) -> list[Check]:
    """Validate every batch; store results in the GX context and rebuild Data Docs; return one Check per expectation."""
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.core.run_identifier import RunIdentifier

    ctx = _context()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    checks: list[Check] = []
    for batch in batches:
        if batch.frame is None:
            continue
        suite = batch.suite
        kept, left_out = suite.resolvable(batch.parameters)
        for exp in left_out:
            missing = tuple(sorted(suite.parameters(exp)))
            checks.append(Check(now, run_id, suite.gate, suite.name, suite.asset, exp["type"], exp["kwargs"].get("column"),
                                exp["kwargs"], None, "left out: no " + ", ".join(missing),
                                None, None, [], exp.get("meta", {}).get("why", ""), missing))
        try:
            ctx.suites.delete(suite.name)
        except Exception:  # noqa: BLE001 - not stored yet
            pass
        gx_suite = ctx.suites.add(ExpectationSuite(name=suite.name, expectations=[dict(e) for e in kept],
                                                   meta={"asset": suite.asset, "file": str(suite.path)}))
        definition = ctx.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=suite.name, data=_batch_definition(ctx, suite.asset), suite=gx_suite))
        result = definition.run(
            batch_parameters={"dataframe": batch.frame},
            expectation_parameters={k: v for k, v in batch.parameters.items() if v is not None},
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20, "include_unexpected_rows": False},
            run_id=RunIdentifier(run_name=run_id, run_time=dt.datetime.now(dt.UTC)),
        )
        for r in result.results:
            cfg = r.expectation_config
            kwargs = {k: v for k, v in cfg.kwargs.items() if k != "batch_id"}
            res = r.result or {}
            checks.append(Check(
                now, run_id, suite.gate, suite.name, suite.asset, cfg.type, kwargs.get("column"), kwargs,
                bool(r.success), _observed(res, r.exception_info), res.get("unexpected_count"), res.get("element_count"),
                [str(v) for v in (res.get("partial_unexpected_list") or [])[:MAX_VALUES]] if not r.success else [],
                (cfg.meta or {}).get("why", ""),
            ))
    ctx.build_data_docs()
    from brecha.warehouse.gx.offline import make_offline

    make_offline(docs_index().parent)  # readable without internet: CSS/JS from the site itself, not CDNs
    return checks
