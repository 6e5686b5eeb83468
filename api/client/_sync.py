"""The blocking client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Literal, TypeVar

import httpx

from api.client import _calls as calls
from api.client._base import (
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT_S,
    headers_by_role,
    request_args,
    transport_error,
)
from api.client._calls import Call, Features, ModelSource
from api.client._models import FailedPrediction, Feedback, FeedbackAck, FeedbackBatchAck, Prediction
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

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """A client of one banditlake service; use it as a context manager to close it.

    ``admin_token`` opens the policy API (and the serving API), ``serve_token`` predict and
    feedback, ``metrics_token`` ``/metrics``. ``transport`` replaces the network, e.g.
    ``httpx.MockTransport`` or ``httpx.WSGITransport`` in tests.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        admin_token: str | None = None,
        serve_token: str | None = None,
        metrics_token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
        trust_env: bool = True,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, timeout=timeout, transport=transport, trust_env=trust_env
        )
        self._headers = headers_by_role(admin_token, serve_token, metrics_token)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def base_url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    def _send(self, call: Call[T]) -> T:
        try:
            response = self._http.request(
                call.method, call.path, **request_args(call, self._headers)
            )
        except httpx.TransportError as exc:
            raise transport_error(call, self._http.base_url, exc) from exc
        return calls.finish(call, response)

    # -- experiments -------------------------------------------------------------------

    def create_experiment(
        self,
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
    ) -> ExperimentOut:
        """Create an experiment in ``draft``; an option left ``None`` gets the default."""
        return self._send(
            calls.create_experiment(
                name,
                reward=reward,
                policy=policy,
                description=description,
                sticky=sticky,
                min_weight=min_weight,
                reallocate_every_s=reallocate_every_s,
                guardrails=guardrails,
                stopping=stopping,
            )
        )

    def get_experiment(self, name: str) -> ExperimentOut:
        return self._send(calls.get_experiment(name))

    def list_experiments(self) -> list[ExperimentOut]:
        return self._send(calls.list_experiments())

    def update_experiment(
        self,
        name: str,
        *,
        status: ExperimentStatus | None = None,
        description: str | None = None,
        policy: PolicyKind | PolicySpec | None = None,
        min_weight: float | None = None,
        reallocate_every_s: int | None = None,
        guardrails: Guardrails | None = None,
        stopping: Stopping | None = None,
    ) -> ExperimentOut:
        """Change what is given; an invalid status transition raises ``ConflictError``."""
        return self._send(
            calls.update_experiment(
                name,
                status=status,
                description=description,
                policy=policy,
                min_weight=min_weight,
                reallocate_every_s=reallocate_every_s,
                guardrails=guardrails,
                stopping=stopping,
            )
        )

    def start(self, name: str) -> ExperimentOut:
        return self.update_experiment(name, status="running")

    def pause(self, name: str) -> ExperimentOut:
        return self.update_experiment(name, status="paused")

    def stop(self, name: str) -> ExperimentOut:
        return self.update_experiment(name, status="stopped")

    # -- variants ----------------------------------------------------------------------

    def upload_variant(
        self,
        experiment: str,
        name: str,
        model: ModelSource,
        *,
        role: Literal["arm", "shadow"] | None = None,
        features: Sequence[str] | None = None,
        output: str | None = None,
    ) -> VariantOut:
        """Upload an ONNX model (a path or its bytes) as variant ``name``."""
        return self._send(
            calls.upload_variant(
                experiment, name, model, role=role, features=features, output=output
            )
        )

    def list_variants(self, experiment: str) -> list[VariantOut]:
        return self._send(calls.list_variants(experiment))

    def get_variant(self, experiment: str, variant: str) -> VariantOut:
        return self._send(calls.get_variant(experiment, variant))

    def enable_variant(self, experiment: str, variant: str) -> VariantOut:
        return self._send(calls.set_variant_active(experiment, variant, active=True))

    def disable_variant(self, experiment: str, variant: str) -> VariantOut:
        return self._send(calls.set_variant_active(experiment, variant, active=False))

    # -- allocation --------------------------------------------------------------------

    def get_allocation(self, experiment: str) -> AllocationOut:
        return self._send(calls.get_allocation(experiment))

    def set_allocation(
        self, experiment: str, weights: Mapping[str, float], *, reason: str | None = None
    ) -> AllocationOut:
        return self._send(calls.set_allocation(experiment, weights, reason=reason))

    def list_allocations(self, experiment: str, *, limit: int | None = None) -> list[AllocationOut]:
        """The allocation history, newest first."""
        return self._send(calls.list_allocations(experiment, limit=limit))

    def reallocate(self, experiment: str) -> AllocationOut:
        return self._send(calls.reallocate(experiment))

    def promote(self, experiment: str, variant: str) -> AllocationOut:
        return self._send(calls.promote(experiment, variant))

    def rollback(self, experiment: str) -> AllocationOut:
        return self._send(calls.rollback(experiment))

    def report(self, experiment: str) -> Report:
        return self._send(calls.report(experiment))

    # -- serving -----------------------------------------------------------------------

    def predict(
        self, experiment: str, features: Features, *, unit_id: str | None = None
    ) -> Prediction:
        return self._send(calls.predict(experiment, features, unit_id=unit_id))

    def predict_batch(
        self,
        experiment: str,
        rows: Sequence[Features],
        *,
        unit_ids: Sequence[str | None] | None = None,
    ) -> list[Prediction | FailedPrediction]:
        """One result per row, in order; a row the model could not answer fails alone."""
        return self._send(calls.predict_batch(experiment, rows, unit_ids=unit_ids))

    def feedback(
        self, request_id: str, *, reward: float | None = None, label: float | str | None = None
    ) -> FeedbackAck:
        return self._send(calls.feedback(request_id, reward=reward, label=label))

    def feedback_batch(self, items: Sequence[Feedback]) -> FeedbackBatchAck:
        return self._send(calls.feedback_batch(items))

    # -- operations --------------------------------------------------------------------

    def metrics(self) -> str:
        """``/metrics`` in Prometheus' text format."""
        return self._send(calls.metrics())
