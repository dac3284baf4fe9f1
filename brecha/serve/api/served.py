"""The published serving copy as the API sees it: opened read-only, reopened when `brecha publish` swaps it.

``brecha publish`` and ``--rollback`` replace ``serving/brecha.duckdb`` with ``os.replace`` (a new inode). Each
request stats the path; when the inode, mtime or size differ from the open version, the new file is opened and
later requests use it, while requests already running finish on the version they started with (its open file
handle keeps the replaced file readable). Nothing is restarted and no request sees a half-swapped file.

The file is ATTACHed read-only to a fresh in-memory DuckDB instance rather than opened with
``duckdb.connect(path)``: within one process DuckDB reuses an already open instance for the same path, so a
plain reconnect would keep answering from the replaced file. External file access is then switched off and the
configuration locked, so no query of this process can read any other file.

On the lake (settings with storage "lake") the API reads the published lake snapshot instead (``LakeServed``): one
DuckDB instance per published snapshot, the lake attached read-only as the catalog's read-only role, pinned with
``SNAPSHOT_VERSION`` and locked down after the attach (``brecha.warehouse.lake_publish.open_reader``, the code every
reader of the lake uses). A second, unpinned reader watches the ledger ``ops.lake_publications`` at most every
``poll`` seconds; when another snapshot is published (a publish, ``--rollback`` or ``--serve``) the first request to
notice opens and prepares it while the others keep answering from the snapshot they had.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from brecha.core.errors import BrechaError
from brecha.core.lake import ALIAS
from brecha.core.settings import paths
from brecha.serve.words import message
from brecha.warehouse.publish import current_snapshot
from brecha_ml.features import FEATURES, build_feature_table, load_marts

PRIORITIES = "marts.mart_district_priorities"
PROFILE = "marts.mart_district_profile"  # what the API answers about a district: the atlas and the map read it too
CATALOG = "served"
FEATURE_DESCRIPTIONS = {f.name: f.description for f in FEATURES}

# Natural bounds of features that have them (shares in percent, fractions, 0/1 flags); every other feature is
# bounded by the values observed in the served copy (a scenario outside them would be extrapolation).
FRACTIONS = frozenset({"idh", "nb_idh", "share_base_stations_4g"})
FLAGS = frozenset({"is_province_capital", "is_department_capital"})


def natural_bounds(feature: str) -> tuple[float, float] | None:
    if feature in FRACTIONS or feature in FLAGS:
        return 0.0, 1.0
    if "pct" in feature.split("_"):
        return 0.0, 100.0
    return None


def shown(path: Path) -> str:
    """``path`` as an answer may show it: relative to ``$BRECHA_HOME`` (``serving/brecha.duckdb``), or only its
    name when it lies elsewhere. No absolute server path reaches a client."""
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(paths().home)).as_posix()
    except ValueError:
        return path.name


class NotServed(Exception):
    """The serving copy is missing or lacks what an endpoint needs (the message, brecha.serve.words.API[key], says what to
    run); ``fields`` fill it in the request's language."""

    def __init__(self, key: str, **fields: object) -> None:
        self.key, self.fields = key, fields
        super().__init__(message(key, "en", **fields))

    def text(self, lang: str) -> str:
        return message(self.key, lang, **self.fields)


@dataclass(frozen=True)
class FeatureRange:
    name: str
    description: str
    minimum: float
    maximum: float
    source: str  # "natural" | "observed"


@dataclass(frozen=True)
class ServedModel:
    run_id: str
    model_name: str
    model_family: str | None
    features: tuple[str, ...]
    metrics: dict
    config: dict


class Version:
    """One opened version of what is served: a serving file (its identity, inode, mtime and size, is the ``key``)
    or a published lake snapshot (``key``: its number). ``db`` is read-only and locked down; ``catalog`` is the
    database in it that holds the marts; ``where`` names the version in answers and messages."""

    def __init__(self, db: duckdb.DuckDBPyConnection, key: tuple[int, ...], where: str, *, catalog: str = CATALOG,
                 snapshot: dict | None = None, lake: bool = False) -> None:
        self.key = key
        self.lake = lake  # a lake snapshot: every query asks the catalog's PostgreSQL
        self.where = where
        self.catalog = catalog
        self._db = db
        self._lock = threading.Lock()
        self._features: pd.DataFrame | None = None
        self.names: pd.DataFrame | None = None  # district, department, internet_pct, department_code
        self._ranges: dict[str, FeatureRange] | None = None
        self._model: ServedModel | None = None
        with self.cursor() as con:
            self.tables = {f"{s}.{t}" for s, t in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ?", [catalog]).fetchall()}
            self.priority_columns: list[str] = [c for (c,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'marts' "
                "AND table_name = 'mart_district_priorities' ORDER BY column_index", [catalog]).fetchall()]
            self.snapshot = snapshot if snapshot is not None else current_snapshot(con)
            runs = ([r for (r,) in con.execute(f"SELECT DISTINCT run_id FROM {PRIORITIES} ORDER BY 1").fetchall()]
                    if self.priority_columns else [])
        self.run_id: str | None = runs[-1] if runs else None

    @classmethod
    def of_file(cls, path: Path, key: tuple[int, ...]) -> Version:
        """The serving file at ``path`` attached read-only to a fresh in-memory DuckDB, then locked down."""
        db = duckdb.connect()
        quoted = str(path).replace("'", "''")  # our own path, not request input
        db.execute(f"ATTACH '{quoted}' AS {CATALOG} (READ_ONLY)")
        db.execute("SET enable_external_access = false")
        db.execute("SET lock_configuration = true")
        return cls(db, key, shown(path))

    @property
    def label(self) -> str | None:
        """The snapshot answered from, as the ``X-Brecha-Snapshot`` header of every answer shows it: the lake
        snapshot's number, or the serving file's ``ops.snapshots`` id."""
        if self.snapshot is None:
            return None
        return str(self.snapshot.get("lake_snapshot", self.snapshot.get("snapshot_id")))

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection of its own for one request (DuckDB connections are not shared across threads).

        On the lake every query asks the catalog's PostgreSQL for the pinned snapshot: when it cannot be reached
        (DuckDB's IO or connection error) the request is answered 503 ``lake_unreachable``, not 500. The reader is
        kept: once the catalog is back, its next query connects again, with no restart."""
        con = self._db.cursor()
        try:
            con.execute(f"USE {self.catalog}")
            yield con
        except (duckdb.IOException, duckdb.ConnectionException) as err:
            if not self.lake:
                raise
            raise NotServed("lake_unreachable") from err
        finally:
            con.close()

    def check(self) -> None:
        """A cheap query on what is served (the catalog's list of tables): on the lake it asks the catalog, so
        ``/health`` reports an unreachable one (``NotServed``) instead of ok."""
        with self.cursor() as con:
            con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ?", [self.catalog]).fetchall()

    def no_artifact(self, run_id: str, model_name: str) -> NotServed:
        """What to answer when the served run's model artifact is missing or unreadable in this home. On the lake the
        artifacts are not in the lake: they stay in ``$BRECHA_HOME/artifacts`` of the machine that trained the run."""
        path = shown(artifact_dir(run_id, model_name))
        return NotServed("lake_no_artifact" if self.lake else "no_artifact", run=run_id, model=model_name, path=path)

    def prepare(self) -> None:
        """Build what the endpoints need (a copy without predictions has nothing to prepare)."""
        try:
            self.ranges()
        except NotServed:
            pass

    def require_profile(self) -> str:
        """The profile mart's name, once the copy has it and a model run (the district endpoints read it)."""
        self.require_predictions()
        if PROFILE not in self.tables:
            raise NotServed("no_predictions", path=self.where, table=PROFILE)
        return PROFILE

    def require_predictions(self) -> str:
        if not self.priority_columns or self.run_id is None:
            raise NotServed("no_predictions", path=self.where, table=PRIORITIES)
        return self.run_id

    def model(self) -> ServedModel:
        """The selected model of the served run: its ``ml.model_runs`` row and the artifact's config."""
        if self._model is None:
            run_id = self.require_predictions()
            if "ml.model_runs" not in self.tables:
                raise NotServed("no_runs_table", path=self.where)
            with self.cursor() as con:
                rows = con.execute("SELECT * FROM ml.model_runs WHERE run_id = ? ORDER BY model_name", [run_id]).df()
            chosen = rows[rows["selected"].fillna(False).astype(bool)]
            if chosen.empty:
                raise NotServed("no_selected", path=self.where, run=run_id)
            row = chosen.iloc[0]
            config = self._read_config(run_id, str(row["model_name"]))
            metrics = {k: json_number(row[k]) for k in ("cv_r2", "cv_mae", "cv_rmse", "interval_coverage", "n_train",
                                                 "n_features", "fit_seconds") if k in row}
            self._model = ServedModel(run_id, str(row["model_name"]), _str(row.get("model_family")),
                                      tuple(config["features"]), metrics, config)
        return self._model

    def features(self) -> pd.DataFrame:
        """The feature table of every served district (index ubigeo), built once per version."""
        if self._features is None:
            with self._lock:
                if self._features is None:
                    with self.cursor() as con:
                        marts = load_marts(con)
                    self.names = marts[["district", "department", "internet_pct", "department_code"]]
                    self._features = build_feature_table(marts)
        return self._features

    def ranges(self) -> dict[str, FeatureRange]:
        """Valid override range of each feature the served model uses."""
        if self._ranges is None:
            feats = self.features()
            out = {}
            for name in self.model().features:
                bounds = natural_bounds(name)
                if bounds is None:
                    col = feats[name].to_numpy(float)
                    bounds = (float(np.nanmin(col)), float(np.nanmax(col))) if np.isfinite(col).any() else (0.0, 0.0)
                    source = "observed"
                else:
                    source = "natural"
                out[name] = FeatureRange(name, FEATURE_DESCRIPTIONS.get(name, name), *bounds, source)
            self._ranges = out
        return self._ranges

    def _read_config(self, run_id: str, model_name: str) -> dict:
        """The model's config from this home's artifacts, the folder the what-if's model is loaded from
        (``brecha_ml.predict.load_selected``), not from the ``artifact_path`` recorded in ``ml.model_runs``: in a
        copied home that still names the original's folder."""
        try:
            return json.loads((artifact_dir(run_id, model_name) / "model_config.json").read_text())
        except (OSError, ValueError):
            raise self.no_artifact(run_id, model_name) from None


def artifact_dir(run_id: str, model_name: str) -> Path:
    from brecha_ml import artifacts

    return artifacts.model_dir(run_id, model_name)


def json_number(v: object) -> float | int | None:
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    f = float(v)
    return None if math.isnan(f) or math.isinf(f) else f


def _str(v: object) -> str | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA else str(v)


class ServedCopy:
    """The serving file at ``path``; ``current()`` returns the version to answer the next request from."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = shown(path)
        self._version: Version | None = None
        self._lock = threading.Lock()

    def _key(self) -> tuple[int, ...]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise NotServed("no_copy", path=self.where) from None
        except OSError:  # e.g. a serving folder this process may not read
            raise NotServed("unreadable_copy", path=self.where) from None
        return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size

    def current(self) -> Version:
        """The version to answer from. When the file changed, the first request to notice opens the new version
        and prepares it (feature table, model config) while concurrent requests keep answering from the previous
        one, so a publish under load costs one slower request, not a pause."""
        key = self._key()
        v = self._version
        if v is not None and v.key == key:
            return v
        if not self._lock.acquire(blocking=v is None):
            return v  # another request is opening the new version
        try:
            v = self._version
            if v is None or v.key != key:
                # a swap between stat and ATTACH opens the newer file under the older key: the next request
                # sees the key differ and opens it again, never the other way round
                try:
                    new = Version.of_file(self.path, key)
                except duckdb.Error:  # not a DuckDB file, unreadable, or from a newer DuckDB
                    raise NotServed("unreadable_copy", path=self.where) from None
                new.prepare()
                self._version = new  # the replaced version closes when its last request drops it
            return self._version
        finally:
            self._lock.release()


class LakeServed:
    """The published lake snapshot; ``current()`` returns the version to answer the next request from.

    An unpinned reader (read-only role, locked down) reads which snapshot is published (``lake_publish.published``)
    at most every ``poll`` seconds; each published snapshot gets its own pinned, locked-down reader
    (``lake_publish.open_reader``), kept while it is the published one or the one before (so a rollback needs no new
    reader) and closed when its last request drops it.
    """

    where = "the published lake snapshot"

    def __init__(self, poll: float = 1.0) -> None:
        self.poll = poll
        self._version: Version | None = None
        self._kept: dict[int, Version] = {}  # the published snapshot's reader and the previous one's
        self._probe: duckdb.DuckDBPyConnection | None = None
        self._next_check = 0.0
        self._lock = threading.Lock()

    def _published(self) -> tuple[int, str] | None:
        from brecha.warehouse.lake_publish import open_reader, published

        if self._probe is None:
            self._probe = open_reader(None)
        try:
            return published(self._probe)
        except duckdb.Error:
            self._probe.close()  # e.g. the catalog's server restarted: a new reader next time
            self._probe = None
            raise

    def _open(self, version: int, action: str) -> Version:
        """The reader of published snapshot ``version``: the one kept from before (a rollback or ``--serve`` back to
        the previous snapshot costs nothing), else a new one, prepared; the previous stays kept, older ones close when
        their last request drops them."""
        from brecha.warehouse.lake_publish import open_reader

        snapshot = {"lake_snapshot": version, "action": action}
        kept = self._kept.get(version)
        if kept is not None:
            kept.snapshot = snapshot
        else:
            kept = Version(open_reader(version), (version,), f"lake snapshot {version}", catalog=ALIAS,
                           snapshot=snapshot, lake=True)
            kept.prepare()
        previous = self._version
        self._kept = {version: kept, **({previous.key[0]: previous} if previous is not None else {})}
        return kept

    def current(self) -> Version:
        """The version to answer from. Between checks of the ledger this costs nothing; the request that finds
        another snapshot published opens and prepares it while concurrent requests keep answering from the one
        they had (a publish or rollback under load costs one slower request, not a pause nor an error)."""
        v = self._version
        if v is not None and time.monotonic() < self._next_check:
            return v
        if not self._lock.acquire(blocking=v is None):
            return v  # another request is checking the ledger or opening the new snapshot
        try:
            v = self._version
            if v is not None and time.monotonic() < self._next_check:
                return v
            try:
                pinned = self._published()
                if pinned is None:
                    raise NotServed("lake_unpublished")
                if v is None or v.key != (pinned[0],):
                    self._version = self._open(*pinned)
            except (duckdb.Error, BrechaError, NotServed) as err:  # the catalog unreachable: keep the snapshot in hand
                if isinstance(err, NotServed) and err.key != "lake_unreachable":
                    raise
                if v is None:
                    raise NotServed("lake_unreachable") from None
            self._next_check = time.monotonic() + self.poll
            return self._version
        finally:
            self._lock.release()
