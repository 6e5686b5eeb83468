"""A Python client of the banditlake REST API, blocking (:class:`Client`) or asyncio
(:class:`AsyncClient`), with the same methods.

::

    from api.client import Client

    with Client("http://127.0.0.1:8000", admin_token=..., serve_token=...) as bl:
        bl.create_experiment("churn", reward="binary", policy="thompson")
        bl.upload_variant("churn", "gbm", "gbm.onnx", features=["age", "tenure", "spend"])
        bl.start("churn")
        p = bl.predict("churn", {"age": 41, "tenure": 3, "spend": 120.5}, unit_id="u-17")
        bl.feedback(p.request_id, reward=1)

The policy API's results are the service's own pydantic models (:class:`ExperimentOut`,
:class:`VariantOut`, :class:`AllocationOut`, :class:`Report`); the serving API's are the
frozen dataclasses :class:`Prediction`, :class:`FailedPrediction`, :class:`FeedbackAck`
and :class:`FeedbackBatchAck`. A refusal raises an :class:`APIError` subclass carrying the
status and the envelope's ``code``, ``message`` and ``details``; the hierarchy is drawn
in ``api/client/_errors.py``.
"""

from api.client._async import AsyncClient
from api.client._errors import (
    APIError,
    BadRequestError,
    BanditlakeError,
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    TransportError,
    UnauthorizedError,
    UnavailableError,
    UnexpectedResponseError,
)
from api.client._models import (
    FailedPrediction,
    Feedback,
    FeedbackAck,
    FeedbackBatchAck,
    Prediction,
    RowError,
)
from api.client._sync import Client
from api.readout.report import Report
from api.schemas import (
    AllocationOut,
    ExperimentOut,
    Guardrails,
    PolicySpec,
    RewardSpec,
    Stopping,
    VariantOut,
)

__all__ = [
    "APIError",
    "AllocationOut",
    "AsyncClient",
    "BadRequestError",
    "BanditlakeError",
    "Client",
    "ConflictError",
    "ExperimentOut",
    "FailedPrediction",
    "Feedback",
    "FeedbackAck",
    "FeedbackBatchAck",
    "ForbiddenError",
    "Guardrails",
    "InvalidRequestError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PolicySpec",
    "Prediction",
    "Report",
    "RewardSpec",
    "RowError",
    "Stopping",
    "TransportError",
    "UnauthorizedError",
    "UnavailableError",
    "UnexpectedResponseError",
    "VariantOut",
]
