"""`brecha serve`: a read-only HTTP API over the published serving copy and the artifact of the run it serves.

Endpoints (the generated OpenAPI page at ``/docs``, where ``/`` leads, its Swagger UI assets served from the installed
``fastapi-offline`` package, no CDN; the schema at ``/openapi.json``), on ``APIRouter``s whose routes get the served
copy's version to answer from and the what-if batcher as dependencies (``Current``, ``_batcher``):

- ``GET /districts/{ubigeo}``: one district: names, actual and predicted internet share, 90 % interval (and
  whether the prediction is out of fold, once the mart says so), gap, divide index, both ranks, segment;
- ``GET /districts``: a filtered (department, province, segment, rank range), paginated list;
- ``GET /model``: the model run served, its metrics and the valid range of every feature a what-if may set;
- ``POST /districts/{ubigeo}/whatif``: the district's features with some overridden, answered with the
  baseline and scenario predictions, both intervals and the difference;
- ``GET /health``: which serving file, snapshot and run are being answered from, after a cheap query on it (503
  when the lake's catalog cannot be reached).

On the lake (storage "lake") the same endpoints answer from the published lake snapshot (``served.LakeServed``);
every answer names the snapshot it came from in its ``X-Brecha-Snapshot`` header. While the lake's catalog cannot be
reached every endpoint answers 503 (``lake_unreachable``); the same readers answer again once it is back.

District answers come from ``marts.mart_district_profile``, the mart the atlas and the Grafana map read too (every
district of the reference, with its polygon or marker). Human-readable messages (errors' ``msg``, the what-if's
``note``) are in Spanish unless the request asks for English: ``?lang=en`` or ``Accept-Language: en``. Field names
stay English. FastAPI's own request-validation messages (pydantic's) stay English.

Every request value reaches SQL as a bound parameter; identifiers (sort columns) come from fixed tables.
The model is applied through ``brecha_ml.predict.predict_frame`` only; concurrent what-ifs share one call of it
(``brecha.serve.api.batching``).

Under abuse the API answers 4xx (503 when what it serves is missing), never 5xx: integers are bounded
(``MAX_INT``), what-if numbers must be JSON numbers (strict: no ``"80"``, no ``true``), a body over
``MAX_BODY_BYTES`` is refused with 413 before it is parsed, an error echoes at most ``MAX_ECHO`` characters of a
request value, and no answer (nor the schema) shows an absolute server path (``served.shown``). A ubigeo that lost
its leading zeros (``10101``) is padded to six digits by landing's own rule for the reference's code column, so the
API accepts what landing accepts.
"""

from __future__ import annotations

import functools
import json
import pickle
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brecha.core.errors import BrechaError
from brecha.core.layouts import INEI_DISTRICTS
from brecha.core.settings import Settings, using
from brecha.landing.checks import text_sql as landed_code_sql
from brecha.serve.api.batching import Batcher
from brecha.serve.api.served import (
    FEATURE_DESCRIPTIONS,
    PROFILE,
    LakeServed,
    NotServed,
    ServedCopy,
    Version,
    json_number,
    natural_bounds,
)
from brecha.serve.words import message, pick
from brecha_ml.features import FEATURE_NAMES
from brecha_ml.whatif import INTERVAL, from_published, scenario_features

MAX_PAGE_SIZE = 200
MAX_INT = 2**31 - 1  # any integer of a query (page, ranks, segment) above this is a 422; pages stay within BIGINT
MAX_BODY_BYTES = 1_000_000  # a what-if body is a few hundred bytes
EXAMPLE = '{"overrides": {"pct_centres_4g": 80}}'  # a what-if body, for messages
MAX_ECHO = 100  # characters of a request value an error answer may echo back
UBIGEO_PATTERN = r"^\d{1,6}$"  # six digits, or fewer when leading zeros were lost (padded like landing pads them)
# the reference's key column: landing left-pads its all-digit values to 6 digits; the API pads a path's ubigeo with
# the same SQL (brecha.landing.checks), so both accept the same codes
UBIGEO_COLUMN = next(c for c in INEI_DISTRICTS.columns if c.key and c.pad)
ASSOCIATIONAL = message("associational", "en")
RANK_COLUMNS = {"priority": "priority_rank", "divide": "national_rank"}
# mart column -> answer field (a column keeps its name from staging to the answer)
DISTRICT_FIELDS = {
    "ubigeo": "ubigeo", "district": "district", "province": "province", "department": "department",
    "department_code": "department_code", "latitude": "latitude", "longitude": "longitude",
    "population": "population", "internet_pct": "internet_pct",
    "predicted_internet_pct": "predicted_internet_pct", "lower_90": "lower_90", "upper_90": "upper_90",
    "is_out_of_fold": "is_out_of_fold", "gap_pp": "gap_pp", "divide_index": "divide_index",
    "national_rank": "national_rank", "priority_rank": "priority_rank", "segment_id": "segment_id",
    "segment_label": "segment_label", "run_id": "run_id", "model_name": "model_name",
    "households_offline": "households_offline", "map_shape": "map_shape", "map_reason": "map_reason",
    "map_note": "map_note", "marker_latitude": "marker_latitude", "marker_longitude": "marker_longitude",
}


Ubigeo = Annotated[str, PathParam(pattern=UBIGEO_PATTERN, description="INEI 6-digit district code; a code that "
                                  "lost its leading zeros (10101) is read as 010101, as landing reads it",
                                  examples=["010101"])]
Lang = Annotated[str | None, Query(description="Language of the messages: es (default) or en; without it, the "
                                   "Accept-Language header decides", pattern="^(es|en)$")]


def request_lang(request: Request) -> str:
    """The request's language: ``?lang=``, else Accept-Language, else Spanish."""
    return pick(request.query_params.get("lang") or request.headers.get("accept-language"))


class ApiError(Exception):
    """A 4xx/5xx answer in FastAPI's validation-error shape: ``{"detail": [{"loc", "msg", "type"}]}``; the message is
    brecha.serve.words.API[key] in the request's language."""

    def __init__(self, status: int, loc: list[str | int], key: str, kind: str, **fields: object) -> None:
        super().__init__(message(key, "en", **fields))
        self.status, self.loc, self.key, self.kind, self.fields = status, loc, key, kind, fields


# --- response and request models ------------------------------------------------------------------------------

class District(BaseModel):
    ubigeo: str = Field(description="INEI 6-digit district code")
    district: str | None
    province: str | None
    department: str | None
    department_code: str | None
    latitude: float | None
    longitude: float | None
    population: float | None = Field(description="Population: INEI's 2025 projection, as marts.dim_districts.population "
                                                 "(its population_source says where a district's value comes from)")
    internet_pct: float | None = Field(description="Census share of households with internet (null: unknown)")
    predicted_internet_pct: float | None = Field(description="Model's predicted share of households online, %")
    lower_90: float | None = Field(description="Lower end of the 90 % prediction interval, %")
    upper_90: float | None = Field(description="Upper end of the 90 % prediction interval, %")
    is_out_of_fold: bool | None = Field(description="True when the prediction comes from a model that did not see "
                                        "this district; null when the served copy does not record it")
    gap_pp: float | None = Field(description="actual − predicted, percentage points (null when actual unknown)")
    divide_index: float | None = Field(description="Digital divide index, 0-100 (higher = wider divide)")
    national_rank: int | None = Field(description="Rank by divide index (1 = widest divide)")
    priority_rank: int | None = Field(description="The divide lens's rank (1 = act first: widest divide, far below "
                                      "what the profile predicts); the households-offline lens's "
                                      "offline_priority_rank is under `more`")
    segment_id: int | None = Field(description="Cluster (segment) of similar districts, when present")
    segment_label: str | None
    run_id: str | None = Field(description="Model run (null for a district without reference data)")
    model_name: str | None
    households_offline: float | None = Field(description="Households without internet (mart_district_priorities)")
    map_shape: str | None = Field(description="How the maps draw it: polygon, or marker (no polygon of its own)")
    map_reason: str | None = Field(description="Why: own_polygon, recoded_polygon, inside_parent_polygon, "
                                   "null_geometry, not_in_boundaries, no_reference_data")
    map_note: str | None = Field(description="The maps' note for a district not drawn by its own polygon (Spanish)")
    marker_latitude: float | None = Field(description="Where the district's marker goes (always set)")
    marker_longitude: float | None
    more: dict[str, Any] = Field(default_factory=dict,
                                 description="Other columns of marts.mart_district_profile, by name")


class DistrictPage(BaseModel):
    total: int = Field(description="Districts matching the filters")
    page: int
    page_size: int
    items: list[District]


class Interval(BaseModel):
    predicted_internet_pct: float
    lower_90: float
    upper_90: float


class Override(BaseModel):
    feature: str
    description: str
    baseline_value: float | None = Field(description="The district's own value (null: missing, imputed by the model)")
    scenario_value: float
    valid_range: tuple[float, float]


class RecomputedFeature(BaseModel):
    feature: str
    baseline_value: float | None
    scenario_value: float | None
    rule: str = Field(description="How it follows from the overridden feature")


class HeldFeature(BaseModel):
    feature: str
    value: float | None = Field(description="The district's own value, used in the scenario too")
    reason: str


class WhatIf(BaseModel):
    ubigeo: str
    district: str | None
    department: str | None
    run_id: str
    model_name: str
    overrides: list[Override]
    baseline: Interval = Field(description="The district's published prediction and 90 % interval: the numbers "
                               "GET /districts/{ubigeo}, the atlas and the map show (out of fold for a district "
                               "with a census share)")
    scenario: Interval = Field(description="The baseline moved by model_change_pp (prediction and interval), "
                               "clipped to 0-100")
    difference_pp: float = Field(description="scenario − baseline predicted share, percentage points")
    model_change_pp: float = Field(description="The served final model on the scenario's features minus on the "
                                   "district's own features, percentage points: the change applied to the baseline")
    recomputed: list[RecomputedFeature] = Field(description="Features computed from an overridden one, recomputed "
                                                "for the scenario")
    held_fixed: list[HeldFeature] = Field(description="Features that depend on an overridden one in reality but "
                                          "cannot be recomputed from the warehouse: held at the district's values")
    internet_pct: float | None = Field(description="The district's census share of households with internet, %")
    note: str = Field(description="How to read the answer")


class FeatureInfo(BaseModel):
    name: str
    description: str
    minimum: float
    maximum: float
    bounds: Literal["natural", "observed"] = Field(description="natural: the quantity's own bounds (shares 0-100, "
                                                   "fractions and flags 0-1); observed: min-max in the served copy")


class ModelInfo(BaseModel):
    run_id: str
    model_name: str
    model_family: str | None
    target: str | None
    metrics: dict[str, float | int | None] = Field(description="Spatial-CV metrics of the selected model "
                                                   "(folds by department; MAE/RMSE in percentage points)")
    candidates: list[dict[str, Any]] = Field(description="Every model compared in the run, with its CV metrics")
    conformal: dict[str, Any] | None
    features: list[FeatureInfo] = Field(description="Features the model uses: the ones a what-if may override")
    snapshot: dict[str, Any] | None = Field(description="The serving snapshot answered from (ops.snapshots)")


class Health(BaseModel):
    status: Literal["ok"]
    serving_db: str = Field(description="What is answered from: the serving file (relative to BRECHA_HOME) or "
                            "'lake snapshot N'")
    snapshot: dict[str, Any] | None
    run_id: str | None
    lake_snapshot: int | None = Field(None, description="On the lake: the published DuckLake snapshot answered from "
                                      "(every answer's X-Brecha-Snapshot header names it too)")


def _override_field(name: str) -> tuple[type, Any]:
    bounds = natural_bounds(name)
    desc = FEATURE_DESCRIPTIONS[name]
    # strict: a JSON number only (an integer is one); "80" and true are refused
    if bounds is None:
        return float | None, Field(None, strict=True, description=f"{desc}. Valid range: the min-max observed in "
                                   "the served copy (GET /model lists it)")
    return float | None, Field(None, strict=True, ge=bounds[0], le=bounds[1],
                               description=f"{desc}. Valid range: {bounds[0]:g}-{bounds[1]:g}")


Overrides = create_model(
    "Overrides",
    __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
    __doc__="Feature values to set (any subset; only features the served model uses, see GET /model). "
            "Unknown names are rejected.",
    **{name: _override_field(name) for name in FEATURE_NAMES},
)


class WhatIfRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"overrides": {"pct_centres_4g": 80}}]})
    overrides: Overrides = Field(description="Feature -> value for the scenario")  # type: ignore[valid-type]


# --- the app --------------------------------------------------------------------------------------------------

def create_app(settings: Settings | None = None, serving_db: Path | None = None, *, lake_poll: float = 1.0) -> FastAPI:
    """The API over ``serving_db`` (default: the serving copy of ``settings``' home, or on the lake its published
    snapshot, whose ledger is read at most every ``lake_poll`` seconds). The app factory is an entry point: without
    ``settings`` it builds them from the environment (``BRECHA_HOME``, ``BRECHA_LAKE``, ...)."""
    if settings is None:
        import os

        settings = Settings.from_env(os.environ)
    with using(settings):
        if serving_db is None and settings.storage == "lake":
            return _create_app(settings, LakeServed(lake_poll))
        return _create_app(settings, ServedCopy(serving_db or settings.paths.serving_db))


def _create_app(settings: Settings, served: ServedCopy | LakeServed) -> FastAPI:
    app = FastAPIOffline(  # FastAPI with the Swagger UI page's assets served from the installed package (no CDN)
        title="Brecha prediction API",
        version="1",
        summary="District answers and what-if scenarios over the published serving copy (read-only).",
        description=f"Reads only the published serving copy ({served.where}) and the model artifact of the run "
                    f"it serves; a new `brecha publish` or a rollback is picked up without a restart.\n\n{ASSOCIATIONAL}",
        redoc_url=None,
    )
    app.state.served = served
    app.state.settings = settings
    app.state.batcher = Batcher(functools.partial(_in_effect, settings, _predict_frame))  # its own thread
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(SettingsInEffect, settings=settings)
    app.openapi = functools.partial(custom_openapi, app)
    app.state.openapi_key = None
    for error, handler in ((ApiError, _api_error), (RequestValidationError, _invalid), (HTTPException, _http),
                           (NotServed, _not_served)):
        app.add_exception_handler(error, handler)
    for router in (service, districts_router, model_router):
        app.include_router(router)
    return app


# --- the routes, on routers; the served copy and the what-if batcher come as dependencies -------------------------

def _current(request: Request, response: Response) -> Version:
    """The version this request answers from, every query of it included (a what-if's lookup and its model run
    the same snapshot); named in the answer's ``X-Brecha-Snapshot`` header."""
    v = request.app.state.served.current()
    if v.label is not None:
        response.headers[SNAPSHOT_HEADER] = v.label
    return v


def _batcher(request: Request) -> Batcher:
    return request.app.state.batcher


Current = Annotated[Version, Depends(_current)]
SNAPSHOT_HEADER = "X-Brecha-Snapshot"
service = APIRouter(tags=["service"])
districts_router = APIRouter(tags=["districts"])
model_router = APIRouter(tags=["model"])


@service.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    """The API's page: its OpenAPI documentation."""
    return RedirectResponse("/docs")


@service.get("/health", response_model=Health,
             responses={503: {"description": "Nothing to serve, or (on the lake) its catalog cannot be reached: "
                              "the error's msg says what to run"}})
def health(v: Current, lang: Lang = None) -> Health:
    """Which serving file or lake snapshot, and which model run, the answers come from; a cheap query on it first,
    so an unreachable lake catalog is a 503, not ok."""
    v.check()
    lake = v.snapshot.get("lake_snapshot") if v.snapshot else None
    return Health(status="ok", serving_db=v.where, snapshot=v.snapshot, run_id=v.run_id, lake_snapshot=lake)

@districts_router.get("/districts/{ubigeo}", response_model=District,
         responses={404: {"description": "Unknown ubigeo"}})
def district(ubigeo: Ubigeo, v: Current, lang: Lang = None) -> District:
    """One district, as the map and the atlas show it (its polygon as GeoJSON in ``more.geometry_geojson``)."""
    v.require_profile()
    with v.cursor() as con:
        ubigeo = padded(con, ubigeo)
        rows = _records(con.execute(f"SELECT * FROM {PROFILE} WHERE ubigeo = ?", [ubigeo]))
    if not rows:
        raise ApiError(404, ["path", "ubigeo"], "not_found", "not_found", ubigeo=ubigeo)
    return _district(rows[0])

@districts_router.get("/districts", response_model=DistrictPage)
def districts(
    department: Annotated[str | None, Query(description="Department name (case-insensitive)",
                                            examples=["AMAZONAS"])] = None,
    province: Annotated[str | None, Query(description="Province name (case-insensitive)")] = None,
    segment_id: Annotated[int | None, Query(ge=0, le=MAX_INT, description="Segment (cluster) id")] = None,
    rank_by: Annotated[Literal["priority", "divide"], Query(
        description="Which rank the range and the order use: priority_rank or national_rank (divide index)")
    ] = "priority",
    rank_min: Annotated[int | None, Query(ge=1, le=MAX_INT, description="Smallest rank to include")] = None,
    rank_max: Annotated[int | None, Query(ge=1, le=MAX_INT, description="Largest rank to include")] = None,
    page: Annotated[int, Query(ge=1, le=MAX_INT, description="A page past the last is empty")] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"At most {MAX_PAGE_SIZE}")] = 50,
    *,
    v: Current,
    lang: Lang = None,
) -> DistrictPage:
    """Districts ordered by the chosen rank, filtered, one page at a time (every district of the reference:
    those without a rank come last; polygons are left out of the list, GET /districts/{ubigeo} has them)."""
    if rank_min is not None and rank_max is not None and rank_min > rank_max:
        raise ApiError(422, ["query", "rank_min"], "rank_order", "value_error", rank_min=rank_min,
                       rank_max=rank_max)
    v.require_profile()
    rank = RANK_COLUMNS[rank_by]
    where, params = [], []
    with v.cursor() as con:
        for field, value in (("department", department), ("province", province)):
            if value is None:
                continue
            known = con.execute(f"SELECT count(*) FROM {PROFILE} WHERE upper({field}) = upper(?)",
                                [value]).fetchone()[0]
            if not known:
                raise ApiError(422, ["query", field], "unknown_value", "value_error", field=field,
                               value=echo(value), example=_example(con, field))
            where.append(f"upper({field}) = upper(?)")
            params.append(value)
        if segment_id is not None:
            ids = [s for (s,) in con.execute(f"SELECT DISTINCT segment_id FROM {PROFILE} "
                                             "WHERE segment_id IS NOT NULL ORDER BY 1").fetchall()]
            if segment_id not in ids:
                raise ApiError(422, ["query", "segment_id"], "unknown_segment", "value_error", value=segment_id,
                               known=ids)
            where.append("segment_id = ?")
            params.append(segment_id)
        if rank_min is not None:
            where.append(f"{rank} >= ?")
            params.append(rank_min)
        if rank_max is not None:
            where.append(f"{rank} <= ?")
            params.append(rank_max)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        total = con.execute(f"SELECT count(*) FROM {PROFILE} {clause}", params).fetchone()[0]
        rows = _records(con.execute(f"SELECT * EXCLUDE (geometry_geojson) FROM {PROFILE} {clause} "
                                    f"ORDER BY {rank} NULLS LAST, ubigeo "
                                    "LIMIT ? OFFSET ?", [*params, page_size, (page - 1) * page_size]))
    return DistrictPage(total=total, page=page, page_size=page_size, items=[_district(r) for r in rows])

@model_router.get("/model", response_model=ModelInfo)
def model(v: Current, lang: Lang = None) -> ModelInfo:
    """The model run served, its metrics, and the features a what-if may override with their ranges."""
    m = v.model()
    with v.cursor() as con:
        cands = con.execute("SELECT model_name, model_family, selected, cv_r2, cv_mae, cv_rmse, "
                            "interval_coverage, n_train, n_features FROM ml.model_runs WHERE run_id = ? "
                            "ORDER BY cv_mae", [m.run_id]).df()
    return ModelInfo(
        run_id=m.run_id, model_name=m.model_name, model_family=m.model_family, target=m.config.get("target"),
        metrics=m.metrics, conformal=m.config.get("conformal"), snapshot=v.snapshot,
        candidates=[{k: (json_number(x) if not isinstance(x, str) else x) for k, x in r.items()}
                    for r in cands.to_dict("records")],
        features=[FeatureInfo(name=r.name, description=r.description, minimum=r.minimum, maximum=r.maximum,
                              bounds=r.source) for r in v.ranges().values()],
    )

@districts_router.post("/districts/{ubigeo}/whatif", response_model=WhatIf,
          responses={404: {"description": "Unknown ubigeo"}, 422: {"description": "Unknown feature, "
                     "feature the model does not use, or a value out of its range"}})
def whatif(ubigeo: Ubigeo, body: Annotated[WhatIfRequest, Body()], request: Request, v: Current,
           batcher: Annotated[Batcher, Depends(_batcher)], lang: Lang = None) -> WhatIf:
    """Predict the district's internet share with some of its features set to other values."""
    m = v.model()
    with v.cursor() as con:
        ubigeo = padded(con, ubigeo)
    overrides = {k: val for k, val in body.overrides.model_dump().items() if val is not None}
    if not overrides:
        raise ApiError(422, ["body", "overrides"], "no_overrides", "missing", example=EXAMPLE)
    feats = v.features()
    if ubigeo not in feats.index:
        raise ApiError(404, ["path", "ubigeo"], "not_found", "not_found", ubigeo=ubigeo)
    ranges = v.ranges()
    for name, val in overrides.items():
        if name not in ranges:
            raise ApiError(422, ["body", "overrides", name], "not_used", "feature_not_used", name=name,
                           model=m.model_name, run=m.run_id, features=", ".join(m.features))
        r = ranges[name]
        if not r.minimum <= val <= r.maximum:
            raise ApiError(422, ["body", "overrides", name], "out_of_range", "out_of_range", name=name,
                           value=f"{val:g}", low=f"{r.minimum:g}", high=f"{r.maximum:g}", source=r.source)
    info = v.names.loc[ubigeo]  # district, department, internet_pct, department_code
    with v.cursor() as con:
        published = con.execute(f"SELECT {', '.join(INTERVAL)} FROM {PROFILE} WHERE ubigeo = ?",
                                [ubigeo]).df()
    if published.empty or published.isna().any(axis=None):
        raise ApiError(404, ["path", "ubigeo"], "no_prediction", "not_found", ubigeo=ubigeo)
    base_row = feats.loc[[ubigeo], list(m.features)]
    scen = scenario_features(base_row, overrides)
    frame = pd.concat([base_row, scen.features])
    frame.index = pd.Index(["baseline", "scenario"])
    departments = pd.Series([info["department_code"]] * 2, index=frame.index)  # intervals calibrated by region, where they are
    try:
        pred = batcher.predict(m.run_id, frame, departments)
    except (BrechaError, OSError, EOFError, pickle.UnpicklingError):  # the artifact went missing or is damaged
        raise v.no_artifact(m.run_id, m.model_name) from None
    published.index = pd.Index(["published"])
    moved = from_published(published, pred.loc[["baseline"]], pred.loc[["scenario"]])
    base, scenario = (Interval(**{k: float(f.iloc[0][k]) for k in Interval.model_fields})
                      for f in (published, moved))
    return WhatIf(
        ubigeo=ubigeo, district=_text(info["district"]), department=_text(info["department"]), run_id=m.run_id, model_name=m.model_name,
        overrides=[Override(feature=n, description=ranges[n].description,
                            baseline_value=json_number(feats.loc[ubigeo, n]), scenario_value=float(val),
                            valid_range=(ranges[n].minimum, ranges[n].maximum)) for n, val in overrides.items()],
        baseline=base, scenario=scenario,
        difference_pp=scenario.predicted_internet_pct - base.predicted_internet_pct,
        model_change_pp=float(pred.loc["scenario", "predicted_internet_pct"]
                              - pred.loc["baseline", "predicted_internet_pct"]),
        recomputed=[RecomputedFeature(feature=f, baseline_value=json_number(base_row.iloc[0][f]),
                                      scenario_value=json_number(scen.features.iloc[0][f]), rule=rule)
                    for f, rule in scen.recomputed.items()],
        held_fixed=[HeldFeature(feature=f, value=json_number(base_row.iloc[0][f]), reason=reason)
                    for f, reason in scen.held_fixed.items()],
        internet_pct=json_number(info["internet_pct"]), note=message("associational", request_lang(request)),
    )



def custom_openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema, with the valid range of every feature in the served copy written into the
    what-if's ``Overrides`` (regenerated when a new copy is served)."""
    try:
        v = app.state.served.current()
        ranges, model = v.ranges(), v.model()
    except NotServed:
        v, ranges, model = None, {}, None
    key = None if v is None else v.key
    if app.openapi_schema is not None and app.state.openapi_key == key:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                         description=app.description, routes=app.routes)
    props = schema["components"]["schemas"]["Overrides"]["properties"]
    for name, prop in props.items():
        r = ranges.get(name)
        if r is not None:
            number = next(t for t in prop["anyOf"] if t.get("type") == "number")
            number["minimum"], number["maximum"] = r.minimum, r.maximum
            prop["description"] += (f". Served model {model.model_name} (run {model.run_id}): valid "
                                    f"{r.minimum:g}..{r.maximum:g} ({r.source})")
        elif model is not None:
            prop["description"] += f". Not used by the served model {model.model_name}: rejected"
    app.openapi_schema, app.state.openapi_key = schema, key
    return schema



def _api_error(request: Request, err: ApiError) -> JSONResponse:
    msg = message(err.key, request_lang(request), **err.fields)
    return JSONResponse({"detail": [{"loc": err.loc, "msg": msg, "type": err.kind}]}, status_code=err.status)

def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
    errors = []
    for e in err.errors():
        e = dict(e)
        e["loc"] = [echo(part) for part in e.get("loc", ())]  # a dict key of the body is the user's too
        if e.get("type") == "extra_forbidden" and tuple(e["loc"][:2]) == ("body", "overrides"):
            e["msg"] = message("unknown_feature", request_lang(request), name=e["loc"][-1])
        if "input" in e:
            e["input"] = echo(e["input"])
        errors.append(e)
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

async def _http(request: Request, err: HTTPException) -> JSONResponse:
    if err.status_code != 400:  # an unknown route or method: FastAPI's own answer
        return await http_exception_handler(request, err)
    # FastAPI's only 400 here: a body that is not JSON it can read (bad UTF-8, nesting too deep for the
    # parser, an integer of thousands of digits); answered in the shape and language of every other error
    msg = message("bad_body", request_lang(request), example=EXAMPLE)
    return JSONResponse({"detail": [{"loc": ["body"], "msg": msg, "type": "json_invalid"}]}, status_code=400)

def _not_served(request: Request, err: NotServed) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": ["serving_db"], "msg": err.text(request_lang(request)),
                                     "type": "not_served"}]},
                        status_code=503)



def padded(con, ubigeo: str) -> str:
    """``ubigeo`` as landing stores it: all digits and shorter than six, left-padded with zeros (``10101`` ->
    ``010101``); by landing's own SQL for the reference's code column, run on the request's connection."""
    return con.execute(f"SELECT {landed_code_sql(UBIGEO_COLUMN, '$1')}", [ubigeo]).fetchone()[0]


def echo(value: object) -> object:
    """``value`` (part of a request) as an error answer may show it: unchanged when its JSON text is short,
    else its first ``MAX_ECHO`` characters and an ellipsis; NaN and Infinity (not JSON) as text."""
    if isinstance(value, str):
        return value if len(value) <= MAX_ECHO else value[:MAX_ECHO] + "…"
    try:
        text = json.dumps(jsonable_encoder(value), allow_nan=False, ensure_ascii=False)
    except ValueError:  # NaN / Infinity somewhere in it, or an integer too long to print
        try:
            text = repr(value)
        except ValueError:
            return "…"
        return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "…"
    return value if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "…"


class SettingsInEffect:
    """ASGI middleware: the app's settings are in effect (``brecha.core.settings.using``) while a request is answered,
    in its tasks and the worker threads they hand work to."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with using(self.settings):
            await self.app(scope, receive, send)


def _in_effect(settings: Settings, fn: Any, *args: Any, **kwargs: Any) -> Any:
    with using(settings):
        return fn(*args, **kwargs)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 before anything reads it whole or
    parses it: at once when its Content-Length says so, else (a chunked body) as soon as the bytes received pass
    the limit. A body within it is buffered and handed on unchanged."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.strip().isdigit() and (len(length.strip()) > 18 or int(length) > self.limit):
            await self._refuse(scope, receive, send)
            return
        received: list[Message] = []
        size, more = 0, True
        while more:
            msg = await receive()
            received.append(msg)
            if msg["type"] != "http.request":
                break
            size += len(msg.get("body", b""))
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            more = msg.get("more_body", False)

        async def replay() -> Message:
            return received.pop(0) if received else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        lang = request_lang(Request(scope))
        limit = f"{self.limit / 1e6:g} MB"
        await JSONResponse({"detail": [{"loc": ["body"], "msg": message("body_too_large", lang, limit=limit),
                                        "type": "too_large"}]}, status_code=413)(scope, receive, send)


def _example(con, field: str) -> str:
    row = con.execute(f"SELECT {field} FROM {PROFILE} WHERE {field} IS NOT NULL ORDER BY 1 LIMIT 1").fetchone()
    return repr(row[0]) if row else "none served"


def _predict_frame(run_id: str, features: pd.DataFrame, departments: pd.Series) -> pd.DataFrame:
    from brecha_ml.predict import predict_frame

    return predict_frame(run_id, features, departments=departments)


def _text(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _records(result) -> list[dict[str, Any]]:
    cols = [d[0] for d in result.description]
    return [dict(zip(cols, r, strict=True)) for r in result.fetchall()]


def _jsonable(v: object) -> Any:
    try:
        return json_number(v)
    except (TypeError, ValueError):  # e.g. a date in a column added to the mart later
        return str(v)


def _district(row: dict[str, Any]) -> District:
    data: dict[str, Any] = {field: None for field in DISTRICT_FIELDS.values()}
    more: dict[str, Any] = {}
    for col, val in row.items():
        value = val if isinstance(val, str) else _jsonable(val)
        if col in DISTRICT_FIELDS:
            data[DISTRICT_FIELDS[col]] = value
        else:
            more[col] = value
    if data["is_out_of_fold"] is not None:
        data["is_out_of_fold"] = bool(data["is_out_of_fold"])
    return District(**data, more=more)


def warm(app: FastAPI) -> None:
    """Limit BLAS/OpenMP/torch to one thread, open the copy, build the feature table and load the model, so the
    first request is not slow (a missing copy is only reported: the API answers 503 until one is published)."""
    import torch
    from threadpoolctl import threadpool_limits

    from brecha_ml.predict import predict_frame

    # One thread per request: on 2 cores, parallelism comes from concurrent requests. OpenMP's limit is per
    # thread: `brecha serve` also sets OMP_NUM_THREADS=1 before the libraries load, which is what reaches the
    # server's worker threads; this call covers the libraries loaded in this thread.
    torch.set_num_threads(1)
    threadpool_limits(limits=1)
    try:
        with using(app.state.settings):
            v: Version = app.state.served.current()
            m = v.model()
            predict_frame(m.run_id, v.features().iloc[:1])
    except NotServed as err:
        print(f"warning: {err}; the API answers 503 until a copy is published")
    except (BrechaError, OSError) as err:  # e.g. the artifact folder of a copied home is gone
        print(f"warning: {err}; what-ifs answer 503 until the served run's artifacts are there")


def warm_app(settings: Settings | None = None) -> FastAPI:
    """The app for ``settings`` (default: from the environment, in a uvicorn worker process), warmed up."""
    app = create_app(settings)
    warm(app)
    return app


def worker_app() -> FastAPI:
    """``warm_app`` in one of ``serve``'s worker processes, which ends with the main process: killed with SIGKILL,
    the main process takes its workers down with it (``brecha.core.lifetime.exit_with_parent``), so none is left
    holding the port."""
    from brecha.core.lifetime import exit_with_parent

    exit_with_parent()
    return warm_app()


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          workers: int = 1) -> None:
    """Run the API with uvicorn: ``workers`` processes, each answering requests from its thread pool.

    Most of a what-if is Python work under the GIL, so a second process is what uses a second core; each
    worker holds its own copy of the model and feature table (about 0.5 GB with torch loaded).
    """
    import uvicorn

    if workers > 1:
        uvicorn.run("brecha.serve.api.app:worker_app", factory=True, host=host, port=port, log_level=log_level,
                    workers=workers)
    else:
        uvicorn.run(warm_app(settings), host=host, port=port, log_level=log_level)
