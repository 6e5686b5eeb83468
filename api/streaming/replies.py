"""The bodies a stream consumer answers with: the HTTP API's, byte for byte in shape.

A prediction is ``{"request_id", "variant", "prediction", "scores", "propensity",
"allocation_version"}`` as ``POST /v1/experiments/{name}/predict`` returns it; an error
is ``{"error": {"code", "message", "details"}}``; a feedback answer is ``{"accepted",
"duplicate"}``. The status the HTTP API would have given goes in the
``Banditlake-Status`` header of the reply.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from api.errors import ServiceError, error_body
from api.serving.predict import Prediction

__all__ = [
    "KEY_HEADER",
    "STATUS_HEADER",
    "encode",
    "error_reply",
    "prediction_reply",
    "row_reply",
]

STATUS_HEADER: Final = "Banditlake-Status"
KEY_HEADER: Final = "Banditlake-Request-Key"


def encode(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def prediction_reply(result: Prediction) -> bytes:
    return encode(
        {
            "request_id": result.request_id,
            "variant": result.variant,
            "prediction": result.prediction,
            "scores": None if result.scores is None else list(result.scores),
            "propensity": result.propensity,
            "allocation_version": result.allocation_version,
        }
    )


def error_reply(exc: ServiceError) -> bytes:
    return encode(error_body(exc.code, exc.message, exc.details))


def row_reply(
    *,
    request_id: str,
    experiment: str,
    variant: str,
    prediction: float | None,
    scores: Sequence[float] | None,
    propensity: float,
    allocation_version: int,
    status: str,
    error: str | None,
) -> tuple[bytes, int]:
    """The answer a logged lake row was given (read back after a restart), and its status."""
    if status == "ok":
        body = {
            "request_id": request_id,
            "variant": variant,
            "prediction": prediction,
            "scores": None if scores is None else list(scores),
            "propensity": propensity,
            "allocation_version": allocation_version,
        }
        return encode(body), 200
    details = {"request_id": request_id}
    if status == "rejected":
        msg = (
            f"Variant {variant!r} of {experiment!r} cannot make a prediction from these "
            f"features ({error}); it answers other inputs, so the input is refused."
        )
        return encode(error_body("input_rejected_by_model", msg, details)), 422
    msg = f"Variant {variant!r} of {experiment!r} failed to predict: {error}."
    return encode(error_body("model_error", msg, details)), 503
