"""The responses routes document: every error status carries the one envelope, ``ErrorOut``.

Declaring a 422 here also keeps FastAPI from documenting its own ``HTTPValidationError``
shape, which this service never sends (:mod:`api.errors` answers validation failures with
the envelope too). Each status comes with examples of real answers, so the API docs show
what a client has to handle; :func:`ok` and :func:`body_example` attach the examples of
a route's success answer and request body.
"""

from __future__ import annotations

from typing import Any, Final

from api.schemas import ErrorOut

__all__ = ["ADMIN_ERRORS", "NULL_MARK", "body_example", "error_responses", "example", "ok"]

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


# FastAPI builds /openapi.json with ``exclude_none``, which drops every null from the
# examples too; they carry this mark instead, and api.routes.docs turns it back into null.
NULL_MARK: Final = "<null: banditlake example>"


def example(value: Any) -> Any:
    """``value`` with each ``None`` replaced by :data:`NULL_MARK`, ready for the document."""
    if value is None:
        return NULL_MARK
    if isinstance(value, dict):
        return {k: example(v) for k, v in value.items()}
    if isinstance(value, list):
        return [example(v) for v in value]
    return value


def _error(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


# Answers the service really gives (captured from a running instance), by status.
_EXAMPLES: Final[dict[int, dict[str, dict[str, Any]]]] = {
    400: {
        "unparseable_body": _error("http_error", "There was an error parsing the body"),
    },
    401: {
        "missing_token": _error(
            "missing_token",
            "This endpoint needs the admin bearer token in the Authorization header.",
        ),
        "invalid_token": _error("invalid_token", "The bearer token is not valid."),
    },
    403: {
        "wrong_role": _error(
            "wrong_role", "The serve token cannot call the policy API; use the admin token."
        ),
        "loopback_only": _error(
            "loopback_only",
            "No admin token is configured, so only loopback callers are served; set "
            "BANDITLAKE_ADMIN_TOKEN to open this endpoint to 10.0.0.7.",
        ),
    },
    404: {
        "experiment_not_found": _error("experiment_not_found", "No experiment named 'churn'."),
    },
    409: {
        "duplicate_name": _error("duplicate_name", "An experiment named 'churn' already exists."),
        "invalid_transition": _error(
            "invalid_transition",
            "Experiment 'churn' cannot go from 'running' to 'draft'; allowed: paused, stopped.",
        ),
    },
    413: {
        "payload_too_large": _error(
            "payload_too_large",
            "The request body (3145728 bytes) is larger than the 2097152-byte limit for "
            "this endpoint.",
            {"limit_bytes": 2097152},
        ),
    },
    422: {
        "invalid_request": _error(
            "invalid_request",
            "Invalid request: reward.kind: Input should be 'binary', 'continuous' or 'label' "
            "(got 'bernoulli').",
            [
                {
                    "field": "reward.kind",
                    "message": (
                        "Input should be 'binary', 'continuous' or 'label' (got 'bernoulli')"
                    ),
                    "type": "literal_error",
                }
            ],
        ),
    },
    503: {
        "store_unavailable": _error(
            "store_unavailable",
            "The SQL store cannot be reached right now; retry in a few seconds.",
        ),
    },
}


def error_responses(
    *statuses: int, examples: dict[int, dict[str, dict[str, Any]]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: the envelope and its examples under each status.

    ``examples`` adds a route's own answers (``{status: {name: envelope}}``) before the
    generic ones.
    """
    extra = examples or {}
    return {
        status: {
            "model": ErrorOut,
            "description": _MEANING[status],
            "content": {
                "application/json": {
                    "examples": {
                        name: {"summary": name.replace("_", " "), "value": example(value)}
                        for name, value in (extra.get(status, {}) | _EXAMPLES[status]).items()
                    }
                }
            },
        }
        for status in statuses
    }


def ok(value: Any, *, status: int = 200, description: str | None = None) -> dict[int | str, Any]:
    """``responses=`` entry with an example of the route's success answer."""
    entry: dict[str, Any] = {"content": {"application/json": {"example": example(value)}}}
    if description is not None:
        entry["description"] = description
    return {status: entry}


def body_example(value: Any, *, media_type: str = "application/json") -> dict[str, Any]:
    """``openapi_extra=`` that adds an example to the request body FastAPI documents."""
    return {"requestBody": {"content": {media_type: {"example": example(value)}}}}


# Every route of the policy API checks the admin token and reads the SQL store.
ADMIN_ERRORS: Final = error_responses(401, 403, 503)
