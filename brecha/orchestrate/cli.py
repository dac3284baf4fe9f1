"""The ``brecha`` command line.

The pipeline steps (``extract``, ``ingest``, ``rebuild-raw``, ``build``, ``validate``, ``train``, ``predict``,
``clusters``, ``publish`` with ``--rollback`` / ``--serve``, ``atlas``) each call one function of
``brecha.orchestrate.steps``, the functions the Airflow DAG's tasks call; ``run`` calls them in the order of the one step
list (``brecha.orchestrate.plan.PIPELINE``, through ``brecha.orchestrate.pipeline.run_all``). Every command builds its
``Settings`` here, once, from the environment and its options (``_settings``), and passes them on. The other
commands run no step: ``serve`` (the HTTP API) and ``sql`` (a DuckDB prompt) read the serving copy, ``runs`` and
``publish --list`` list what was recorded, ``docs`` generates the dbt docs site, ``airflow`` starts a local
Airflow whose DAG runs the steps, and ``migrate-to-lake`` moves an embedded warehouse into the lake
(``brecha.orchestrate.migrate``). ``seeds`` (a measurement, not a pipeline step: the DAG does not run it) repeats
the training's spatial CV for several seeds through ``brecha.orchestrate.steps.seeds``.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import click

from brecha.core.settings import DEFAULT_SEED, Settings


class _Group(click.Group):
    """Lists each command with its whole first sentence, wrapped, never cut with "..."."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, cmd.get_short_help_str(limit=1000)) for name in self.list_commands(ctx)
                if (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                first = max(len(name) for name, _ in rows) + 2
                indent = " " * formatter.current_indent
                width = max((formatter.width or 80) - formatter.current_indent - first, 30)
                for name, text in rows:  # click's write_dl breaks words at hyphens ("read-" / "only")
                    lines = textwrap.wrap(text, width, break_on_hyphens=False) or [""]
                    formatter.write(f"{indent}{name:<{first}}{lines[0]}\n")
                    for line in lines[1:]:
                        formatter.write(f"{indent}{'':<{first}}{line}\n")


def _settings(**options: object) -> Settings:
    """The run's settings, built once here, at the entry point: the environment (``BRECHA_HOME``, ...) and the
    command's options; every step is passed them."""
    import os

    ctx = click.get_current_context(silent=True)
    if ctx is not None and (ctx.params.get("verbose") or ctx.find_root().params.get("verbose")):
        options["verbose"] = True  # `brecha -v CMD` or `brecha run -v`
    return Settings.from_env(os.environ, **options)


# Not a terminal (a pipe, a log): help is laid out 110 columns wide, so no description is cut with "...".
@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110,
                               "terminal_width": None if sys.stdout.isatty() else 110})
@click.version_option(package_name="brecha")
@click.option("-v", "--verbose", is_flag=True, help="Show dbt's line per model and test too (always in $BRECHA_HOME/dbt_logs).")
def cli(verbose: bool) -> None:
    """Brecha: Peru's digital divide, district by district.

    Runtime state lives under $BRECHA_HOME (default: the warehouse/ folder of this project, whatever the
    current folder); the warehouse is $BRECHA_HOME/brecha.duckdb and readers use the serving copy
    $BRECHA_HOME/serving/brecha.duckdb. On the lake (`. $BRECHA_HOME/lake.env` after `make lake-up`), both are the
    lake: readers read its published snapshot. `brecha run` runs the whole pipeline.
    """


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write the extracts to [default: $BRECHA_HOME/extracts].")
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Random seed.")
@click.option("--scale", type=float, default=1.0, show_default=True,
              help="Multiplies the large tables (populated centres, connections, households), for benchmarks.")
def extract(out: Path | None, seed: int, scale: float) -> None:
    """Write synthetic extracts in the published INEI/OSIPTEL layouts."""
    from brecha.orchestrate import steps

    result = steps.extract(_settings(seed=seed), out, scale=scale)
    click.echo(str(result))


@cli.command()
@click.argument("input_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def ingest(input_dir: Path) -> None:
    """Land every extract found under INPUT_DIR (and its subfolders) into raw.* tables.

    Files are recognised by header and content, not by name. INPUT_DIR is taken to be the complete set
    of extracts: the marts are built from the files of the latest ingest. Bad rows go to raw._rejects with
    the reason; a whole-file problem stops with a message naming the file and column.
    """
    from brecha.orchestrate import steps

    click.echo(str(steps.ingest(_settings(), input_dir)))


@cli.command("rebuild-raw")
def rebuild_raw() -> None:
    """Rebuild the raw layer from the archived originals under $BRECHA_HOME/archive alone."""
    from brecha.orchestrate import steps

    click.echo(str(steps.rebuild_raw(_settings())))


@cli.command()
@click.option("--select", "-s", default=None, help="dbt selector, e.g. 'marts' or 'tag:needs_predictions'.")
@click.option("--exclude", default=None, help="dbt selector to leave out.")
def build(select: str | None, exclude: str | None) -> None:
    """Run `dbt build` (models and their tests) over dbt_project/."""
    from brecha.orchestrate import steps

    click.echo(str(steps.dbt_build(_settings(), select=select, exclude=exclude)))


@cli.command()
@click.option("--suite", type=click.Choice(["landed", "marts", "all"]), default="all", show_default=True,
              help="Which gate: the landed extracts, the marts, or both.")
def validate(suite: str) -> None:
    """Run the Great Expectations suites in expectations/ against the warehouse."""
    from brecha.orchestrate import steps

    click.echo(str(steps.validate(_settings(), suite)))


@cli.command()
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True,
              help="Seed for model initialisation (MLP weights, batch order, inner validation split), the "
                   "underserved classifier and clustering (the department folds are deterministic: no shuffling).")
def train(seed: int) -> None:
    """Train and compare models on the marts (spatial CV); write ml.* tables and artifacts."""
    from brecha.orchestrate import steps

    click.echo(str(steps.train(_settings(seed=seed))))


@cli.command()
@click.option("--run", "run_id", required=True, help="Run id of a previous `brecha train`.")
def predict(run_id: str) -> None:
    """Reload a run's selected model artifact and rescore the current marts."""
    from brecha.orchestrate import steps

    click.echo(str(steps.predict(_settings(), run_id)))


@cli.command()
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Seed of the permutations.")
def clusters(seed: int) -> None:
    """Global and local Moran's I (LISA) of internet share, divide index and gap; write ml.district_clusters.

    Run after the prediction marts; then `brecha build -s tag:needs_clusters` rebuilds the cluster marts.
    """
    from brecha.orchestrate import steps

    click.echo(str(steps.clusters(_settings(seed=seed))))


@cli.command()
@click.option("--rollback", is_flag=True,
              help="Serve the snapshot published before the one served now instead (not the one served before it).")
@click.option("--list", "list_", is_flag=True, help="List the kept snapshots (the one served now is marked) and exit.")
@click.option("--serve", "snapshot_id", default=None, metavar="SNAPSHOT_ID",
              help="Serve this kept snapshot (older or newer) instead: a unique prefix of its id is enough; on the "
                   "lake, the lake snapshot's whole number.")
def publish(rollback: bool, list_: bool, snapshot_id: str | None) -> None:
    """Publish the checked warehouse for readers: copied atomically to $BRECHA_HOME/serving/brecha.duckdb, or, on the
    lake, its current snapshot recorded as the one readers are pinned to.

    Both check the same first: the required marts, the latest batch landed ok, every gate and dbt build passed.
    """
    from brecha.orchestrate import steps

    if sum((rollback, list_, snapshot_id is not None)) > 1:
        raise click.UsageError("use one of --rollback, --list and --serve")
    settings = _settings()
    if list_:
        from brecha.core.settings import using

        if settings.storage == "lake":
            from brecha.warehouse.lake_publish import listing as snapshot_listing
        else:
            from brecha.warehouse.publish import snapshot_listing

        with using(settings):
            click.echo(snapshot_listing())
    elif snapshot_id is not None:
        click.echo(str(steps.serve_snapshot(settings, snapshot_id)))
    else:
        click.echo(str(steps.rollback(settings) if rollback else steps.publish(settings)))


@cli.command("migrate-to-lake")
@click.option("--from", "source", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The embedded warehouse file to move [default: $BRECHA_HOME/brecha.duckdb].")
def migrate_to_lake(source: Path | None) -> None:
    """Move the embedded warehouse into the (empty) lake of BRECHA_LAKE, with the history of raw.*, ml.* and ops.*.

    Copies raw.*, ml.* and ops.* (every batch, model run and ledger row), rebuilds the marts with dbt, runs both
    gates, checks every mart equal to the embedded file's, then publishes a lake snapshot. The embedded file is only
    read. Run it in the embedded warehouse's home after `make lake-up` and `. $BRECHA_HOME/lake.env`. It takes a
    minute or two (the dbt build most of it) and prints a line as each of its five steps starts and ends.
    """
    from brecha.orchestrate.migrate import migrate_to_lake as _migrate

    click.echo(str(_migrate(_settings(), source, say=lambda line: click.echo(line, err=True))))


def _years(text: str) -> list[int]:
    """'2019-2024' or '2019,2021,2023'."""
    years: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            years += list(range(int(lo), int(hi or lo) + 1))
    except ValueError as err:
        raise click.BadParameter(f"{text!r}: give years as 2019-2024 or 2019,2021,2023") from err
    return years


_fetch_options = [
    click.option("--years", default="2015-2024", show_default=True,
                 help="ENAHO years to download (2019-2024 or 2019,2021,2023)."),
    click.option("--flavour", type=click.Choice(["STATA", "CSV", "SPSS"], case_sensitive=False), default="STATA",
                 show_default=True, help="Which of INEI's three ENAHO files to download (all three land the same)."),
    click.option("--punku-url", default=None,
                 help="Address of OSIPTEL PUNKU's fixed-connections dataset (xlsx, or a zip holding it): PUNKU "
                      "publishes no stable one."),
    click.option("--mirror", default=None,
                 help="Fetch every file from this server instead, at <mirror>/<host>/<path> (a local copy)."),
]


def _with_fetch_options(fn: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_fetch_options):
        fn = option(fn)
    return fn


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to download into [default: $BRECHA_HOME/fetched].")
@_with_fetch_options
def fetch(out: Path | None, years: str, flavour: str, punku_url: str | None, mirror: str | None) -> None:
    """Download ENAHO module 01 per year from INEI, PUNKU's dataset and the other public extracts (resumable,
    checksummed, cached); then `brecha run --input` the folder, or `brecha run --fetch`."""
    from brecha.orchestrate import steps

    click.echo(str(steps.fetch(_settings(), _years(years), out, flavour, punku_url, mirror)))


@cli.command()
@click.option("--input", "input_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Folder of real extracts; without it, synthetic extracts are generated.")
@click.option("--fetch", "fetch_first", is_flag=True,
              help="Download the extracts first (as `brecha fetch`, same options) and run on them.")
@_with_fetch_options
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True,
              help="Seed for the synthetic extracts and the models.")
@click.option("--scale", type=float, default=1.0, show_default=True,
              help="Size of the synthetic large tables (ignored with --input).")
@click.option("-v", "--verbose", is_flag=True, help="Show dbt's line per model and test too (always in the log file).")
def run(input_dir: Path | None, fetch_first: bool, years: str, flavour: str, punku_url: str | None,
        mirror: str | None, seed: int, scale: float, verbose: bool) -> None:
    """The whole pipeline: extract, ingest, gates, dbt build, train, prediction marts, clusters, publish, atlas."""
    from brecha.orchestrate import steps
    from brecha.orchestrate.pipeline import run_all

    settings = _settings(seed=seed)
    if fetch_first:
        if input_dir is not None:
            raise click.UsageError("use --fetch or --input, not both")
        fetched = steps.fetch(settings, _years(years), None, flavour, punku_url, mirror)
        click.echo(str(fetched), err=True)
        input_dir = fetched.folder
    run_all(settings, input_dir=input_dir, scale=scale)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=8000, show_default=True, help="TCP port.")
@click.option("--log-level", default="info", show_default=True, help="uvicorn's log level (access log at info).",
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--workers", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Server processes (a what-if is mostly Python under the GIL: 2 use both cores of a 2-core machine).")
def serve(host: str, port: int, log_level: str, workers: int) -> None:
    """Start the read-only prediction API over the serving copy, or the published lake snapshot (OpenAPI at /docs).

    District answers, a filtered list, the served model and what-if scenarios; a new `brecha publish` or a
    rollback is picked up without a restart.
    """
    import os

    # One OpenMP/BLAS thread per request, fixed before those libraries load (the limit is per thread, and the
    # server's worker threads would otherwise each start a team of spinning threads on a 2-core machine).
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from brecha.serve.api import serve as _serve

    _serve(_settings(), host=host, port=port, log_level=log_level, workers=workers)


@cli.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file to write [default: $BRECHA_HOME/atlas/index.html].")
@click.option("--lang", type=click.Choice(["es", "en"]), default="es", show_default=True,
              help="Language of every title, legend, label and note (Spanish by default).")
def atlas(out: Path | None, lang: str) -> None:
    """Write a self-contained, printable HTML atlas of the districts from the serving copy (read-only; on the lake,
    the published snapshot)."""
    from brecha.orchestrate import steps

    click.echo(str(steps.atlas(_settings(), out, lang=lang)))


@cli.command()
@click.option("--serve", is_flag=True, help="Then serve the site on http://127.0.0.1:PORT until Ctrl-C.")
@click.option("--port", type=int, default=8081, show_default=True, help="Port for --serve.")
@click.option("--no-generate", is_flag=True, help="With --serve: serve the site generated last, without regenerating.")
def docs(serve: bool, port: int, no_generate: bool) -> None:
    """Generate the dbt docs site: $BRECHA_HOME/dbt_target/static_index.html opens from a file in any browser.

    The same folder's index.html needs a web server (browsers block its manifest.json from file://): `--serve`.
    """
    from brecha.core.settings import using
    from brecha.warehouse import dbt

    with using(_settings()):
        if not (serve and no_generate):
            click.echo(f"docs site (one file, opens from disk): {dbt.docs()}")
        if serve:
            dbt.serve_docs(port)


@cli.command()
def airflow() -> None:
    """Start a local Airflow 3 (http://127.0.0.1:8080, this machine only) with the brecha_pipeline DAG.

    Its components (scheduler, DAG processor, API server, triggerer, task log server) listen on 127.0.0.1 only.
    Ctrl-C, or SIGTERM to this process or its process group, stops every process it started."""
    from brecha.orchestrate.airflow_local import standalone

    standalone(_settings())


@cli.command()
@click.option("--seeds", "seed_list", default="42,7,1,2,3", show_default=True,
              help="Comma-separated seeds; the spatial CV of every candidate is repeated for each.")
def seeds(seed_list: str) -> None:
    """Model figures over several seeds: the spatial CV of `brecha train` for each seed (no model is served);
    appends to ml.seed_metrics and prints mean ± SD per model (`brecha runs` shows the same)."""
    from brecha.orchestrate import steps

    try:
        chosen = tuple(int(s) for s in seed_list.split(",") if s.strip())
    except ValueError as err:
        raise click.BadParameter(f"--seeds takes integers separated by commas, e.g. 42,7,1: {err}") from err
    click.echo(str(steps.seeds(_settings(), chosen)))


@cli.command()
@click.option("--limit", type=int, default=20, show_default=True, help="How many runs, newest first.")
def runs(limit: int) -> None:
    """List the model runs (ml.model_runs) with the selected model's cross-validated metrics and rescorings."""
    from brecha.core.settings import using
    from brecha.orchestrate.runs import list_runs

    with using(_settings()):
        click.echo(list_runs(limit))


# Every option but --help goes to the duckdb command as it is: the DuckDB CLI's options are single-dash words
# (-noheader, -csv, -header), which click would otherwise read as clusters of short options (-n -o -h ...: `-h`, the
# group's help, took `-noheader`)
@cli.command(context_settings={"ignore_unknown_options": True, "help_option_names": ["--help"]})
@click.argument("duckdb_args", nargs=-1, type=click.UNPROCESSED)
def sql(duckdb_args: tuple[str, ...]) -> None:
    """A read-only SQL prompt (the DuckDB CLI) on the serving copy $BRECHA_HOME/serving/brecha.duckdb, or the lake's.

    Without arguments, an interactive prompt (`.tables`, `.quit`); SQL piped on stdin runs and exits. Every other
    argument but --help goes to the `duckdb` command as given, e.g. `brecha sql -c "select count(*) from
    marts.dim_districts"`, `brecha sql -csv -noheader -c "..."` or `brecha sql -help` (the DuckDB CLI's own options;
    `brecha sql -- ARGS` passes ARGS after `--` too). The file is opened read-only: it never blocks the pipeline or a
    publish. On the lake (BRECHA_LAKE set), the published lake snapshot, attached read-only as the catalog's
    read-only role and locked down the same way.
    """
    import os

    from brecha.core.errors import BrechaError

    settings = _settings()
    if settings.storage == "lake":  # the published lake snapshot, read-only, locked down
        from brecha.core.settings import using
        from brecha.warehouse.lake_publish import reader_init_sql

        with using(settings):
            init = reader_init_sql()
        sys.exit(_sql_on_the_lake(init, duckdb_args))
    db = settings.paths.serving_db
    if not db.exists():
        raise BrechaError(f"no serving copy at {db}: run `brecha run` (or `brecha publish`) first")
    exe = Path(sys.executable).with_name("duckdb")
    if not exe.is_file():
        raise BrechaError(f"the DuckDB CLI is not installed at {exe}: run `make install` (it installs duckdb-cli)")
    os.execv(exe, [str(exe), "-readonly", *duckdb_args, str(db)])


def _duckdb_binary() -> Path:
    """The DuckDB command line itself (the duckdb-cli wheel's binary), else its Python launcher in the venv."""
    try:
        import duckdb_cli

        binary = Path(duckdb_cli.__file__).with_name("duckdb")
        if binary.is_file():
            return binary
    except ImportError:
        pass
    return Path(sys.executable).with_name("duckdb")


def _sql_on_the_lake(init: str, duckdb_args: tuple[str, ...]) -> int:
    """Run the DuckDB command line with the lake reader's init script ``init`` (it holds the readers' password), read
    with ``-cmd ".read FILE"`` (no "Loading resources" banner). The file is in a private folder (0700, the file 0600)
    and is deleted as soon as DuckDB has read it (the script's last line creates a marker file this process waits
    for); the folder goes when DuckDB ends, or when this process gets SIGHUP (the terminal closed) or SIGTERM."""
    import os
    import shutil
    import signal
    import subprocess
    import tempfile
    import time

    private = Path(tempfile.mkdtemp(prefix="brecha-sql-"))
    script, marker = private / "init.sql", private / "read"
    script.touch(mode=0o600)
    script.write_text(init + f'.output "{marker}"\n.output\n', encoding="utf-8")
    child: subprocess.Popen | None = None

    def on_signal(signum: int, _frame: object) -> None:
        shutil.rmtree(private, ignore_errors=True)
        if child is not None and child.poll() is None:
            child.send_signal(signum)
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGHUP, signal.SIGTERM)}
    try:
        child = subprocess.Popen([str(_duckdb_binary()), "-init", os.devnull, "-cmd", f'.read "{script}"',
                                  *duckdb_args])
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is DuckDB's (cancels a query)
        while child.poll() is None and not marker.exists():
            time.sleep(0.05)
        script.unlink(missing_ok=True)
        return child.wait()
    finally:
        shutil.rmtree(private, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main() -> None:
    from brecha.core.errors import BrechaError

    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except BrechaError as err:
        click.secho(f"error: {err}", fg="red", err=True)
        sys.exit(1)
    except Exception as err:  # an environment fault (permissions, a full disk, a missing folder): one line, no traceback
        from brecha.core.errors import environment_error

        if (fault := environment_error(err)) is None:
            raise
        click.secho(f"error: {fault}", fg="red", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
