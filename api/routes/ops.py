"""Operations endpoints: liveness and readiness, no token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    checks: dict[str, Any] = {}
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["store"] = "ok"
    except Exception as exc:
        checks["store"] = f"unreachable: {type(exc).__name__}"
    checks["models"] = {
        f"{k.experiment}/{k.variant}": {"provider": p} for k, p in state.pool.providers().items()
    }
    for key, reason in state.pool.failures().items():
        checks["models"][f"{key.experiment}/{key.variant}"] = {"failed": reason}
    extra = getattr(state, "readiness", None)
    if extra is not None:
        checks.update(extra())
    ready = all(v == "ok" for k, v in checks.items() if k != "models")
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
