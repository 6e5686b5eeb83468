"""Serving API: predict (single and batch) and feedback (single and batch)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import JSONResponse

from api.deps import ServeDep, SettingsDep
from api.errors import InvalidRequestError
from api.schemas import BatchFeedbackBody, BatchPredictBody, FeedbackBody, PredictBody, PredictOut
from api.serving.service import ServingService

router = APIRouter(tags=["serving"])


def get_service(request: Request) -> ServingService:
    service: ServingService = request.app.state.serving
    return service


ServiceDep = Annotated[ServingService, Depends(get_service)]


@router.post("/v1/experiments/{name}/predict", response_model=PredictOut)
async def predict(name: str, body: PredictBody, service: ServiceDep, _: ServeDep) -> JSONResponse:
    return JSONResponse(await service.predict(name, body.features, body.unit_id))


@router.post("/v1/experiments/{name}/predict/batch")
async def predict_batch(
    name: str, body: BatchPredictBody, service: ServiceDep, _: ServeDep
) -> JSONResponse:
    rows = [(row.features, row.unit_id) for row in body.rows]
    return JSONResponse({"results": await service.predict_batch(name, rows)})


@router.post("/v1/feedback", status_code=status.HTTP_202_ACCEPTED)
async def feedback(body: FeedbackBody, service: ServiceDep, _: ServeDep) -> dict[str, int]:
    return {"accepted": service.feedback([(body.request_id, body.reward, body.label)])}


@router.post("/v1/feedback/batch", status_code=status.HTTP_202_ACCEPTED)
async def feedback_batch(
    body: BatchFeedbackBody, service: ServiceDep, settings: SettingsDep, _: ServeDep
) -> dict[str, int]:
    if not body.items:
        raise InvalidRequestError("items is empty; send at least one item.", code="empty_batch")
    if len(body.items) > settings.max_predict_batch_rows:
        msg = (
            f"items has {len(body.items)} entries; at most "
            f"{settings.max_predict_batch_rows} are accepted per request."
        )
        raise InvalidRequestError(msg, code="batch_too_large")
    items = [(i.request_id, i.reward, i.label) for i in body.items]
    return {"accepted": service.feedback(items)}
