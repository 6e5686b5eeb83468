"""The error responses routes document: every status carries the one envelope, ``ErrorOut``.

Declaring a 422 here also keeps FastAPI from documenting its own ``HTTPValidationError``
shape, which this service never sends (:mod:`api.errors` answers validation failures with
the envelope too).
"""

from __future__ import annotations

from typing import Any, Final

from api.schemas import ErrorOut

__all__ = ["ADMIN_ERRORS", "error_responses"]

_MEANING: Final = {
    400: "The body could not be parsed at all (bytes that are not UTF-8, broken multipart).",
    401: "No bearer token, or a token that is not valid.",
    403: "A token of the wrong role, or a caller that is not on loopback while no token is set.",
    404: "The experiment or variant does not exist.",
    409: "The experiment's state forbids the operation, or the name is already taken.",
    413: "The request body, the upload or the batch is over its configured limit.",
    422: "The request is well-formed but a value in it is wrong.",
    503: "The store, the lake or a model cannot serve right now.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: the envelope under each of ``statuses``."""
    return {status: {"model": ErrorOut, "description": _MEANING[status]} for status in statuses}


# Every route of the policy API checks the admin token and reads the SQL store.
ADMIN_ERRORS: Final = error_responses(401, 403, 503)
