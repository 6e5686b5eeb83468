"""The size limit of a batch request, one rule for predict batches and feedback batches."""

from __future__ import annotations

from typing import Literal

from api.errors import InvalidRequestError

__all__ = ["check_batch_size"]

# The body field, then the words its messages use for one element and for several.
_WORDS = {"rows": ("row", "items"), "items": ("item", "entries")}


def check_batch_size(count: int, limit: int, *, field: Literal["rows", "items"]) -> None:
    """Refuse a batch of no elements or of more than ``limit`` (422, before any work)."""
    one, several = _WORDS[field]
    if count == 0:
        msg = f"{field} is empty; send at least one {one}."
        raise InvalidRequestError(msg, code="empty_batch")
    if count > limit:
        msg = f"{field} has {count} {several}; at most {limit} are accepted per request."
        raise InvalidRequestError(msg, code="batch_too_large")
