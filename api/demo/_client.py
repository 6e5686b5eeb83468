"""The demo's calls to the service, over real HTTP, with typed answers.

Every failure becomes a :class:`DemoError` naming the call and the service's own message,
so the command ends with one sentence rather than a traceback.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx
from pydantic import SecretStr, TypeAdapter, ValidationError

from api.demo.errors import DemoError
from api.report import Report
from api.schemas import AllocationOut, ExperimentCreate, ExperimentOut, PredictOut, VariantOut
from api.settings import Settings

__all__ = ["ServiceClient"]

Role = Literal["admin", "serve", "metrics"]
T = TypeVar("T")

_QUEUE_DEPTH = re.compile(
    r'^banditlake_lake_queue_depth\{table="(?P<table>\w+)"\} (?P<value>\S+)$', re.MULTILINE
)
_EXPERIMENT = TypeAdapter(ExperimentOut)
_ALLOCATION = TypeAdapter(AllocationOut)
_ALLOCATIONS = TypeAdapter(list[AllocationOut])
_VARIANT = TypeAdapter(VariantOut)
_VARIANTS = TypeAdapter(list[VariantOut])
_REPORT = TypeAdapter(Report)
_PREDICTIONS = TypeAdapter(list[PredictOut])
# Feedback items per request, well under the service's batch limit.
_FEEDBACK_CHUNK = 500


def _bearer(token: SecretStr | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token.get_secret_value()}"}


def _sentence(text: str) -> str:
    return text.strip().rstrip(".") + "."


def _refusal(method: str, path: str, response: httpx.Response) -> str:
    try:
        message = str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = response.text[:200] or response.reason_phrase
    return _sentence(f"The service answered {response.status_code} to {method} {path}: {message}")


class ServiceClient:
    """A client of one running service, with the tokens from the settings."""

    def __init__(self, base_url: str, settings: Settings, *, timeout_s: float = 60.0) -> None:
        # trust_env off: a proxy from the environment must not see loopback traffic.
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, trust_env=False)
        self._headers: dict[Role, dict[str, str]] = {
            "admin": _bearer(settings.admin_token),
            "serve": _bearer(settings.serve_token or settings.admin_token),
            "metrics": _bearer(settings.metrics_token or settings.admin_token),
        }

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._http.close()

    @property
    def base_url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    def _send(
        self,
        method: str,
        path: str,
        *,
        role: Role | None,
        expect: tuple[int, ...] = (200,),
        **kwargs: Any,
    ) -> httpx.Response:
        headers = self._headers[role] if role is not None else {}
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            msg = (
                f"The demo lost its connection to the service at {self.base_url} during "
                f"{method} {path} ({type(exc).__name__}: {exc})."
            )
            raise DemoError(msg) from exc
        if response.status_code not in expect:
            raise DemoError(_refusal(method, path, response))
        return response

    def _parse(self, adapter: TypeAdapter[T], response: httpx.Response, *, key: str = "") -> T:
        try:
            if not key:
                return adapter.validate_json(response.content)
            return adapter.validate_python(response.json()[key])
        except (ValidationError, ValueError, KeyError, TypeError) as exc:
            msg = (
                f"The service's answer to {response.request.method} {response.request.url.path} "
                f"does not have the expected shape ({type(exc).__name__})."
            )
            raise DemoError(msg) from exc

    # -- operations --------------------------------------------------------------------

    def check_health(self) -> None:
        self._send("GET", "/healthz", role=None)

    def lake_pending(self) -> dict[str, float]:
        """Rows each lake writer has accepted and not yet written, from ``/metrics``."""
        text = self._send("GET", "/metrics", role="metrics").text
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
        response = self._send("GET", f"/v1/experiments/{name}", role="admin", expect=(200, 404))
        if response.status_code == 404:
            return None
        return self._parse(_EXPERIMENT, response)

    def create_experiment(self, body: ExperimentCreate) -> ExperimentOut:
        response = self._send(
            "POST",
            "/v1/experiments",
            role="admin",
            expect=(201,),
            json=body.model_dump(mode="json"),
        )
        return self._parse(_EXPERIMENT, response)

    def set_status(self, name: str, status: str) -> ExperimentOut:
        response = self._send(
            "PATCH", f"/v1/experiments/{name}", role="admin", json={"status": status}
        )
        return self._parse(_EXPERIMENT, response)

    def variants(self, name: str) -> list[VariantOut]:
        response = self._send("GET", f"/v1/experiments/{name}/variants", role="admin")
        return self._parse(_VARIANTS, response)

    def upload_variant(
        self, name: str, variant: str, model: bytes, *, features: Sequence[str], output: str
    ) -> VariantOut:
        response = self._send(
            "POST",
            f"/v1/experiments/{name}/variants",
            role="admin",
            expect=(201,),
            data={
                "name": variant,
                "role": "arm",
                "features": json.dumps(list(features)),
                "output": output,
            },
            files={"model": (f"{variant}.onnx", model, "application/octet-stream")},
        )
        return self._parse(_VARIANT, response)

    def reallocate(self, name: str) -> AllocationOut:
        response = self._send("POST", f"/v1/experiments/{name}/reallocate", role="admin")
        return self._parse(_ALLOCATION, response)

    def allocations(self, name: str) -> list[AllocationOut]:
        """The allocation history, oldest first (the API lists it newest first)."""
        response = self._send("GET", f"/v1/experiments/{name}/allocations", role="admin")
        rows = self._parse(_ALLOCATIONS, response)
        return sorted(rows, key=lambda row: row.version)

    def report(self, name: str) -> Report:
        response = self._send("GET", f"/v1/experiments/{name}/report", role="admin")
        return self._parse(_REPORT, response)

    # -- serving API -------------------------------------------------------------------

    def predict_batch(self, name: str, rows: Sequence[Sequence[float]]) -> list[PredictOut]:
        body = {"rows": [{"features": list(row)} for row in rows]}
        response = self._send(
            "POST", f"/v1/experiments/{name}/predict/batch", role="serve", json=body
        )
        return self._parse(_PREDICTIONS, response, key="results")

    def send_labels(self, labels: Sequence[tuple[str, int]]) -> None:
        """Label feedback: the true class of each request, scored against its prediction."""
        items = [{"request_id": request_id, "label": label} for request_id, label in labels]
        for start in range(0, len(items), _FEEDBACK_CHUNK):
            chunk = items[start : start + _FEEDBACK_CHUNK]
            self._send(
                "POST", "/v1/feedback/batch", role="serve", expect=(202,), json={"items": chunk}
            )
