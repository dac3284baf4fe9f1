"""``brecha ingest DIR`` (one landing batch) and ``brecha rebuild-raw`` (the raw layer from the archive alone).

A batch checks every file first (recognition, required columns, encoding: nothing is written; two files at a
time), then lands all of them in one transaction: the district reference first, so the other files' ubigeos are
checked against it. Sheets are read ahead by a background thread (``readers.SheetPrefetch``) while the files
before them land: DuckDB's XLSX reader is one-threaded and the slowest part of a batch. The files after the
reference are checked ahead by two more threads (``CheckAhead``): a file's checks are one-threaded too, and cost
more than inserting its good rows. Rows are stored once per checksum: a file whose bytes were landed before is
only recorded in the new batch (``newly_landed = false``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from brecha.core.db import create_ddl, session
from brecha.core.errors import BrechaError, InputFileError
from brecha.core.files import sha256_of
from brecha.core.layouts import BOOKKEEPING_DDL, INEI_DISTRICTS, LAYOUTS, raw_table_ddl
from brecha.core.runlock import hold
from brecha.core.settings import current, paths
from brecha.landing import archive, checks, readers
from brecha.landing.plan import FilePlan
from brecha.landing.recognise import plan_file
from brecha.landing.result import FileResult, IngestResult
from brecha.landing.scan import SourceFile, inspect, walk
from brecha.landing.sql import ident, value, values

BOOKKEEPING_TABLES = ("raw._batches", "raw._batch_files", "raw._rejects")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@contextmanager
def _progress(description: str, total: int) -> Iterator[Any]:
    """A progress bar on stderr; rich draws it only on a terminal, so piped output stays clean."""
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[file]}"),
                  TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total, file="")
        yield lambda name: bar.update(task, advance=1, file=name)


def _settings(con: duckdb.DuckDBPyConnection) -> None:
    """Our own progress bar is on stderr (DuckDB's would go to stdout). Memory is capped (``Settings.memory_cap``,
    default 3 GB; DuckDB's own default is 80 % of the machine): each sheet is read into a table before its
    checks, and each file checked ahead into a table of its checked rows (``CheckAhead``), all kept until the
    batch's transaction ends (140 MB for the 575k-row coverage sheet of bench scale 10), and at scale 30 the
    process outgrew 4 GB; capped, DuckDB spills them to disk (peak 2.6 GB at scale 30 with the 3 GB cap; a
    scale-10 batch without JSON lands the same rows with a 400 MB cap, at a 0.7 GB peak). Not lower:
    the JSON reader reserves a 2 GiB buffer for a GeoJSON document of up to 1 GiB (so recognition reads one JSON
    document at a time)."""
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET memory_limit = {value(current().memory_cap)}")


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Bookkeeping tables and every raw table (empty when no file of its layout ever landed)."""
    for ddl in BOOKKEEPING_DDL:
        con.execute(create_ddl(con, ddl))
    for layout in LAYOUTS:
        con.execute(raw_table_ddl(layout))


CONVERTED = "converted"  # $BRECHA_HOME/converted: CSVs made from zips, Stata and SPSS files (brecha.landing.convert)
PLAN_THREADS = 2  # files recognised at once (hashing and DuckDB's CSV sniffer are one-threaded per file)


def _plan_folder(con: duckdb.DuckDBPyConnection, root: Path,
                 staging: Path | None = None) -> tuple[list[FilePlan], list[tuple[str, str]]]:
    """Recognise every file; raise one InputFileError (naming every bad file) before anything lands. Files are
    hashed (and copied into ``staging``, which the batch then reads: ``scan.inspect``), then recognised, two at a
    time (each thread on a cursor of its own); the outcome is taken in file order, so plans, skipped files and
    errors (their order included) are those of one file after the other."""
    files, skipped = walk(root, paths().home)
    plans: list[FilePlan] = []
    errors: list[InputFileError] = []
    local = threading.local()
    one_json = threading.Lock()
    cursors: list[duckdb.DuckDBPyConnection] = []

    def attempt(work: Any, *args: Any) -> Any:
        try:
            return work(*args)
        except Exception as err:  # noqa: BLE001 - raised again below, in file order
            return err

    def plan(src: SourceFile) -> FilePlan:
        if not hasattr(local, "con"):
            local.con = con.cursor()
            cursors.append(local.con)
        # DuckDB's JSON reader reserves 2 GiB per document (see _settings), and a cursor's last result holds
        # its reader's memory until the cursor's next query: one JSON document at a time, and every file's
        # reader released before the thread takes the next
        with one_json if src.fmt == "json" else nullcontext():
            try:
                return plan_file(local.con, src)
            finally:
                local.con.execute("SELECT 1").fetchall()

    with _progress("checking", len(files)) as step, ThreadPoolExecutor(PLAN_THREADS) as pool:
        try:
            cache = paths().home / CONVERTED
            inspected = list(pool.map(lambda path: attempt(inspect, path, root, staging, cache), files))
            holder: dict[str, str] = {}  # the same bytes are recognised once, as the first file holding them
            for src in inspected:
                if isinstance(src, SourceFile):
                    holder.setdefault(src.sha256, src.rel)
            planned = pool.map(lambda src: attempt(plan, src) if isinstance(src, SourceFile)
                               and holder[src.sha256] == src.rel else None, inspected)
            for path, src, outcome in zip(files, inspected, planned, strict=True):
                step(path.relative_to(root).as_posix())
                if isinstance(src, InputFileError):
                    errors.append(src)
                    continue
                if isinstance(src, BaseException):
                    raise src
                if holder[src.sha256] != src.rel:
                    skipped.append((src.rel, f"same bytes as {holder[src.sha256]}"))
                    continue
                if isinstance(outcome, InputFileError):
                    errors.append(outcome)
                elif isinstance(outcome, BaseException):
                    raise outcome
                else:
                    plans.append(outcome)
        finally:
            pool.shutdown(wait=True)
            for cursor in cursors:
                cursor.close()
    if errors:
        first = errors[0]
        if len(errors) > 1:
            others = "; ".join(f"{e.file}: {e.problem}" for e in errors[1:])
            raise InputFileError(first.file, first.problem, f"{first.fix}. Other files with problems: {others}",
                                 column=first.column)
        raise first
    if not plans:
        raise BrechaError(f"{root}: no extract found (skipped: {', '.join(n for n, _ in skipped) or 'nothing'}). "
                          "Point `brecha ingest` at the folder holding the CSV, XLSX and JSON files.")
    # the district reference lands first: the other files' ubigeos are checked against it
    plans.sort(key=lambda p: (p.entity != INEI_DISTRICTS.entity, p.source.rel))
    return plans, skipped


def _latest_reference(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "SELECT f.sha256 FROM raw._batch_files f JOIN raw._batches b USING (batch_id) "
        f"WHERE b.status = 'ok' AND f.entity = {value(INEI_DISTRICTS.entity)} AND f.batch_id = (SELECT max(f2.batch_id) "
        "FROM raw._batch_files f2 JOIN raw._batches b2 USING (batch_id) WHERE b2.status = 'ok' "
        f"AND f2.entity = {value(INEI_DISTRICTS.entity)}) ORDER BY f.source_file").fetchall()
    return [r[0] for r in rows]


def _load_reference(con: duckdb.DuckDBPyConnection, shas: list[str]) -> None:
    con.execute(f"CREATE OR REPLACE TEMP TABLE {checks.REF_TABLE} AS SELECT DISTINCT lpad(inei, 6, '0') AS ubigeo "
                f"FROM {INEI_DISTRICTS.table} WHERE inei IS NOT NULL AND list_contains({value(shas)}, _source_sha256)")


def _land_file(con: duckdb.DuckDBPyConnection, plan: FilePlan, loaded_at: datetime,
               with_reference: bool, sheets: readers.SheetPrefetch | None = None) -> checks.Landed:
    try:
        try:
            # a CSV is read where it is checked (one pass; the rejected rows' records, when there are any,
            # are read from the file again); a sheet is read once into a table (DuckDB's XLSX reader is
            # slow, and a second read for the records would double that): ahead, in ``sheets``, during an ingest
            select_sql = sheets.select_sql(plan) if sheets is not None and plan in sheets else \
                readers.select_sql(con, plan, landing=True)
            con.execute(checks.check_sql(plan.layout, select_sql, with_reference))
            checks.mark_duplicates(con, plan.layout)
        except duckdb.Error as err:
            raise read_error(plan.source, err, f"as {plan.entity}") from err
        _refuse_mostly_rejected(con, plan)
        return checks.land_checked(con, plan.layout, select_sql, plan.source.rel, plan.source.sha256, loaded_at)
    finally:
        with suppress(duckdb.Error):  # after a failed statement the transaction is rolled back as a whole anyway
            readers.drop_materialised(con)


LOOKAHEAD = 3  # a file may be checked while fewer files than this before it are still to land
CHECK_THREADS = 2  # files checked at once (a CSV's check runs on one thread)
AHEAD_READERS = ("csv", "wide_csv", "json_array", "geojson")  # readers whose query leaves nothing behind


class CheckAhead:
    """Files checked ahead, on the second core, while the batch lands the files before them.

    Checking a file (its one query of casts and checks, ``checks.check_sql``, which a CSV's record numbers keep
    on one thread, then ``mark_duplicates`` and the whole-file verdict) costs most of its landing; the insert of
    its good rows is the smaller part. So ``CHECK_THREADS`` background threads, each on a cursor of its own,
    check the files that follow the district reference, in landing order and at most ``LOOKAHEAD - 1`` files
    after the one landing, each into a table of its own in-memory database, ``ATTACH``ed for it alone (the
    snapshot argument of ``readers.SheetPrefetch``: the batch's transaction first touches that database after
    the check committed, so it sees the whole table). The batch's connection then lands each file in turn from
    its table, exactly as from ``_checked``: good rows in file order, rejects with their records read again from
    the file, in the one transaction. The threads check against the same district ubigeos, handed over by value (``start``). Their
    errors (a read error, decimal commas, a mostly-rejected file) are raised when the file's turn comes, through
    the same code, so with the same message. Readers whose query creates temp tables (a stacked sheet, a sheet
    not read ahead) stay on the batch's connection. ``close`` (always, after the transaction ended) stops the
    threads and detaches the databases: their tables are freed only then (DuckDB spills them under its memory
    cap, see ``_settings``), so ``LOOKAHEAD`` bounds only the work done in vain before an error.

    Measured at bench scale 10 (2 cores; the ten 350k-row ENAHO CSVs): a check costs 0.46 s alone (0.7-1.2 s
    while two checks and the sheet's read share the cores), landing from its table 0.19 s alone (0.3-0.5 s
    shared), against 0.8 s per file checked and landed in turn; a whole ``brecha ingest`` 9.8-12.1 s (about
    10 s in quiet runs) against 13.1-14.4 s, a bare DuckDB read of the same files 8.6-8.9 s. What remains is
    mostly the sheet's read: sharing the cores with the checks, it ends 7-9 s in, and the sheet's own check and
    insert (1.5 s and 1.2 s) follow it. Handing the rows over as Arrow instead (the
    thread fetches them, the batch inserts from the Arrow table, freeing it after) bounds memory but costs 0.28 s
    per insert instead of 0.19 s, and pyarrow is no dependency."""

    def __init__(self, con: duckdb.DuckDBPyConnection, plans: list[FilePlan],
                 sheets: readers.SheetPrefetch | None = None) -> None:
        from concurrent.futures import Future

        self._con = con
        self._sheets = sheets
        self._plans = [p for p in plans if p.entity != INEI_DISTRICTS.entity and (
            p.reader in AHEAD_READERS or (p.reader == "xlsx" and sheets is not None and p in sheets))]
        self._dbs = {p.source.sha256: f"_checked_{p.source.sha256[:16]}" for p in self._plans}
        self._futures: dict[str, Future[checks.Tally]] = {}
        self._turn = threading.Condition()  # guards _landed and _closing
        self._landed = 0  # files of self._plans landed so far (they land in that order)
        self._closing = False
        self._pool = ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="brecha-check") if self._plans else None
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()
        self._one_json = threading.Lock()  # DuckDB's JSON reader reserves 2 GiB (see _settings): one at a time
        self._ubigeos: list[str] | None = None
        for db in self._dbs.values():
            con.execute(f"ATTACH ':memory:' AS {ident(db)}")

    def __contains__(self, plan: FilePlan) -> bool:
        return plan.source.sha256 in self._dbs

    def start(self, with_reference: bool, ubigeos: list[str]) -> None:
        """Start checking, against ``ubigeos`` (the batch's ``checks.REF_TABLE``) when ``with_reference``."""
        if self._pool is None or self._futures:
            return
        self._ubigeos = ubigeos if with_reference else None
        for index, plan in enumerate(self._plans):
            self._futures[plan.source.sha256] = self._pool.submit(self._check, index, plan, with_reference)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor, with its copy of the district ubigeos."""
        if not hasattr(self._local, "con"):
            with self._lock:
                if self._closing:
                    raise BrechaError("landing stopped")
                self._local.con = self._con.cursor()
                self._cursors.append(self._local.con)
            if self._ubigeos is not None:
                self._local.con.execute(f"CREATE OR REPLACE TEMP TABLE {checks.REF_TABLE} AS "
                                        f"SELECT unnest({value(self._ubigeos)}::VARCHAR[]) AS ubigeo")
        return self._local.con

    def _table(self, plan: FilePlan) -> str:
        return f"{ident(self._dbs[plan.source.sha256])}.main.checked"

    def _select_sql(self, con: duckdb.DuckDBPyConnection, plan: FilePlan) -> str:
        if self._sheets is not None and plan in self._sheets:
            return self._sheets.select_sql(plan, con)
        return readers.select_sql(con, plan, landing=True)

    def _check(self, index: int, plan: FilePlan, with_reference: bool) -> checks.Tally:
        # by position, not a count of free slots: the file the batch waits for may always start
        with self._turn:
            self._turn.wait_for(lambda: self._closing or index < self._landed + LOOKAHEAD)
            if self._closing:
                raise BrechaError("landing stopped")
        cur, table = self._cursor(), self._table(plan)
        with self._json(plan, cur):
            try:
                cur.execute(checks.check_sql(plan.layout, self._select_sql(cur, plan), with_reference, table))
                checks.mark_duplicates(cur, plan.layout, table)
            except duckdb.Error as err:
                raise read_error(plan.source, err, f"as {plan.entity}") from err
            _refuse_mostly_rejected(cur, plan, table)
            return checks.tally(cur, table)

    @contextmanager
    def _json(self, plan: FilePlan, con: duckdb.DuckDBPyConnection) -> Iterator[None]:
        """One JSON file read at a time, by any thread (a check, or the rejects' records on the batch's
        connection); a cursor's last result holds its reader's memory until its next query, hence the last one."""
        if plan.reader not in ("json_array", "geojson"):
            yield
            return
        with self._one_json:
            try:
                yield
            finally:
                with suppress(duckdb.Error):
                    con.execute("SELECT 1").fetchall()

    def land(self, con: duckdb.DuckDBPyConnection, plan: FilePlan, loaded_at: datetime) -> checks.Landed:
        """Land ``plan`` from its checked table (waiting for its check; raising its error)."""
        try:
            counted = self._futures[plan.source.sha256].result()
            with self._json(plan, con):
                return checks.land_checked(con, plan.layout, self._select_sql(con, plan), plan.source.rel,
                                           plan.source.sha256, loaded_at, self._table(plan), counted)
        finally:
            with self._turn:
                self._landed += 1
                self._turn.notify_all()

    def stop(self) -> None:
        """Cancel the checks not started and interrupt those running (without waiting: ``close`` waits)."""
        with self._turn:
            self._closing = True
            self._turn.notify_all()
        for future in self._futures.values():
            future.cancel()
        with self._lock:
            for cursor in self._cursors:
                cursor.interrupt()

    def close(self) -> None:
        """Stop, wait for the threads, detach the checked tables' databases. Call it outside the batch's
        transaction, after ``SheetPrefetch.stop`` (a check may be waiting for a sheet)."""
        self.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for cursor in self._cursors:
            cursor.close()
        for db in self._dbs.values():
            self._con.execute(f"DETACH DATABASE IF EXISTS {ident(db)}")


def _reject_fix(v: checks.Verdict, con: duckdb.DuckDBPyConnection) -> str:
    reason = v.reason or ""
    if reason.startswith("unparseable"):
        return ("Check how its numbers are written: a spreadsheet saved with a Spanish locale writes decimal commas "
                "(12,5) and thousands points (1.234); export it again as CSV with '.' decimals and no thousands "
                "separator (or use the file as published). If the values are right, the file is not the layout "
                "it was taken for: remove it from the folder")
    if reason == "unknown ubigeo":
        known = con.execute(f"SELECT count(*) FROM {checks.REF_TABLE}").fetchone()[0] \
            if con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND temporary",
                           [checks.REF_TABLE]).fetchone()[0] else 0
        return (f"Its codes do not match the district reference it was checked against ({known:,} districts): "
                "check that the district reference (ubigeo_distrito.csv) in the folder is complete and unaltered, "
                "and that this file's codes are 6-digit INEI ubigeos")
    if reason.startswith("malformed code"):
        return "Codes must be digits (INEI ubigeo): restore the column as published, or remove the file"
    return "Download it again or use the file as published, or remove it from the folder"


def _refuse_mostly_rejected(con: duckdb.DuckDBPyConnection, plan: FilePlan, table: str = checks.CHECKED) -> None:
    """A file that would lose most of its rows is the wrong layout or damaged as a whole: stop the batch."""
    from brecha.landing.recognise import decimal_comma_sql, decimal_commas

    v = checks.verdict(con, table)
    commas = con.execute(
        "SELECT count(*), any_value(__problem.column_name ORDER BY __row), any_value(__problem.value_text ORDER BY __row) "
        f"FROM {table} WHERE __problem.reason = 'unparseable DOUBLE' "
        f"AND {decimal_comma_sql('__problem.value_text')}").fetchone()
    if commas[0] and commas[0] >= 0.05 * v.total:  # decimal commas are a property of the whole file
        con.execute(f"DROP TABLE IF EXISTS {table}")
        raise decimal_commas(plan.source, commas[1], commas[2])
    if not v.whole_file:
        return
    con.execute(f"DROP TABLE IF EXISTS {table}")
    share = 100 * v.rejected / v.total
    raise InputFileError(
        plan.source.rel,
        f"{v.rejected:,} of its {v.total:,} rows would be rejected ({share:.0f} %) as {plan.entity}; "
        f"{v.count:,} of them for '{v.reason}' (e.g. value '{v.example}' at row {v.row}). A file that loses most "
        "of its rows is damaged or not the layout it looks like, so nothing was landed",
        _reject_fix(v, con), column=v.column)


def read_error(src: SourceFile, err: Exception, what: str = "") -> InputFileError:
    """A reader's error as a whole-file problem naming the file (and, for a CSV, the real line)."""
    from brecha.landing.recognise import describe_read_error

    return describe_read_error(src, err, what)


def _prior(con: duckdb.DuckDBPyConnection, plan: FilePlan) -> tuple[int, int] | None:
    row = con.execute(
        "SELECT f.rows_landed, f.rows_rejected FROM raw._batch_files f JOIN raw._batches b USING (batch_id) "
        f"WHERE b.status = 'ok' AND f.sha256 = {value(plan.source.sha256)} AND f.entity = {value(plan.entity)} "
        "ORDER BY f.batch_id LIMIT 1").fetchone()
    return (row[0], row[1]) if row else None


def _record_file(con: duckdb.DuckDBPyConnection, batch_id: int, entry: dict[str, Any]) -> None:
    row = values(batch_id, entry["entity"], entry["rel"], entry["sha256"], entry["size"], entry["rows_landed"],
                 entry["rows_rejected"], entry["newly_landed"], entry["archived_as"])
    con.execute(f"INSERT INTO raw._batch_files VALUES ({row})")


def _land_all(con: duckdb.DuckDBPyConnection, plans: list[FilePlan], batch_id: int, loaded_at: datetime,
              archive_dir: Path, result: IngestResult, priors: dict[str, tuple[int, int] | None],
              sheets: readers.SheetPrefetch | None = None, ahead: CheckAhead | None = None) -> list[dict[str, Any]]:
    """Land ``plans`` in order; ``priors``: per checksum, the counts of an earlier ok batch that landed the same
    bytes (``_prior``; None: to land now)."""
    entries: list[dict[str, Any]] = []
    reference: list[str] | None = None
    with _progress("landing", len(plans)) as step:
        for plan in plans:
            step(plan.source.rel)
            if reference is None and plan.entity != INEI_DISTRICTS.entity:
                reference = [p.source.sha256 for p in plans if p.entity == INEI_DISTRICTS.entity]
                if not reference:
                    reference = _latest_reference(con)
                    result.notes.append(
                        "no district reference in this folder: ubigeos checked against the one landed in an "
                        "earlier batch" if reference else
                        "no district reference (ubigeo_distrito.csv) in this folder nor landed before: the "
                        "unknown-ubigeo check was skipped")
                if reference:
                    _load_reference(con, reference)
                if ahead is not None:
                    ahead.start(bool(reference), [r[0] for r in con.execute(
                        f"SELECT ubigeo FROM {checks.REF_TABLE}").fetchall()] if reference else [])
            prior = priors[plan.source.sha256]
            if prior is None:
                landed = ahead.land(con, plan, loaded_at) if ahead is not None and plan in ahead else \
                    _land_file(con, plan, loaded_at, bool(reference), sheets)
                counts = (landed.rows_landed, landed.rows_rejected)
            else:
                counts = prior
            entry = {**plan.to_manifest(), "rows_landed": counts[0], "rows_rejected": counts[1],
                     "newly_landed": prior is None, "archived_as": archive.store(plan.source, archive_dir),
                     "loaded_at": loaded_at.isoformat(), "reference_sha256": reference or []}
            _record_file(con, batch_id, entry)
            entries.append(entry)
            result.files.append(FileResult(plan.source.rel, plan.entity, plan.source.sha256, counts[0], counts[1],
                                           prior is None, plan.note))
    return entries


def _finish(con: duckdb.DuckDBPyConnection, batch_id: int, status: str) -> datetime:
    finished = _now()
    con.execute(f"UPDATE raw._batches SET status = {value(status)}, finished_at = {value(finished)} "
                f"WHERE batch_id = {value(batch_id)}")
    return finished


def _abort_stale(con: duckdb.DuckDBPyConnection, notes: list[str]) -> None:
    """Batches still 'running' belong to an ingest that was killed: this one holds the run lock (and the
    warehouse's write lock), so no other ingest can be under way. Mark them 'aborted' with the time found."""
    stale = [r[0] for r in con.execute("SELECT batch_id FROM raw._batches WHERE status = 'running' ORDER BY 1").fetchall()]
    if stale:
        con.execute(f"UPDATE raw._batches SET status = 'aborted', finished_at = {value(_now())} "
                    "WHERE status = 'running'")
        notes.append(f"batch(es) {', '.join(map(str, stale))} of a run that was killed were still 'running': "
                     "marked 'aborted'")


def ingest(input_dir: Path) -> IngestResult:
    """Land every extract under ``input_dir`` as one batch; raise InputFileError before landing anything when a
    file is unusable."""
    clock = time.perf_counter()
    root = Path(input_dir).resolve()
    if not root.is_dir():
        raise BrechaError(f"{input_dir}: not a folder. Give `brecha ingest` the folder holding the extracts.")
    archive_dir = paths().ensure().archive
    started = _now()
    staging = archive_dir / archive.STAGING
    with hold(), session(extensions=("excel",)) as con, archive.staged(staging):
        _settings(con)
        ensure_tables(con)
        result_notes: list[str] = []
        _abort_stale(con, result_notes)
        batch_id = con.execute("SELECT coalesce(max(batch_id), 0) + 1 FROM raw._batches").fetchone()[0]
        con.execute(f"INSERT INTO raw._batches VALUES ({values(batch_id, started, None, str(root), 'running')})")
        manifest: dict[str, Any] = {"batch_id": batch_id, "started_at": started.isoformat(), "input_dir": str(root)}
        result = IngestResult(batch_id, str(root), notes=result_notes)
        try:
            plans, result.skipped = _plan_folder(con, root, staging)
            # files not landed before: sheets read ahead, in a background thread, while the files before them
            # land; files after the district reference checked ahead in two more
            priors = {p.source.sha256: _prior(con, p) for p in plans}
            todo = [p for p in plans if priors[p.source.sha256] is None]
            sheets = readers.SheetPrefetch(con, todo)
            ahead: CheckAhead | None = None
            try:
                ahead = CheckAhead(con, todo, sheets)
                con.begin()
                try:
                    entries = _land_all(con, plans, batch_id, started, archive_dir, result, priors, sheets, ahead)
                    finished = _finish(con, batch_id, "ok")
                    con.commit()
                except BaseException:
                    with suppress(duckdb.Error):  # a commit that failed (a full disk) has ended the transaction
                        con.rollback()
                    raise
            finally:
                if ahead is not None:
                    ahead.stop()
                sheets.close()
                if ahead is not None:
                    ahead.close()
        except BaseException as err:
            # on a full or read-only disk this fails too: the batch then stays 'running', and the next ingest marks
            # it 'aborted' (_abort_stale); the error raised is the first one
            with suppress(duckdb.Error, OSError):
                finished = _finish(con, batch_id, "failed")
                archive.write_manifest(archive_dir, {**manifest, "finished_at": finished.isoformat(),
                                                     "status": "failed", "error": str(err), "files": []})
            raise
        archive.write_manifest(archive_dir, {**manifest, "finished_at": finished.isoformat(), "status": "ok",
                                             "skipped": result.skipped, "notes": result.notes, "files": entries})
    result.seconds = time.perf_counter() - clock
    return result


def _verified(entry: dict[str, Any], archive_dir: Path) -> Path:
    path = archive_dir / entry["archived_as"]
    if not path.is_file():
        raise BrechaError(f"archive: {path} is missing; the raw layer cannot be rebuilt without it. Restore the "
                          "archive folder from a backup, or ingest the original folder again.")
    sha = sha256_of(path)
    if sha != entry["sha256"]:
        raise BrechaError(f"archive: {path} has changed (checksum {sha[:12]}…, manifest says "
                          f"{entry['sha256'][:12]}…). Restore it from a backup, or ingest the original folder again.")
    return path


def _drop_raw(con: duckdb.DuckDBPyConnection) -> None:
    for table in (*BOOKKEEPING_TABLES, *(layout.table for layout in LAYOUTS)):
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _replay(con: duckdb.DuckDBPyConnection, batches: Iterable[dict[str, Any]], archive_dir: Path,
            result: IngestResult) -> None:
    for batch in batches:
        row = values(batch["batch_id"], datetime.fromisoformat(batch["started_at"]),
                     datetime.fromisoformat(batch["finished_at"]), batch["input_dir"], batch["status"])
        con.execute(f"INSERT INTO raw._batches VALUES ({row})")
        for entry in batch["files"]:
            if entry["newly_landed"]:
                plan = FilePlan.from_manifest(entry, _verified(entry, archive_dir), paths().home / CONVERTED)
                reference = entry["reference_sha256"]
                if reference:
                    _load_reference(con, reference)
                landed = _land_file(con, plan, datetime.fromisoformat(entry["loaded_at"]), bool(reference))
                if (landed.rows_landed, landed.rows_rejected) != (entry["rows_landed"], entry["rows_rejected"]):
                    result.notes.append(
                        f"{entry['rel']}: {landed.rows_landed} landed / {landed.rows_rejected} rejected now, "
                        f"{entry['rows_landed']} / {entry['rows_rejected']} when first landed")
                result.files.append(FileResult(entry["rel"], entry["entity"], entry["sha256"], landed.rows_landed,
                                               landed.rows_rejected, True, entry["note"]))
            _record_file(con, batch["batch_id"], entry)


def rebuild_from_archive() -> IngestResult:
    """Drop the raw layer and land it again from the archived originals, replaying every batch's manifest
    (same file paths, checksums, load times and ubigeo reference), so the raw rows come out the same."""
    clock = time.perf_counter()
    archive_dir = paths().ensure().archive
    batches = archive.read_manifests(archive_dir)
    if not batches:
        raise BrechaError(f"{archive_dir}: no batch manifest found, so there is nothing to rebuild from. "
                          "Run `brecha ingest DIR` first.")
    result = IngestResult(batches[-1]["batch_id"], str(archive_dir), title="rebuilt raw layer up to batch")
    with session(extensions=("excel",)) as con:
        _settings(con)
        con.begin()
        try:
            _drop_raw(con)
            ensure_tables(con)
            _replay(con, batches, archive_dir, result)
            con.commit()
        except BaseException:
            con.rollback()
            raise
    result.seconds = time.perf_counter() - clock
    return result
