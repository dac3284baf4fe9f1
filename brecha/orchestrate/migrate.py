"""`brecha migrate-to-lake`: move an embedded warehouse into an empty lake in one command, its history included.

What cannot be rebuilt is copied, in one lake snapshot: the raw layer (every landed row and the batches' bookkeeping:
``raw.*``), the model runs and everything they wrote (``ml.*``: earlier runs too, so ``brecha runs`` and the drift of
the next training see them) and the ledgers (``ops.*``: gates, validations, publish checks and the embedded file's
own publish ledger ``ops.snapshots``, kept as history). The tables are created first with the project's own DDL
(``brecha.landing.ingest.ensure_tables``, ``brecha_ml.store.ensure_tables``: on the lake without keys), then filled
by name with ``INSERT ... SELECT`` from the embedded file attached read-only; a table the DDL does not know is copied
as it is (``CREATE TABLE ... AS``). What can be rebuilt is: one ``dbt build`` of every model (the prediction and
cluster marts read the copied ``ml.*``), both Great Expectations gates, then the lake's marts are compared with the
embedded file's (``brecha.warehouse.lake_compare``) and, when every one is equal, the lake is published (a lake
snapshot; ``brecha.warehouse.lake_publish``). The embedded file is only read: it stays as it was.

The model artifacts (``ml.model_runs.artifact_path``) stay where they are, under the embedded home: run it in that
home (``. $BRECHA_HOME/lake.env`` there) and nothing moves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from brecha.core.errors import BrechaError
from brecha.core.lake import ALIAS, redact, sql_literal
from brecha.core.runlock import hold
from brecha.core.settings import Settings, using
from brecha.orchestrate import steps

SOURCE = "embedded"  # the alias the embedded file is attached under
COPIED_SCHEMAS = ("raw", "ml", "ops")


@dataclass
class MigrationResult:
    source: Path
    tables: int = 0
    rows: int = 0
    model_runs: int = 0
    batches: int = 0
    ledger_rows: int = 0  # ops.* rows carried over
    marts_equal: int = 0
    marts: int = 0
    snapshot_version: int | None = None
    compaction: object | None = None  # brecha.warehouse.lake_publish.Compaction, after the publish
    seconds: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        times = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        return (f"migrated {self.source} to the lake: {self.tables} tables, {self.rows:,} rows copied (raw, ml, ops: "
                f"{self.batches} landing batches, {self.model_runs} model runs, {self.ledger_rows:,} ledger rows), "
                f"every model rebuilt and both gates passed, {self.marts_equal} of {self.marts} marts equal to the "
                f"embedded file's; published as lake snapshot {self.snapshot_version} ({times})"
                + (f"; {self.compaction}" if self.compaction else ""))


def _tables(con, catalog: str, schemas: tuple[str, ...]) -> list[tuple[str, str]]:
    return [tuple(r) for r in con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name IN "
        f"({', '.join('?' for _ in schemas)}) ORDER BY ALL", [catalog, *schemas]).fetchall()]


def _count(con, catalog: str, schema: str, table: str) -> int:
    return con.execute(f'SELECT count(*) FROM "{catalog}"."{schema}"."{table}"').fetchone()[0]


def copy_history(settings: Settings, source: Path) -> MigrationResult:
    """Copy ``raw.*``, ``ml.*`` and ``ops.*`` of the embedded file ``source`` into the (empty) lake, in one
    transaction (one lake snapshot)."""
    from brecha.core.db import connect, table_exists
    from brecha.landing.ingest import ensure_tables as ensure_raw
    from brecha_ml.store import ensure_tables as ensure_ml

    result = MigrationResult(source=source)
    with using(settings), hold("brecha migrate-to-lake"):
        con = connect()
        try:
            try:
                con.execute(f"ATTACH {sql_literal(str(source))} AS {SOURCE} (READ_ONLY)")
            except Exception as err:  # noqa: BLE001 - a locked or damaged file: say which and why
                raise BrechaError(f"{source}: cannot open the embedded warehouse read-only ({err}). Another process "
                                  "may be writing it (a `brecha run` there): wait until it ends") from None
            if table_exists(con, "raw", "_batches", ALIAS) and _count(con, ALIAS, "raw", "_batches"):
                raise BrechaError(f"the lake {redact(settings.lake or '')} already holds a warehouse "
                                  f"({_count(con, ALIAS, 'raw', '_batches')} landing batches): migrate into an empty "
                                  "lake (a new catalog database and data path). A migration that stopped after its "
                                  "copy is finished by hand: `brecha build`, `brecha validate`, `brecha publish`")
            wanted = _tables(con, SOURCE, COPIED_SCHEMAS)
            if ("raw", "_batches") not in wanted or not _count(con, SOURCE, "raw", "_batches"):
                raise BrechaError(f"{source} holds no landed batch (raw._batches): nothing to migrate")
            con.execute("BEGIN")
            ensure_raw(con)
            ensure_ml(con)
            made = set(_tables(con, ALIAS, COPIED_SCHEMAS))
            for schema, table in wanted:
                target, origin = f'{ALIAS}.{schema}."{table}"', f'{SOURCE}.{schema}."{table}"'
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {ALIAS}.{schema}")
                if (schema, table) in made:
                    con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM {origin}")
                else:
                    con.execute(f"CREATE TABLE {target} AS SELECT * FROM {origin}")
                rows = _count(con, SOURCE, schema, table)
                result.tables += 1
                result.rows += rows
                result.ledger_rows += rows if schema == "ops" else 0
            result.batches = _count(con, SOURCE, "raw", "_batches")
            if table_exists(con, "ml", "model_runs", SOURCE):
                result.model_runs = con.execute(f"SELECT count(DISTINCT run_id) FROM {SOURCE}.ml.model_runs").fetchone()[0]
            con.execute(f"CALL {ALIAS}.set_commit_message('brecha', 'migrate-to-lake: raw, ml and ops of {source}')")
            con.execute("COMMIT")
        finally:
            con.close()
    return result


def compare_marts(settings: Settings, source: Path) -> tuple[int, int, list[str]]:
    """The lake's marts against the embedded file's: (equal, compared, the differences)."""
    from brecha.core.db import connect
    from brecha.warehouse.lake_compare import compare

    with using(settings):
        con = connect()
        try:
            con.execute(f"ATTACH {sql_literal(str(source))} AS {SOURCE} (READ_ONLY)")
            diffs = compare(con, SOURCE, ALIAS)
        finally:
            con.close()
    return sum(1 for d in diffs if not d.problems), len(diffs), [str(d) for d in diffs if d.problems]


def migrate_to_lake(settings: Settings, source: Path | None = None,
                    say: Callable[[str], None] | None = None) -> MigrationResult:
    """Move the embedded warehouse ``source`` (default: the home's ``brecha.duckdb``) into the lake of ``settings``:
    copy its history, rebuild the rest, check the marts equal, publish. Holds the lake's run lock throughout.
    ``say`` gets a line as each of the five steps starts and ends (the command line prints them on stderr)."""
    say = say or (lambda _line: None)
    if settings.storage != "lake":
        raise BrechaError("migrate-to-lake writes the lake: set BRECHA_LAKE and BRECHA_LAKE_DATA first (`make lake-up`, "
                          "then `. $BRECHA_HOME/lake.env`)")
    source = Path(source or settings.paths.db).resolve()
    if not source.is_file():
        raise BrechaError(f"{source}: no embedded warehouse there (give its file with --from)")
    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def start(step: int, what: str) -> None:
        say(f"[{step}/5] {what} ...")

    def lap(name: str, done: str = "") -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = now - clock
        clock = now
        say(f"      {name} done in {seconds[name]:.1f} s{': ' + done if done else ''}")

    say(f"migrating {source} into the lake {redact(settings.lake or '')}")
    with using(settings), hold("brecha migrate-to-lake"):
        start(1, "copying raw.*, ml.* and ops.* (the history) in one lake snapshot")
        result = copy_history(settings, source)
        lap("copy", f"{result.tables} tables, {result.rows:,} rows")
        start(2, "dbt build of every model on the lake")
        steps.dbt_build(settings)  # every model: the prediction and cluster marts read the copied ml.*
        lap("dbt build")
        start(3, "both Great Expectations gates")
        steps.validate(settings, "all")
        lap("gates")
        start(4, "comparing every mart with the embedded file's")
        result.marts_equal, result.marts, problems = compare_marts(settings, source)
        lap("compare", f"{result.marts_equal} of {result.marts} equal")
        if problems or not result.marts:
            raise BrechaError(f"the lake's marts are not the embedded file's ({result.marts_equal} of {result.marts} "
                              "equal), so the lake was not published: " + "; ".join(problems[:5]))
        start(5, "publishing a lake snapshot")
        published = steps.publish(settings)
        result.snapshot_version, result.compaction = published.snapshot_version, published.compaction
        lap("publish", f"lake snapshot {result.snapshot_version}")
    result.seconds = seconds
    return result
