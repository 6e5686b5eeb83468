"""Serving API: predict (single and batch) and feedback (single and batch).

These routes are the per-request hot path, so they skip FastAPI's dependency and body
machinery (which costs more than the routing itself): they read the service from the
app state, check the token inline and validate the raw body with pydantic-core's JSON
parser. The OpenAPI schema still documents the bodies.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from api.auth import authorize
from api.routes import _examples as ex
from api.routes._responses import error_responses, example, ok
from api.schemas import BatchFeedbackBody, BatchPredictBody, FeedbackBody, PredictBody, PredictOut
from api.serving.rejections import count_non_finite
from api.serving.service import Prediction, ServingService

router = APIRouter(tags=["serving"], responses=error_responses(401, 403, 413, 422, 503))

Body = TypeVar("Body", bound=BaseModel)


def _predict_json(result: Prediction) -> bytes:
    """``PredictOut`` encoded by hand: the encoding is the hot path's largest fixed cost."""
    scores = result.scores
    return (
        f'{{"request_id":"{result.request_id}","variant":{json.dumps(result.variant)},'
        f'"prediction":{result.prediction!r},'
        f'"scores":{"null" if scores is None else json.dumps(scores)},'
        f'"propensity":{result.propensity!r},'
        f'"allocation_version":{result.allocation_version}}}'
    ).encode()


def _batch_result(result: Prediction) -> dict[str, Any]:
    """A batch row: ``PredictOut``'s fields, and the ``error`` of a row that failed."""
    row: dict[str, Any] = {
        "request_id": result.request_id,
        "variant": result.variant,
        "prediction": result.prediction,
        "scores": result.scores,
        "propensity": result.propensity,
        "allocation_version": result.allocation_version,
    }
    error = result.error
    if error is not None:
        row["error"] = {"code": error.code, "message": error.message, "status": error.status_code}
    return row


_NAME_PARAM = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The experiment's name.",
}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Replace every ``{"$ref": "#/$defs/X"}`` by X itself (these bodies are not recursive)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _doc(model: type[BaseModel], sample: Any, *, path_name: bool = False) -> dict[str, Any]:
    # Declared here rather than as typed parameters so FastAPI does no per-request
    # parameter solving on the hot path; the OpenAPI document stays complete. A schema's
    # ``$defs`` would not resolve from the document's root, so they are inlined.
    raw = model.model_json_schema()
    schema = {
        "application/json": {
            "schema": _inline(raw, raw.get("$defs", {})),
            "example": example(sample),
        }
    }
    doc: dict[str, Any] = {"requestBody": {"required": True, "content": schema}}
    if path_name:
        doc["parameters"] = [_NAME_PARAM]
    return doc


async def _prepare(
    request: Request, model: type[Body], experiment: str | None = None
) -> tuple[ServingService, Body]:
    service: ServingService = request.app.state.serving
    authorize(request, service.settings, "serve")
    try:
        body = model.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if experiment is not None:
            # Refused here, these values never reach the lake: counted for the dashboard.
            count_non_finite(service.metrics, service.runtime.experiments.get(experiment), errors)
        raise RequestValidationError(errors) from None
    return service, body


@router.post(
    "/v1/experiments/{name}/predict",
    response_model=PredictOut,
    summary="Predict with the variant the allocation picks",
    responses=ok(ex.PREDICTION) | error_responses(404, 409),
    openapi_extra=_doc(PredictBody, ex.PREDICT, path_name=True),
)
async def predict(request: Request) -> Response:
    """Pick an arm by the current allocation (sticky experiments hash `unit_id`), run its
    model on `features` (a list in the variants' feature order, or an object by name) and
    log the request to the lake. Keep `request_id` to send feedback. `prediction` and
    `scores` follow the model contract (see the variant upload); `propensity` is the
    probability this arm had of being picked."""
    name: str = request.path_params["name"]
    service, body = await _prepare(request, PredictBody, name)
    return Response(
        _predict_json(await service.predict(name, body.features, body.unit_id)),
        media_type="application/json",
    )


@router.post(
    "/v1/experiments/{name}/predict/batch",
    summary="Predict for several rows",
    responses=ok(ex.BATCH_PREDICTIONS) | error_responses(404, 409),
    openapi_extra=_doc(BatchPredictBody, ex.PREDICT_BATCH, path_name=True),
)
async def predict_batch(request: Request) -> JSONResponse:
    """Each row is a predict request of its own (its own arm, request id and lake row);
    the results come back in the same order. At most `BANDITLAKE_MAX_PREDICT_BATCH_ROWS`
    rows (422 `batch_too_large`)."""
    name: str = request.path_params["name"]
    service, body = await _prepare(request, BatchPredictBody, name)
    rows = [(row.features, row.unit_id) for row in body.rows]
    results = await service.predict_batch(name, rows)
    return JSONResponse({"results": [_batch_result(r) for r in results]})


@router.post(
    "/v1/feedback",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send the reward of a prediction",
    responses={
        202: {
            "description": "Stored, or recognised as a repeat and ignored.",
            "content": {
                "application/json": {
                    "examples": {
                        "accepted": {"value": example(ex.FEEDBACK_ACCEPTED)},
                        "duplicate": {"value": example(ex.FEEDBACK_DUPLICATE)},
                    }
                }
            },
        }
    },
    openapi_extra=_doc(FeedbackBody, ex.FEEDBACK),
)
async def feedback(request: Request) -> JSONResponse:
    """The outcome of one predict, by its `request_id`: `reward` (a number; 0 or 1 for a
    binary reward) or `label` (for a label reward, scored against the prediction). The
    first feedback for a request id counts; a repeat is answered `duplicate: true` and
    not stored. An id this deployment did not issue is refused (422)."""
    service, body = await _prepare(request, FeedbackBody)
    result = await service.feedback([(body.request_id, body.reward, body.label)])
    return JSONResponse(
        {"accepted": result.accepted, "duplicate": result.duplicates > 0}, status_code=202
    )


@router.post(
    "/v1/feedback/batch",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send several rewards",
    responses=ok(ex.FEEDBACK_BATCH_ACCEPTED, status=202),
    openapi_extra=_doc(BatchFeedbackBody, ex.FEEDBACK_BATCH),
)
async def feedback_batch(request: Request) -> JSONResponse:
    """Feedback items as `POST /v1/feedback` takes them, all or nothing: one bad item
    refuses the batch. The answer counts the accepted items and the repeats."""
    service, body = await _prepare(request, BatchFeedbackBody)
    items = [(i.request_id, i.reward, i.label) for i in body.items]
    result = await service.feedback_batch(items)
    return JSONResponse(
        {"accepted": result.accepted, "duplicates": result.duplicates}, status_code=202
    )
