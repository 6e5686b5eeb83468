"""The asyncio client: :class:`Client`'s methods, awaited."""

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

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient:
    """A client of one banditlake service; use it as a context manager to close it.

    ``admin_token`` opens the policy API (and the serving API), ``serve_token`` predict and
    feedback, ``metrics_token`` ``/metrics``. ``transport`` replaces the network, e.g.
    ``httpx.MockTransport`` or ``httpx.ASGITransport`` in tests.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        admin_token: str | None = None,
        serve_token: str | None = None,
        metrics_token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
        trust_env: bool = True,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, timeout=timeout, transport=transport, trust_env=trust_env
        )
        self._headers = headers_by_role(admin_token, serve_token, metrics_token)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def base_url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    async def _send(self, call: Call[T]) -> T:
        try:
            response = await self._http.request(
                call.method, call.path, **request_args(call, self._headers)
            )
        except httpx.TransportError as exc:
            raise transport_error(call, self._http.base_url, exc) from exc
        return calls.finish(call, response)

    # -- experiments -------------------------------------------------------------------

    async def create_experiment(
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
        return await self._send(
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

    async def get_experiment(self, name: str) -> ExperimentOut:
        return await self._send(calls.get_experiment(name))

    async def list_experiments(self) -> list[ExperimentOut]:
        return await self._send(calls.list_experiments())

    async def update_experiment(
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
        return await self._send(
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

    async def start(self, name: str) -> ExperimentOut:
        return await self.update_experiment(name, status="running")

    async def pause(self, name: str) -> ExperimentOut:
        return await self.update_experiment(name, status="paused")

    async def stop(self, name: str) -> ExperimentOut:
        return await self.update_experiment(name, status="stopped")

    # -- variants ----------------------------------------------------------------------

    async def upload_variant(
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
        return await self._send(
            calls.upload_variant(
                experiment, name, model, role=role, features=features, output=output
            )
        )

    async def list_variants(self, experiment: str) -> list[VariantOut]:
        return await self._send(calls.list_variants(experiment))

    async def get_variant(self, experiment: str, variant: str) -> VariantOut:
        return await self._send(calls.get_variant(experiment, variant))

    async def enable_variant(self, experiment: str, variant: str) -> VariantOut:
        return await self._send(calls.set_variant_active(experiment, variant, active=True))

    async def disable_variant(self, experiment: str, variant: str) -> VariantOut:
        return await self._send(calls.set_variant_active(experiment, variant, active=False))

    # -- allocation --------------------------------------------------------------------

    async def get_allocation(self, experiment: str) -> AllocationOut:
        return await self._send(calls.get_allocation(experiment))

    async def set_allocation(
        self, experiment: str, weights: Mapping[str, float], *, reason: str | None = None
    ) -> AllocationOut:
        return await self._send(calls.set_allocation(experiment, weights, reason=reason))

    async def list_allocations(
        self, experiment: str, *, limit: int | None = None
    ) -> list[AllocationOut]:
        """The allocation history, newest first."""
        return await self._send(calls.list_allocations(experiment, limit=limit))

    async def reallocate(self, experiment: str) -> AllocationOut:
        return await self._send(calls.reallocate(experiment))

    async def promote(self, experiment: str, variant: str) -> AllocationOut:
        return await self._send(calls.promote(experiment, variant))

    async def rollback(self, experiment: str) -> AllocationOut:
        return await self._send(calls.rollback(experiment))

    async def report(self, experiment: str) -> Report:
        return await self._send(calls.report(experiment))

    # -- serving -----------------------------------------------------------------------

    async def predict(
        self, experiment: str, features: Features, *, unit_id: str | None = None
    ) -> Prediction:
        return await self._send(calls.predict(experiment, features, unit_id=unit_id))

    async def predict_batch(
        self,
        experiment: str,
        rows: Sequence[Features],
        *,
        unit_ids: Sequence[str | None] | None = None,
    ) -> list[Prediction | FailedPrediction]:
        """One result per row, in order; a row the model could not answer fails alone."""
        return await self._send(calls.predict_batch(experiment, rows, unit_ids=unit_ids))

    async def feedback(
        self, request_id: str, *, reward: float | None = None, label: float | str | None = None
    ) -> FeedbackAck:
        return await self._send(calls.feedback(request_id, reward=reward, label=label))

    async def feedback_batch(self, items: Sequence[Feedback]) -> FeedbackBatchAck:
        return await self._send(calls.feedback_batch(items))

    # -- operations --------------------------------------------------------------------

    async def metrics(self) -> str:
        """``/metrics`` in Prometheus' text format."""
        return await self._send(calls.metrics())
