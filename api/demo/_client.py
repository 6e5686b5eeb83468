"""The demo's calls to the service, through the public :mod:`api.client` over real HTTP.

This adds only what the demo needs beyond the client: the tokens taken from the settings,
a missing experiment as ``None``, the allocation history oldest first, feedback sent in
chunks, and waiting for the lake writers (read from ``/metrics``). Every failure becomes
a :class:`DemoError` naming the call and the service's own message, so the command ends
with one sentence rather than a traceback.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TypeVar

from pydantic import SecretStr

from api.client import (
    APIError,
    BanditlakeError,
    Client,
    FailedPrediction,
    Feedback,
    NotFoundError,
    Prediction,
    TransportError,
)
from api.demo.errors import DemoError
from api.readout.report import Report
from api.schemas import (
    AllocationOut,
    ExperimentCreate,
    ExperimentOut,
    ExperimentStatus,
    PredictOut,
    VariantOut,
)
from api.settings import Settings

__all__ = ["ServiceClient"]

T = TypeVar("T")

_QUEUE_DEPTH = re.compile(
    r'^banditlake_lake_queue_depth\{table="(?P<table>\w+)"\} (?P<value>\S+)$', re.MULTILINE
)
# Feedback items per request, well under the service's batch limit.
_FEEDBACK_CHUNK = 500


def _secret(token: SecretStr | None) -> str | None:
    return None if token is None else token.get_secret_value()


def _sentence(text: str) -> str:
    return text.strip().rstrip(".") + "."


def _predict_out(result: Prediction | FailedPrediction) -> PredictOut:
    if isinstance(result, FailedPrediction):
        msg = (
            f"Variant {result.variant!r} could not answer a replayed digit "
            f"({result.error.code}: {result.error.message})"
        )
        raise DemoError(_sentence(msg))
    return PredictOut(
        request_id=result.request_id,
        variant=result.variant,
        prediction=result.prediction,
        scores=None if result.scores is None else list(result.scores),
        propensity=result.propensity,
        allocation_version=result.allocation_version,
    )


class ServiceClient:
    """A client of one running service, with the tokens from the settings."""

    def __init__(self, base_url: str, settings: Settings, *, timeout_s: float = 60.0) -> None:
        # trust_env off: a proxy from the environment must not see loopback traffic.
        self._client = Client(
            base_url,
            admin_token=_secret(settings.admin_token),
            serve_token=_secret(settings.serve_token),
            metrics_token=_secret(settings.metrics_token),
            timeout=timeout_s,
            trust_env=False,
        )

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._client.close()

    @property
    def base_url(self) -> str:
        return self._client.base_url

    def _call(self, what: str, send: Callable[[], T]) -> T:
        try:
            return send()
        except TransportError as exc:
            msg = f"The demo lost its connection to the service at {self.base_url} during {what}"
            raise DemoError(_sentence(f"{msg} ({exc})")) from exc
        except APIError as exc:
            msg = f"The service answered {exc.status} to {what}: {exc.message}"
            raise DemoError(_sentence(msg)) from exc
        except BanditlakeError as exc:
            raise DemoError(_sentence(str(exc))) from exc

    # -- operations --------------------------------------------------------------------

    def check_health(self) -> None:
        # Any answer of the API proves the service is up and the tokens fit.
        self._call("GET /v1/experiments", self._client.list_experiments)

    def lake_pending(self) -> dict[str, float]:
        """Rows each lake writer has accepted and not yet written, from ``/metrics``."""
        text = self._call("GET /metrics", self._client.metrics)
        return {m["table"]: float(m["value"]) for m in _QUEUE_DEPTH.finditer(text)}

    def wait_for_lake(self, *, timeout_s: float = 30.0) -> None:
        """Block until every prediction and feedback row sent so far is in the lake.

        The reallocator reads the lake, so feedback still in the writer's buffer would not
        count yet.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            pending = self.lake_pending()
            if {"predictions", "feedback"} <= pending.keys() and not any(pending.values()):
                return
            if time.monotonic() > deadline:
                msg = (
                    f"The lake writers still held rows after {timeout_s:g} s ({pending}); "
                    "check that the lake directory is writable."
                )
                raise DemoError(msg)
            time.sleep(0.05)

    # -- policy API --------------------------------------------------------------------

    def experiment(self, name: str) -> ExperimentOut | None:
        def get() -> ExperimentOut | None:
            try:
                return self._client.get_experiment(name)
            except NotFoundError:
                return None

        return self._call(f"GET /v1/experiments/{name}", get)

    def create_experiment(self, body: ExperimentCreate) -> ExperimentOut:
        return self._call(
            "POST /v1/experiments",
            lambda: self._client.create_experiment(
                body.name,
                reward=body.reward,
                policy=body.policy,
                description=body.description,
                sticky=body.sticky,
                min_weight=body.min_weight,
                reallocate_every_s=body.reallocate_every_s,
                guardrails=body.guardrails,
                stopping=body.stopping,
            ),
        )

    def set_status(self, name: str, status: ExperimentStatus) -> ExperimentOut:
        return self._call(
            f"PATCH /v1/experiments/{name}",
            lambda: self._client.update_experiment(name, status=status),
        )

    def variants(self, name: str) -> list[VariantOut]:
        return self._call(
            f"GET /v1/experiments/{name}/variants", lambda: self._client.list_variants(name)
        )

    def upload_variant(
        self, name: str, variant: str, model: bytes, *, features: Sequence[str], output: str
    ) -> VariantOut:
        return self._call(
            f"POST /v1/experiments/{name}/variants",
            lambda: self._client.upload_variant(
                name, variant, model, role="arm", features=features, output=output
            ),
        )

    def reallocate(self, name: str) -> AllocationOut:
        return self._call(
            f"POST /v1/experiments/{name}/reallocate", lambda: self._client.reallocate(name)
        )

    def allocations(self, name: str) -> list[AllocationOut]:
        """The allocation history, oldest first (the API lists it newest first)."""
        rows = self._call(
            f"GET /v1/experiments/{name}/allocations",
            lambda: self._client.list_allocations(name),
        )
        return sorted(rows, key=lambda row: row.version)

    def report(self, name: str) -> Report:
        return self._call(f"GET /v1/experiments/{name}/report", lambda: self._client.report(name))

    # -- serving API -------------------------------------------------------------------

    def predict_batch(self, name: str, rows: Sequence[Sequence[float]]) -> list[PredictOut]:
        results = self._call(
            f"POST /v1/experiments/{name}/predict/batch",
            lambda: self._client.predict_batch(name, rows),
        )
        return [_predict_out(result) for result in results]

    def send_labels(self, labels: Sequence[tuple[str, int]]) -> None:
        """Label feedback: the true class of each request, scored against its prediction."""
        items = [Feedback(request_id, label=label) for request_id, label in labels]
        for start in range(0, len(items), _FEEDBACK_CHUNK):
            self._send_feedback(items[start : start + _FEEDBACK_CHUNK])

    def _send_feedback(self, chunk: Sequence[Feedback]) -> None:
        self._call("POST /v1/feedback/batch", lambda: self._client.feedback_batch(chunk))
