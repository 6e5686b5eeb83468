"""Operations endpoints: open liveness and readiness probes, detailed health behind a token.

The probes say only what a load balancer needs (see :mod:`api.health`); names, paths and
errors are in ``/v1/health``, which takes the metrics or the admin token like ``/metrics``,
and so does ``/v1/lake``, the lake's inventory.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import MetricsDep
from api.health import SHUTTING_DOWN, Health, Probe, check_health
from api.routes import _examples as ex
from api.routes._responses import error_responses, ok
from api.schemas import LakeOut, LakeTableOut
from lake.inventory import lake_inventory

router = APIRouter(tags=["operations"])


def _health(request: Request) -> Health:
    state = request.app.state
    readiness = getattr(state, "readiness", None)
    return check_health(
        state.engine,
        state.pool,
        snapshot_loaded=getattr(state, "serving", None) is not None,
        lake_writers_healthy=readiness() if readiness is not None else {},
        shutting_down=state.shutdown.begun,
    )


@router.get("/healthz", summary="Liveness probe", responses=ok(ex.ALIVE))
async def healthz() -> dict[str, str]:
    """Answers while the process runs; needs no token and says nothing else."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Probe,
    summary="Readiness probe",
    responses=ok(ex.READY)
    | {
        503: {
            "model": Probe,
            "description": "Not ready: the replica cannot serve yet, or is shutting down.",
            "content": {
                "application/json": {
                    "example": {
                        "ready": False,
                        "checks": {"store": "ok", "lake": "ok", "models": "ok"},
                        "degraded": [],
                        "reason": SHUTTING_DOWN,
                    }
                }
            },
        }
    },
)
def readyz(request: Request) -> JSONResponse:
    """Whether this replica can serve predictions, with one word per part (`store`,
    `lake`, `models`: `ok`, `failing` or `unavailable`); 503 while it cannot, and from
    SIGTERM on (with a `reason`: it is shutting down). Needs no token and names no path,
    host or error."""
    probe = _health(request).probe()
    # `reason` appears only while not ready: a ready body is what it always was.
    body = probe.model_dump(mode="json", exclude_none=True)
    return JSONResponse(body, status_code=200 if probe.ready else 503)


@router.get(
    "/v1/health",
    summary="Detailed health",
    responses=ok(ex.HEALTH) | error_responses(401, 403),
)
def health(request: Request, _: MetricsDep) -> Health:
    """The probe's answer plus the details an operator needs: the store's error, each lake
    table's state, each model's execution provider or load failure. Needs the metrics or
    the admin token."""
    return _health(request)


@router.get(
    "/v1/lake",
    summary="Lake inventory",
    responses=ok(ex.LAKE) | error_responses(401, 403, 503),
)
def lake(request: Request, _: MetricsDep) -> LakeOut:
    """What the inference lake holds per table, from the manifest (one query, no file read):
    live files, split into small ones (the writers' flushes, not compacted yet) and
    published ones (compacted, in the Delta table); files replaced by a compaction and
    awaiting deletion; rows and bytes of the live files; the Delta table's latest version
    (null before the first publication); when the last compaction finished; compactions
    by status. Needs the metrics or the admin token."""
    inventory = lake_inventory(request.app.state.engine)
    return LakeOut(
        tables={
            table: LakeTableOut(
                live_files=t.live_files,
                small_files=t.small_files,
                published_files=t.published_files,
                replaced_files=t.replaced_files,
                rows=t.live_rows,
                published_rows=t.published_rows,
                bytes=t.live_bytes,
                delta_version=t.delta_version,
                last_compaction_at=t.last_compaction_at,
                compactions=dict(t.compactions),
            )
            for table, t in inventory.items()
        }
    )
