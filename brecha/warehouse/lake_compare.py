"""Are the lake's marts the embedded warehouse's? Every table of the ``marts`` schema, in both: the same columns (names
and types), the same rows (compared sorted; floating-point values to a relative and absolute 1e-9), leaving out the
columns that name a run rather than hold data (when it ran, its run and batch ids).

    .venv/bin/python -m tools.lake_compare EMBEDDED.duckdb LAKE_ENV_FILE   # from the project folder, e.g.
    .venv/bin/python -m tools.lake_compare warehouse/brecha.duckdb /tmp/h/lake.env

prints one line per mart and exits 1 on any difference (2 when either side cannot be opened). It reads the lake's
latest snapshot, not the published one readers see (the same after a publish; after a later build, the build's).
``brecha migrate-to-lake`` checks its copy with ``compare`` before it publishes.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from brecha.core.db import OFFLINE, catalog_fault, lake_unreachable
from brecha.core.errors import BrechaError
from brecha.core.lake import attach_sql, read_env
from brecha.core.settings import LAKE_DATA_ENV, LAKE_ENV

TOLERANCE = 1e-9
# columns that record the run, not the data: when a row was built or loaded, and the ids of the run and the batch
VOLATILE = re.compile(r"(^|_)(run_id|batch_id|run_at|built_at|loaded_at|computed_at|scored_at|published_at)$")


@dataclass
class MartDiff:
    table: str
    rows: int
    problems: list[str]

    def __str__(self) -> str:
        return f"{'ok  ' if not self.problems else 'DIFF'} marts.{self.table}: {self.rows} rows" + (
            "" if not self.problems else " - " + "; ".join(self.problems))


def _frame(con: duckdb.DuckDBPyConnection, catalog: str, table: str, columns: list[str], floats: set[str]) -> pd.DataFrame:
    order = [f'"{c}"' for c in columns if c not in floats] + [f'round("{c}", 6)' for c in columns if c in floats]
    cols = ", ".join(f'"{c}"' for c in columns)
    return con.execute(f'SELECT {cols} FROM "{catalog}".marts."{table}" ORDER BY {", ".join(order)} NULLS FIRST').df()


def compare(con: duckdb.DuckDBPyConnection, left: str = "embedded", right: str = "lake") -> list[MartDiff]:
    """Compare ``left``'s marts with ``right``'s (two attached catalogs of ``con``)."""
    def tables(catalog: str) -> dict[str, list[tuple[str, str]]]:
        rows = con.execute("SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE database_name = ? "
                           "AND schema_name = 'marts' ORDER BY table_name, column_index", [catalog]).fetchall()
        out: dict[str, list[tuple[str, str]]] = {}
        for table, column, kind in rows:
            out.setdefault(table, []).append((column, kind))
        return out

    a, b = tables(left), tables(right)
    diffs = [MartDiff(t, 0, [f"only in {left if t in a else right}"]) for t in sorted(set(a) ^ set(b))]
    for table in sorted(set(a) & set(b)):
        problems = []
        if a[table] != b[table]:
            problems.append(f"columns differ: {sorted(set(a[table]) ^ set(b[table]))}")
        columns = [c for c, _ in a[table] if (c, _) in b[table] and not VOLATILE.search(c)]
        floats = {c for c, kind in a[table] if kind in ("DOUBLE", "FLOAT") or kind.startswith("DECIMAL")}
        fa, fb = (_frame(con, cat, table, columns, floats) for cat in (left, right))
        if len(fa) != len(fb):
            problems.append(f"{len(fa)} rows against {len(fb)}")
        else:
            for c in columns:
                x, y = fa[c], fb[c]
                if c in floats:
                    xs, ys = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
                    same = np.isclose(xs, ys, rtol=TOLERANCE, atol=TOLERANCE, equal_nan=True)
                else:
                    same = (x.astype(object).where(x.notna(), None).to_numpy()
                            == y.astype(object).where(y.notna(), None).to_numpy())
                if not same.all():
                    i = int(np.flatnonzero(~same)[0])
                    problems.append(f"{c}: {int((~same).sum())} rows differ (first: {x.iloc[i]!r} against "
                                    f"{y.iloc[i]!r})")
        diffs.append(MartDiff(table, len(fa), problems))
    return diffs


def open_both(embedded: Path, lake_dsn: str, lake_data: str) -> duckdb.DuckDBPyConnection:
    """One DuckDB with the embedded file and the lake attached read-only, as ``embedded`` and ``lake``."""
    con = duckdb.connect(config=OFFLINE)
    try:
        con.execute(f"ATTACH '{embedded}' AS embedded (READ_ONLY)")
        con.execute(attach_sql(lake_dsn, lake_data, read_only=True))
    except duckdb.Error as err:
        con.close()
        if (detail := catalog_fault(err)) is not None:
            raise lake_unreachable(lake_dsn, detail) from None
        raise
    return con


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.lake_compare`` (tools/lake_compare.py calls it)."""
    parser = argparse.ArgumentParser(prog="python -m tools.lake_compare", description=__doc__.split("\n\n")[0],
                                     epilog="Run it from the project folder with .venv/bin/python. It compares the "
                                            "lake's latest snapshot, not the published one.")
    parser.add_argument("embedded", type=Path, help="the embedded warehouse file (<home>/brecha.duckdb)")
    parser.add_argument("lake_env", type=Path, help="the lake's settings (<home>/lake.env, written by make lake-up)")
    args = parser.parse_args(argv)
    try:
        env = read_env(args.lake_env)
        con = open_both(args.embedded, env[LAKE_ENV], env[LAKE_DATA_ENV])
    except (BrechaError, duckdb.Error, OSError, KeyError) as err:
        what = f"{args.lake_env} sets no {err}" if isinstance(err, KeyError) else str(err)
        print(f"error: {what}", file=sys.stderr)
        return 2
    diffs = compare(con)
    for d in diffs:
        print(d)
    bad = [d for d in diffs if d.problems]
    print(f"{len(diffs) - len(bad)} of {len(diffs)} marts equal (floats to {TOLERANCE:g})")
    return 1 if bad or not diffs else 0
