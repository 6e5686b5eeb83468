"""Service errors and their one mapping to HTTP.

Hierarchy::

    ServiceError                  root of every error the service raises on purpose
    ├── NotFoundError             404 an experiment, variant or allocation that does not exist
    ├── ConflictError             409 a duplicate name, an invalid status transition, a state
    │                                 that forbids the operation (experiment not running)
    ├── InvalidRequestError       422 a value that is well-formed JSON but wrong
    ├── PayloadTooLargeError      413 an upload or a batch over its configured limit
    ├── UnauthorizedError         401 no token or an unknown token
    ├── ForbiddenError            403 a valid token of the wrong role, or a non-loopback caller
    └── UnavailableError          503 the store, the lake or a model cannot serve right now

Domain errors from ``bandit`` (:class:`bandit.errors.BanditError`, invalid input) map to 422.
Routes and domain code raise these; only :func:`install_handlers` knows status codes.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "ConflictError",
    "ForbiddenError",
    "InvalidRequestError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ServiceError",
    "UnauthorizedError",
    "UnavailableError",
    "error_body",
    "install_handlers",
]

log = logging.getLogger(__name__)


class ServiceError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class NotFoundError(ServiceError):
    status_code = 404
    code = "not_found"


class ConflictError(ServiceError):
    status_code = 409
    code = "conflict"


class InvalidRequestError(ServiceError):
    status_code = 422
    code = "invalid_request"


class PayloadTooLargeError(ServiceError):
    status_code = 413
    code = "payload_too_large"


class UnauthorizedError(ServiceError):
    status_code = 401
    code = "unauthorized"


class ForbiddenError(ServiceError):
    status_code = 403
    code = "forbidden"


class UnavailableError(ServiceError):
    status_code = 503
    code = "unavailable"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


_WRONG_BRANCH = frozenset({"dict_type", "list_type"})


def _field_name(loc: Any) -> str:
    """``("body", "features", "list[...]", 2)`` → ``features[2]``."""
    name = ""
    for part in loc:
        if part in ("body", "query", "path") or (isinstance(part, str) and "[" in part):
            continue
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or "body"


def _describe_validation(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    details = []
    sentences = []
    # A value that matches one branch of a union (a list of features) gets errors for the
    # other branch too ("should be a valid dictionary"); keep the branch the input chose.
    relevant = [e for e in errors if e.get("type") not in _WRONG_BRANCH] or errors
    for err in relevant:
        field = _field_name(err.get("loc", ()))
        msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        if "input" in err and err.get("type") not in ("missing", "json_invalid"):
            msg += f" (got {_short(err['input'])})"
        details.append({"field": field, "message": msg, "type": err.get("type")})
        sentences.append(f"{field}: {msg}")
    return "Invalid request: " + "; ".join(sentences) + ".", details


def install_handlers(app: FastAPI) -> None:
    from bandit.errors import BanditError

    @app.exception_handler(ServiceError)
    async def _service(_: Request, exc: ServiceError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details), exc.status_code, headers=headers
        )

    @app.exception_handler(BanditError)
    async def _bandit(_: Request, exc: BanditError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", str(exc)), 422)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = _describe_validation(list(exc.errors()))
        return JSONResponse(error_body("invalid_request", message, details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body("internal_error", "The server failed to handle this request."), 500
        )
