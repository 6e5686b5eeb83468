"""Bearer-token roles: ``admin`` for the policy API, ``serve`` for predict and feedback,
``metrics`` for ``/metrics`` and detailed health. The admin token opens every role."""

from __future__ import annotations

import functools
import hmac
import ipaddress
from typing import Literal

from fastapi import Request
from pydantic import SecretStr

from api.errors import ForbiddenError, UnauthorizedError
from api.settings import Settings

__all__ = ["Role", "authorize", "is_loopback"]

Role = Literal["admin", "serve", "metrics"]

_REACH: dict[Role, str] = {
    "admin": "call the policy API",
    "serve": "call predict or feedback",
    "metrics": "read metrics or detailed health",
}


@functools.lru_cache(maxsize=1024)
def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host in ("localhost", "testclient"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        msg = 'The Authorization header must be "Bearer <token>".'
        raise UnauthorizedError(msg, code="invalid_token")
    return token.strip()


def _matches(token: str, secret: object) -> bool:
    value = getattr(secret, "get_secret_value", None)
    return value is not None and hmac.compare_digest(token.encode(), value().encode())


def _wanted(settings: Settings, role: Role) -> SecretStr | None:
    if role == "admin":
        return settings.admin_token
    if role == "serve":
        return settings.serve_token or settings.admin_token
    return settings.metrics_token or settings.admin_token


def authorize(request: Request, settings: Settings, role: Role) -> str:
    """Return the caller's role name, or raise 401/403.

    The admin token also opens the serving and metrics endpoints. With no token
    configured for a role, only loopback callers are let in (the CLI refuses other bind
    addresses then).
    """
    if _wanted(settings, role) is None:
        client_addr = request.scope.get("client")
        client = client_addr[0] if client_addr else None
        if not is_loopback(client):
            msg = (
                f"No {role} token is configured, so only loopback callers are served; set "
                f"BANDITLAKE_{role.upper()}_TOKEN to open this endpoint to {client}."
            )
            raise ForbiddenError(msg, code="loopback_only")
        return "loopback"
    token = _bearer(request)
    if token is None:
        msg = f"This endpoint needs the {role} bearer token in the Authorization header."
        raise UnauthorizedError(msg, code="missing_token")
    if _matches(token, settings.admin_token):
        return "admin"
    others: tuple[tuple[Role, SecretStr | None], ...] = (
        ("serve", settings.serve_token),
        ("metrics", settings.metrics_token),
    )
    held = next((name for name, secret in others if _matches(token, secret)), None)
    if held is None:
        raise UnauthorizedError("The bearer token is not valid.", code="invalid_token")
    if held == role:
        return held
    use = "admin" if role == "admin" else f"{role} or the admin"
    msg = f"The {held} token cannot {_REACH[role]}; use the {use} token."
    raise ForbiddenError(msg, code="wrong_role")
