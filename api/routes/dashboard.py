"""``/dashboard``: the experiment dashboard page, its assets, and its JSON panels.

The page and its assets hold no data and need no token (like ``/docs``). The JSON
panels under ``/dashboard/api`` expose experiment data, so they take the admin token
(loopback callers need none while no token is configured); the page sends the token it
was given in ``?token=`` or kept in ``localStorage`` as a bearer header.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse

from api.control import experiments
from api.deps import AdminDep, SessionDep, SettingsDep
from api.errors import NotFoundError
from api.readout import panels, quality
from api.readout.report import Report, build_report
from api.routes import _dashboard_examples as dex
from api.routes import _examples as ex
from api.routes._responses import ADMIN_ERRORS, error_responses, ok
from lake.dashboard import DashboardQueries
from lake.reader import Lake, open_lake

router = APIRouter(tags=["dashboard"], responses=ADMIN_ERRORS)

STATIC: Final = Path(__file__).resolve().parents[1] / "static"
# Only files shipped with the package are served: a fixed map, so no path from the URL
# ever reaches the file system.
_ASSETS: Final = {
    p.relative_to(STATIC).as_posix(): p for p in sorted(STATIC.rglob("*")) if p.is_file()
}
_NO_CACHE: Final = {"Cache-Control": "no-cache"}
# The page's scripts are ES modules, which browsers run only when served with a JavaScript
# type; named here so a host's mime.types (or Windows registry) cannot say text/plain.
_MEDIA_TYPES: Final = {".js": "text/javascript", ".css": "text/css"}

Hours = Annotated[int, Query(ge=1, le=24 * 90, description="Window length in hours.")]
VariantName = Annotated[
    str | None,
    Query(max_length=64, description="Only this variant's rows; every arm's when absent."),
]
Buckets = Annotated[int, Query(ge=1, le=1000, description="Number of time buckets.")]


def get_lake(request: Request, settings: SettingsDep) -> Iterator[Lake]:
    """A manifest snapshot taken for this request."""
    with open_lake(request.app.state.engine, request.app.state.lake_storage) as lake:
        yield lake


def get_queries(request: Request) -> DashboardQueries:
    """The app's dashboard queries (its DuckDB connection and cache), made in the lifespan."""
    queries: DashboardQueries = request.app.state.dashboard_queries
    return queries


LakeDep = Annotated[Lake, Depends(get_lake)]
QueriesDep = Annotated[DashboardQueries, Depends(get_queries)]


@router.get("/dashboard", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "dashboard.html", headers=_NO_CACHE)


@router.get("/dashboard/static/{path:path}", include_in_schema=False)
async def asset(path: str) -> FileResponse:
    found = _ASSETS.get(path)
    if found is None:
        msg = f"The dashboard has no file {path!r}."
        raise NotFoundError(msg, code="asset_not_found")
    return FileResponse(found, headers=_NO_CACHE, media_type=_MEDIA_TYPES.get(found.suffix))


@router.get(
    "/dashboard/api/experiments",
    summary="Dashboard: experiment list",
    responses=ok(dex.DASHBOARD_EXPERIMENTS),
)
def experiment_list(
    request: Request, _: AdminDep, session: SessionDep
) -> list[panels.ExperimentSummary]:
    """One line per experiment for the dashboard's list: status, reward, policy, variants,
    requests so far and the report's verdict."""
    return panels.summaries(session, request.app.state.lake_stats)


@router.get(
    "/dashboard/api/experiments/{name}/report",
    summary="Dashboard: experiment report",
    responses=ok(ex.REPORT) | error_responses(404, 422),
)
def report(name: str, request: Request, _: AdminDep, session: SessionDep) -> Report:
    """The experiment's report, as `GET /v1/experiments/{name}/report` gives it."""
    experiment = experiments.get_experiment(session, name)
    return build_report(session, experiment, request.app.state.lake_stats)


@router.get(
    "/dashboard/api/experiments/{name}/allocations",
    summary="Dashboard: allocation over time",
    responses=ok(dex.DASHBOARD_ALLOCATIONS) | error_responses(404, 422),
)
def allocation_history(
    name: str, _: AdminDep, session: SessionDep, lake: LakeDep, queries: QueriesDep
) -> panels.AllocationHistory:
    """Every allocation version as a step of the allocation chart: its weights, reason,
    author and, where the policy computed it, P(best) per arm."""
    experiment = experiments.get_experiment(session, name)
    return panels.allocation_history(session, queries, lake, experiment)


@router.get(
    "/dashboard/api/experiments/{name}/timeseries",
    summary="Dashboard: time series",
    responses=ok(dex.DASHBOARD_TIMESERIES) | error_responses(404, 422),
)
def time_series(
    name: str,
    _: AdminDep,
    session: SessionDep,
    lake: LakeDep,
    queries: QueriesDep,
    settings: SettingsDep,
    hours: Hours = 24,
    buckets: Buckets = 48,
) -> panels.TimeSeries:
    """Per variant and time bucket over the last `hours`: requests, errors and error rate,
    rewarded requests, reward mean with its interval, latency p50 and p99."""
    experiment = experiments.get_experiment(session, name)
    return panels.time_series(
        queries,
        lake,
        experiment,
        hours=hours,
        buckets=buckets,
        lookback=timedelta(seconds=settings.feedback_lookback_s),
    )


@router.get(
    "/dashboard/api/experiments/{name}/drift",
    summary="Dashboard: feature drift",
    responses=ok(dex.DASHBOARD_DRIFT) | error_responses(404, 422),
)
def drift(
    name: str,
    _: AdminDep,
    session: SessionDep,
    lake: LakeDep,
    queries: QueriesDep,
    hours: Hours = 24,
) -> panels.DriftOut:
    """Per feature: the population stability index of the requests in the last window of
    the last `hours` against the first window, flagged above the threshold."""
    experiment = experiments.get_experiment(session, name)
    return panels.drift(queries, lake, experiment, hours=hours)


@router.get(
    "/dashboard/api/experiments/{name}/prediction-drift",
    summary="Dashboard: prediction drift",
    responses=ok(dex.DASHBOARD_PREDICTION_DRIFT) | error_responses(404, 422),
)
def prediction_drift(
    name: str,
    _: AdminDep,
    session: SessionDep,
    lake: LakeDep,
    queries: QueriesDep,
    hours: Hours = 24,
) -> quality.PredictionDriftOut:
    """Per variant: the population stability index of its predictions in the last window
    against the first (the feature-drift windows; online and stream rows), flagged above
    the threshold; `psi` is null while a window has fewer than `min_rows` predictions."""
    experiment = experiments.get_experiment(session, name)
    return quality.prediction_drift(queries, lake, experiment, hours=hours)


@router.get(
    "/dashboard/api/experiments/{name}/quality",
    summary="Dashboard: data quality",
    responses=ok(dex.DASHBOARD_QUALITY) | error_responses(404, 422),
)
def data_quality(
    name: str,
    request: Request,
    _: AdminDep,
    session: SessionDep,
    lake: LakeDep,
    queries: QueriesDep,
    hours: Hours = 24,
    variant: VariantName = None,
) -> quality.DataQualityOut:
    """Per feature: the share of rows missing it in each window, the share of the last
    window's values outside the first window's range, the NaN or infinite values logged,
    and those the service refused (422) since it started."""
    experiment = experiments.get_experiment(session, name)
    return quality.data_quality(
        queries, lake, experiment, request.app.state.metrics, hours=hours, variant=variant
    )
