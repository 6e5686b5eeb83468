"""Operations endpoints: open liveness and readiness probes, detailed health behind a token.

The probes say only what a load balancer needs (see :mod:`api.health`); names, paths and
errors are in ``/v1/health``, which takes the metrics or the admin token like ``/metrics``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import MetricsDep
from api.health import Health, Probe, check_health

router = APIRouter(tags=["operations"])


def _health(request: Request) -> Health:
    state = request.app.state
    readiness = getattr(state, "readiness", None)
    return check_health(
        state.engine,
        state.pool,
        snapshot_loaded=getattr(state, "serving", None) is not None,
        lake_writers_healthy=readiness() if readiness is not None else {},
    )


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Probe,
    responses={503: {"model": Probe, "description": "Not ready: the replica cannot serve yet."}},
)
def readyz(request: Request) -> JSONResponse:
    probe = _health(request).probe()
    return JSONResponse(probe.model_dump(mode="json"), status_code=200 if probe.ready else 503)


@router.get("/v1/health")
def health(request: Request, _: MetricsDep) -> Health:
    return _health(request)
