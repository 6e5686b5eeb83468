"""Service errors and their one mapping to HTTP.

Hierarchy::

    ServiceError                  root of every error the service raises on purpose
    ├── NotFoundError             404 an experiment, variant or allocation that does not exist
    ├── ConflictError             409 a duplicate name, an invalid status transition, a state
    │                                 that forbids the operation (experiment not running)
    ├── InvalidRequestError       422 a value that is well-formed JSON but wrong
    ├── PayloadTooLargeError      413 a body or an upload over its byte limit (a batch with
    │                                 too many rows is an InvalidRequestError, 422
    │                                 ``batch_too_large``: the bytes were acceptable)
    ├── UnauthorizedError         401 no token or an unknown token
    ├── ForbiddenError            403 a valid token of the wrong role, or a non-loopback caller
    └── UnavailableError          503 the store, the lake or a model cannot serve right now

Errors of the other layers are mapped here too, so no route catches them:

- :class:`bandit.errors.BanditError` → 422 ``invalid_request`` (invalid input to a policy);
- :class:`lake.errors.LakeConfigError` and :class:`lake.errors.RowConversionError` → 422
  ``invalid_request`` (an argument or rows the lake cannot take);
- any other :class:`lake.errors.LakeError` (``LakeWriteError``, ``LakeReadError``) → 503
  ``lake_unavailable``: the lake cannot be written or read now;
- a store outage → 503 ``store_unavailable``: SQLAlchemy's ``OperationalError`` and
  ``InterfaceError`` (server down, refusing connections, connection cut), its pool
  ``TimeoutError`` (every connection busy), and any DBAPI error that invalidated its
  connection. Other SQLAlchemy errors are defects and stay 500 ``internal_error``.

Routes and domain code raise these; only :func:`install_handlers` knows status codes.

The commands have their own root, for errors that reach a person at a terminal rather
than a client over HTTP::

    CommandError                  one sentence, printed by ``banditlake`` without a
    ├── DemoError                 traceback, exit status 2 (``api.cli.main``)
    └── ExampleModelError

A device that cannot start (``BANDITLAKE_DEVICE=cuda`` without a working CUDA) is an
:class:`UnavailableError`: :class:`api.serving.sessions.DeviceUnavailableError`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "CommandError",
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

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details
        # Seconds for a Retry-After header (load shedding).
        self.retry_after = retry_after


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


class CommandError(Exception):
    """A command cannot go on; the message says why in one sentence."""


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


_STORE_DOWN = "The SQL store cannot be reached right now; retry in a few seconds."
_LAKE_DOWN = "The lake cannot be read or written right now; retry in a few seconds."


def _is_store_outage(exc: SQLAlchemyError) -> bool:
    """Whether ``exc`` says the store is unreachable, as opposed to a defect in a query."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def install_handlers(app: FastAPI) -> None:
    from bandit.errors import BanditError
    from lake.errors import LakeConfigError, LakeError, RowConversionError

    @app.exception_handler(ServiceError)
    async def _service(_: Request, exc: ServiceError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        if exc.retry_after is not None:
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details), exc.status_code, headers=headers
        )

    @app.exception_handler(BanditError)
    async def _bandit(_: Request, exc: BanditError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", str(exc)), 422)

    @app.exception_handler(LakeError)
    async def _lake(request: Request, exc: LakeError) -> JSONResponse:
        if isinstance(exc, LakeConfigError | RowConversionError):
            return JSONResponse(error_body("invalid_request", str(exc)), 422)
        # The message names lake paths: it goes to the log, not to the caller.
        log.warning("the lake failed on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(error_body("lake_unavailable", _LAKE_DOWN), 503)

    @app.exception_handler(SQLAlchemyError)
    async def _store(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        if not _is_store_outage(exc):
            return await _unexpected(request, exc)
        # One line, not a traceback per request while the store is down; the message
        # names the server, so it is not sent to the caller.
        reason = str(exc.orig if isinstance(exc, DBAPIError) else exc).strip().splitlines()
        log.warning(
            "the SQL store is unavailable on %s %s: %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
            reason[0] if reason else "",
        )
        return JSONResponse(error_body("store_unavailable", _STORE_DOWN), 503)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = _describe_validation(list(exc.errors()))
        return JSONResponse(error_body("invalid_request", message, details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    app.add_exception_handler(Exception, _unexpected)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        error_body("internal_error", "The server failed to handle this request."), 500
    )
