"""What a call to the service can raise.

Hierarchy::

    BanditlakeError               root of everything this client raises
    ├── TransportError            the service could not be reached, or the connection broke
    │                             or timed out before an answer (wraps ``httpx.TransportError``)
    ├── UnexpectedResponseError   an answer that is not the API's (a proxy's HTML page, a
    │                             body that does not have the documented shape)
    └── APIError                  the service answered with its error envelope
        ├── BadRequestError       400 a body that could not be parsed at all
        ├── UnauthorizedError     401 no token, or an unknown one
        ├── ForbiddenError        403 a token of the wrong role, or a caller off loopback
        ├── NotFoundError         404 no such experiment, variant or allocation
        ├── ConflictError         409 the experiment's state forbids it, or the name is taken
        ├── PayloadTooLargeError  413 a body or upload over the service's limit
        ├── InvalidRequestError   422 a well-formed request with a wrong value
        └── UnavailableError      503 (and any other 5xx) the store, lake or a model cannot serve

Every :class:`APIError` carries the answer's ``status`` and the envelope's ``code``,
``message`` and ``details``; ``code`` is the stable thing to branch on
(``experiment_not_found``, ``invalid_request_id``, ``batch_too_large``, ...).
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "APIError",
    "BadRequestError",
    "BanditlakeError",
    "ConflictError",
    "ForbiddenError",
    "InvalidRequestError",
    "NotFoundError",
    "PayloadTooLargeError",
    "TransportError",
    "UnauthorizedError",
    "UnavailableError",
    "UnexpectedResponseError",
    "api_error",
]


class BanditlakeError(Exception):
    """Root of every error the client raises."""


class TransportError(BanditlakeError):
    """The request got no answer: connection refused, broken, or timed out."""


class UnexpectedResponseError(BanditlakeError):
    """An answer that is not what the API documents for this call."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class APIError(BanditlakeError):
    """The service refused the request; ``code`` and ``message`` say why."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class BadRequestError(APIError):
    pass


class UnauthorizedError(APIError):
    pass


class ForbiddenError(APIError):
    pass


class NotFoundError(APIError):
    pass


class ConflictError(APIError):
    pass


class PayloadTooLargeError(APIError):
    pass


class InvalidRequestError(APIError):
    pass


class UnavailableError(APIError):
    pass


_BY_STATUS: Final[dict[int, type[APIError]]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: InvalidRequestError,
}


def api_error(status: int, code: str, message: str, details: Any = None) -> APIError:
    """The subclass of :class:`APIError` for ``status``."""
    cls = _BY_STATUS.get(status, UnavailableError if status >= 500 else APIError)
    return cls(status, code, message, details)
