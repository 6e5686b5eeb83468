"""Feedback: check each item against the experiment its request id names, store it once."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from api.errors import InvalidRequestError, NotFoundError
from api.metrics import Metrics
from api.serving.lake_log import check_log_room, record_rows
from api.serving.limits import check_batch_size
from api.serving.request_ids import RequestIds
from api.serving.snapshot import Snapshot
from lake.durable import RowLog
from lake.schemas import FeedbackRow

__all__ = ["FeedbackItem", "FeedbackResult", "FeedbackService"]

# (request id, reward, label), as the body carries them.
FeedbackItem = tuple[str, float | None, float | str | None]


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    """How many feedback items were stored, and how many repeated a request id already seen."""

    accepted: int
    duplicates: int


class _Recent:
    """A bounded set of recently seen keys, oldest forgotten first (dicts keep order)."""

    __slots__ = ("_keys", "_limit")

    def __init__(self, limit: int) -> None:
        self._keys: dict[str, None] = {}
        self._limit = limit

    def add(self, key: str) -> bool:
        """Remember ``key``; ``False`` if it was already remembered."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self._limit:
            del self._keys[next(iter(self._keys))]
        return True

    def discard(self, key: str) -> None:
        """Forget ``key`` (its feedback was not stored after all)."""
        self._keys.pop(key, None)


class FeedbackService:
    """Checks feedback items and appends the first one per request id to the lake."""

    def __init__(
        self,
        snapshot: Snapshot,
        request_ids: RequestIds,
        log: RowLog,
        metrics: Metrics,
        *,
        dedup_ids: int,
        max_batch: int,
    ) -> None:
        self._snapshot = snapshot
        self._request_ids = request_ids
        self._log = log
        self._metrics = metrics
        self._seen = _Recent(dedup_ids)
        self._max_batch = max_batch

    def check(
        self, request_id: str, reward: float | None, label: float | str | None, field: str
    ) -> tuple[FeedbackRow, str]:
        """The row to store and the name of the experiment the request id belongs to."""
        exp_id = self._request_ids.experiment_of(request_id)
        if exp_id is None:
            msg = (
                f"{field}.request_id {request_id[:80]!r} is not a request id this service "
                "issued; send the request_id of a predict response."
            )
            raise InvalidRequestError(msg, code="invalid_request_id")
        exp = self._snapshot.runtime.by_id.get(exp_id)
        if exp is None:
            msg = f"{field}.request_id {request_id[:80]!r} belongs to no known experiment."
            raise NotFoundError(msg, code="experiment_not_found")
        if exp.reward_kind == "label":
            if label is None or reward is not None:
                msg = f'{field}: experiment {exp.name!r} takes a label, not a reward; send "label".'
                raise InvalidRequestError(msg, code="label_expected")
            if isinstance(label, float) and not math.isfinite(label):
                msg = f"{field}.label {label} is not a finite number."
                raise InvalidRequestError(msg, code="invalid_label")
            if exp.reward_metric != "accuracy" and not isinstance(label, float | int):
                msg = (
                    f"{field}.label {label!r} must be a number for the {exp.reward_metric} metric."
                )
                raise InvalidRequestError(msg, code="invalid_label")
            text = label if isinstance(label, str) else repr(float(label))
            return FeedbackRow(request_id, datetime.now(UTC), None, text), exp.name
        if reward is None or label is not None:
            msg = (
                f"{field}: experiment {exp.name!r} takes a numeric reward, not a label; "
                'send "reward".'
            )
            raise InvalidRequestError(msg, code="reward_expected")
        if not math.isfinite(reward):
            msg = f"{field}.reward {reward} is not a finite number."
            raise InvalidRequestError(msg, code="invalid_reward")
        if exp.reward_kind == "binary" and reward not in (0.0, 1.0):
            msg = (
                f"{field}.reward {reward} is not 0 or 1; experiment {exp.name!r} has binary "
                "rewards."
            )
            raise InvalidRequestError(msg, code="invalid_reward")
        return FeedbackRow(request_id, datetime.now(UTC), float(reward), None), exp.name

    async def store(self, items: Sequence[FeedbackItem]) -> FeedbackResult:
        """Check every item, then store each request id's first feedback once.

        A repeat of a request id this process has already stored (a client retry, a replay)
        is answered as a duplicate and neither stored nor counted, so the lake, the
        ``decisions`` view (first feedback wins) and ``banditlake_feedback_total`` agree.
        In durable mode it returns once the rows are on disk (503 when they cannot be).
        """
        check_log_room(self._log)
        rows = [
            self.check(rid, reward, label, f"items.{i}" if len(items) > 1 else "body")
            for i, (rid, reward, label) in enumerate(items)
        ]
        fresh = [(row, exp) for row, exp in rows if self._seen.add(row.request_id)]
        try:
            await record_rows(self._log, [row for row, _ in fresh])
        except Exception:
            # Not stored: a retry of these ids must not be taken for a repeat.
            for row, _ in fresh:
                self._seen.discard(row.request_id)
            raise
        for _, exp in fresh:
            self._metrics.feedback.labels(exp).inc()
        duplicates = len(rows) - len(fresh)
        if duplicates:
            self._metrics.feedback_duplicates.inc(duplicates)
        return FeedbackResult(len(fresh), duplicates)

    async def store_batch(self, items: Sequence[FeedbackItem]) -> FeedbackResult:
        """:meth:`store` for a batch body: all or nothing, within the batch size limit."""
        check_batch_size(len(items), self._max_batch, field="items")
        return await self.store(items)
