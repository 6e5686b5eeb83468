"""Each API call as data: what to send, which status answers it, how to read the answer.

The sync and async clients only send a :class:`Call` and hand the response to
:func:`finish`, so the two cannot drift apart on paths, bodies or parsing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError

from api.client._errors import UnexpectedResponseError, api_error
from api.client._models import (
    FailedPrediction,
    Feedback,
    FeedbackAck,
    FeedbackBatchAck,
    Prediction,
)
from api.readout.report import Report
from api.schemas import (
    AllocationOut,
    ExperimentOut,
    ExperimentStatus,
    Guardrails,
    PolicyKind,
    PolicySpec,
    RewardKind,
    RewardSpec,
    Stopping,
    VariantOut,
)

__all__ = ["Call", "Features", "ModelSource", "Role", "finish"]

Role = Literal["admin", "serve", "metrics"]
Features = Sequence[float] | Mapping[str, float]
ModelSource = bytes | str | os.PathLike[str]
T = TypeVar("T")

_EXPERIMENT = TypeAdapter(ExperimentOut)
_EXPERIMENTS = TypeAdapter(list[ExperimentOut])
_VARIANT = TypeAdapter(VariantOut)
_VARIANTS = TypeAdapter(list[VariantOut])
_ALLOCATION = TypeAdapter(AllocationOut)
_ALLOCATIONS = TypeAdapter(list[AllocationOut])
_REPORT = TypeAdapter(Report)
_PREDICTION = TypeAdapter(Prediction)
_FAILED = TypeAdapter(FailedPrediction)
_ACK = TypeAdapter(FeedbackAck)
_BATCH_ACK = TypeAdapter(FeedbackBatchAck)


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request, the status that means success, and the reader of a successful body."""

    method: str
    path: str
    role: Role | None
    read: Callable[[Any], T]
    expect: int = 200
    json: Any = None
    data: Mapping[str, str] | None = None
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    params: Mapping[str, int] | None = None
    # Bodies that are not JSON (Prometheus' text) are read from the response's text.
    text: bool = field(default=False)


def finish(call: Call[T], response: httpx.Response) -> T:
    """The typed result of ``call``, or the API's error as an exception."""
    status = response.status_code
    if status != call.expect:
        if 200 <= status < 300:
            msg = f"{call.method} {call.path} answered {status}; the API documents {call.expect}."
            raise UnexpectedResponseError(msg, status=status)
        raise _error(call, response)
    try:
        return call.read(response.text if call.text else response.json())
    except (ValidationError, ValueError, KeyError, TypeError) as exc:
        msg = (
            f"The answer to {call.method} {call.path} does not have the documented shape "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})."
        )
        raise UnexpectedResponseError(msg, status=status) from exc


def _error(call: Call[Any], response: httpx.Response) -> Exception:
    status = response.status_code
    try:
        error = response.json()["error"]
        return api_error(status, str(error["code"]), str(error["message"]), error.get("details"))
    except (ValueError, KeyError, TypeError, AttributeError):
        # Not the service's envelope: a proxy or load balancer answered. The status still
        # says what kind of failure it is (a 502 is as retryable as the service's 503).
        text = response.text.strip()[:200] or response.reason_phrase
        msg = f"{call.method} {call.path} answered {status} without the API's error body: {text}"
        return api_error(status, f"http_{status}", msg)


def _segment(value: str) -> str:
    return quote(value, safe="")


def _experiment_path(name: str, suffix: str = "") -> str:
    return f"/v1/experiments/{_segment(name)}{suffix}"


def _given(**values: Any) -> dict[str, Any]:
    """The options the caller set; the service's own defaults apply to the rest."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, RewardSpec | PolicySpec | Guardrails | Stopping):
            value = value.model_dump(mode="json", exclude_none=True)
        out[key] = value
    return out


def _features(features: Features) -> list[float] | dict[str, float]:
    # float() also turns numpy scalars into numbers the JSON encoder accepts.
    if isinstance(features, Mapping):
        return {str(k): float(v) for k, v in features.items()}
    return [float(v) for v in features]


def _model_bytes(model: ModelSource) -> tuple[str, bytes]:
    if isinstance(model, bytes):
        return "model.onnx", model
    path = Path(model)
    try:
        return path.name, path.read_bytes()
    except OSError as exc:
        msg = f"Cannot read the model file {str(path)!r}: {exc.strerror or exc}."
        raise FileNotFoundError(msg) from exc


def _prediction_row(row: Any) -> Prediction | FailedPrediction:
    if isinstance(row, dict) and row.get("error") is not None:
        return _FAILED.validate_python(row)
    return _PREDICTION.validate_python(row)


# -- policy API -----------------------------------------------------------------------


def create_experiment(
    name: str,
    *,
    reward: RewardKind | RewardSpec,
    policy: PolicyKind | PolicySpec | None = None,
    description: str | None = None,
    sticky: bool | None = None,
    min_weight: float | None = None,
    reallocate_every_s: int | None = None,
    guardrails: Guardrails | None = None,
    stopping: Stopping | None = None,
) -> Call[ExperimentOut]:
    body = _given(
        name=name,
        description=description,
        reward={"kind": reward} if isinstance(reward, str) else reward,
        policy={"kind": policy} if isinstance(policy, str) else policy,
        sticky=sticky,
        min_weight=min_weight,
        reallocate_every_s=reallocate_every_s,
        guardrails=guardrails,
        stopping=stopping,
    )
    return Call(
        "POST", "/v1/experiments", "admin", _EXPERIMENT.validate_python, expect=201, json=body
    )


def get_experiment(name: str) -> Call[ExperimentOut]:
    return Call("GET", _experiment_path(name), "admin", _EXPERIMENT.validate_python)


def list_experiments() -> Call[list[ExperimentOut]]:
    return Call("GET", "/v1/experiments", "admin", _EXPERIMENTS.validate_python)


def update_experiment(
    name: str,
    *,
    status: ExperimentStatus | None = None,
    description: str | None = None,
    policy: PolicyKind | PolicySpec | None = None,
    min_weight: float | None = None,
    reallocate_every_s: int | None = None,
    guardrails: Guardrails | None = None,
    stopping: Stopping | None = None,
) -> Call[ExperimentOut]:
    body = _given(
        status=status,
        description=description,
        policy={"kind": policy} if isinstance(policy, str) else policy,
        min_weight=min_weight,
        reallocate_every_s=reallocate_every_s,
        guardrails=guardrails,
        stopping=stopping,
    )
    return Call("PATCH", _experiment_path(name), "admin", _EXPERIMENT.validate_python, json=body)


def upload_variant(
    experiment: str,
    name: str,
    model: ModelSource,
    *,
    role: Literal["arm", "shadow"] | None = None,
    features: Sequence[str] | None = None,
    output: str | None = None,
) -> Call[VariantOut]:
    filename, content = _model_bytes(model)
    data = {"name": name}
    if role is not None:
        data["role"] = role
    if features is not None:
        data["features"] = json.dumps(list(features))
    if output is not None:
        data["output"] = output
    return Call(
        "POST",
        _experiment_path(experiment, "/variants"),
        "admin",
        _VARIANT.validate_python,
        expect=201,
        data=data,
        files={"model": (filename, content, "application/octet-stream")},
    )


def list_variants(experiment: str) -> Call[list[VariantOut]]:
    return Call(
        "GET", _experiment_path(experiment, "/variants"), "admin", _VARIANTS.validate_python
    )


def get_variant(experiment: str, variant: str) -> Call[VariantOut]:
    path = _experiment_path(experiment, f"/variants/{_segment(variant)}")
    return Call("GET", path, "admin", _VARIANT.validate_python)


def set_variant_active(experiment: str, variant: str, *, active: bool) -> Call[VariantOut]:
    path = _experiment_path(experiment, f"/variants/{_segment(variant)}")
    body = {"status": "active" if active else "disabled"}
    return Call("PATCH", path, "admin", _VARIANT.validate_python, json=body)


def get_allocation(experiment: str) -> Call[AllocationOut]:
    path = _experiment_path(experiment, "/allocation")
    return Call("GET", path, "admin", _ALLOCATION.validate_python)


def set_allocation(
    experiment: str, weights: Mapping[str, float], *, reason: str | None = None
) -> Call[AllocationOut]:
    body = _given(weights={str(k): float(v) for k, v in weights.items()}, reason=reason)
    path = _experiment_path(experiment, "/allocation")
    return Call("PUT", path, "admin", _ALLOCATION.validate_python, json=body)


def list_allocations(experiment: str, *, limit: int | None = None) -> Call[list[AllocationOut]]:
    path = _experiment_path(experiment, "/allocations")
    params = None if limit is None else {"limit": limit}
    return Call("GET", path, "admin", _ALLOCATIONS.validate_python, params=params)


def reallocate(experiment: str) -> Call[AllocationOut]:
    path = _experiment_path(experiment, "/reallocate")
    return Call("POST", path, "admin", _ALLOCATION.validate_python)


def promote(experiment: str, variant: str) -> Call[AllocationOut]:
    path = _experiment_path(experiment, "/promote")
    return Call("POST", path, "admin", _ALLOCATION.validate_python, json={"variant": variant})


def rollback(experiment: str) -> Call[AllocationOut]:
    path = _experiment_path(experiment, "/rollback")
    return Call("POST", path, "admin", _ALLOCATION.validate_python)


def report(experiment: str) -> Call[Report]:
    return Call("GET", _experiment_path(experiment, "/report"), "admin", _REPORT.validate_python)


# -- serving API ----------------------------------------------------------------------


def predict(experiment: str, features: Features, *, unit_id: str | None = None) -> Call[Prediction]:
    body = _given(features=_features(features), unit_id=unit_id)
    path = _experiment_path(experiment, "/predict")
    return Call("POST", path, "serve", _PREDICTION.validate_python, json=body)


def predict_batch(
    experiment: str, rows: Sequence[Features], *, unit_ids: Sequence[str | None] | None = None
) -> Call[list[Prediction | FailedPrediction]]:
    if unit_ids is not None and len(unit_ids) != len(rows):
        msg = f"unit_ids has {len(unit_ids)} entries for {len(rows)} rows; give one per row."
        raise ValueError(msg)
    ids = unit_ids if unit_ids is not None else [None] * len(rows)
    body = {
        "rows": [_given(features=_features(f), unit_id=u) for f, u in zip(rows, ids, strict=True)]
    }

    def read(answer: Any) -> list[Prediction | FailedPrediction]:
        return [_prediction_row(row) for row in answer["results"]]

    path = _experiment_path(experiment, "/predict/batch")
    return Call("POST", path, "serve", read, json=body)


def feedback(
    request_id: str, *, reward: float | None = None, label: float | str | None = None
) -> Call[FeedbackAck]:
    body = _given(request_id=request_id, reward=reward, label=label)
    return Call("POST", "/v1/feedback", "serve", _ACK.validate_python, expect=202, json=body)


def feedback_batch(items: Sequence[Feedback]) -> Call[FeedbackBatchAck]:
    body = {
        "items": [_given(request_id=i.request_id, reward=i.reward, label=i.label) for i in items]
    }
    return Call(
        "POST", "/v1/feedback/batch", "serve", _BATCH_ACK.validate_python, expect=202, json=body
    )


# -- operations -----------------------------------------------------------------------


def _text(answer: Any) -> str:
    return str(answer)


def metrics() -> Call[str]:
    return Call("GET", "/metrics", "metrics", _text, text=True)
