"""What the sync and async clients share: tokens per role, and sending one call."""

from __future__ import annotations

from typing import Any, Final

import httpx

from api.client._calls import Call, Role
from api.client._errors import TransportError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT_S",
    "headers_by_role",
    "request_args",
    "transport_error",
]

DEFAULT_BASE_URL: Final = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S: Final = 30.0


def _bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def headers_by_role(
    admin_token: str | None, serve_token: str | None, metrics_token: str | None
) -> dict[Role, dict[str, str]]:
    # The service takes the admin token wherever the serve or metrics token is asked for.
    return {
        "admin": _bearer(admin_token),
        "serve": _bearer(serve_token or admin_token),
        "metrics": _bearer(metrics_token or admin_token),
    }


def request_args(call: Call[Any], headers: dict[Role, dict[str, str]]) -> dict[str, Any]:
    """Keyword arguments of ``httpx.Client.request`` for ``call``."""
    args: dict[str, Any] = {"headers": headers[call.role] if call.role is not None else {}}
    if call.json is not None:
        args["json"] = call.json
    if call.data is not None:
        args["data"] = dict(call.data)
    if call.files is not None:
        args["files"] = dict(call.files)
    if call.params is not None:
        args["params"] = dict(call.params)
    return args


def transport_error(
    call: Call[Any], base_url: httpx.URL, exc: httpx.TransportError
) -> TransportError:
    detail = str(exc) or type(exc).__name__
    what = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    msg = (
        f"{call.method} {call.path} to the banditlake service at {base_url} {what} before an "
        f"answer ({type(exc).__name__}: {detail})."
    )
    return TransportError(msg)
