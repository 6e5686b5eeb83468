"""The serving path's side of the lake logs: load shedding and durable-write failures.

:mod:`lake.durable` raises lake errors; the requests answer them as 503s with a sentence
(and ``Retry-After`` when the replica sheds load because its log is behind).
"""

from __future__ import annotations

from collections.abc import Sequence

from api.errors import UnavailableError
from lake.durable import LogFullError, LogUnavailableError, RowLog
from lake.schemas import FeedbackRow, PredictionRow

__all__ = ["RETRY_AFTER_S", "check_log_room", "record_rows"]

# What a shed request is told to wait: about one flush interval of the writer.
RETRY_AFTER_S = 1


def check_log_room(log: RowLog) -> None:
    """Refuse a new request (503, Retry-After) while the durable log is over its bound."""
    try:
        log.check_room()
    except LogFullError as exc:
        msg = f"This replica is shedding load: {exc} Retry in a moment."
        raise UnavailableError(msg, code="lake_log_full", retry_after=RETRY_AFTER_S) from exc


async def record_rows(log: RowLog, rows: Sequence[PredictionRow | FeedbackRow]) -> None:
    """Log the rows a response acknowledges; a durable write that fails answers 503."""
    try:
        await log.record(rows)
    except LogUnavailableError as exc:
        msg = f"{exc} The request was not acknowledged; retry it."
        details = {"request_id": rows[0].request_id} if len(rows) == 1 else None
        raise UnavailableError(msg, code="lake_log_unavailable", details=details) from exc
