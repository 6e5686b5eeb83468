"""The answers already given, so a message delivered again gets the same one, logged once.

Why a redelivered message is answered the same way and logged once (at least once in,
exactly once into the lake):

1. Every delivery of a message derives the same request id (:mod:`api.streaming.identity`),
   and the first answer given for a request id is kept here (a bounded map, newest
   kept). A delivery whose request id is here is answered from it and not served,
   so not logged. Two deliveries of one message in flight at once (JetStream redelivers
   after its ack wait) share one serving: the second waits for the first's answer.
2. A message is acknowledged only after its row is handed to the lake writer (in
   durable mode: after the row is fsynced in the local log). So a message the broker
   redelivers after a crash either has no row (it is served now, for the first time),
   or its row was logged and its ack was lost with the process.
3. A row logged but not acknowledged was in flight when the process died: there are at
   most ``max_in_flight`` of them per process, and they are among its newest rows. At
   start, before the first fetch, the durable log's rows are replayed and flushed to
   the lake, and the newest ``limit`` stream rows of the experiment are read back into
   this map (their answers rebuilt from the rows). With ``limit`` far above the number
   of processes times ``max_in_flight``, every such row is found, however long the
   process was down.

So a redelivery is answered with the variant and prediction of the first answer, even
when the allocation has changed since. Limits: in buffered mode (the default) a crash
loses the rows of the writer's buffer whose messages were already acknowledged (the
same loss window as the HTTP path); two processes on one durable consumer each know
only their own answers until a restart, so a message redelivered to the other one
while the first still holds it (past the ack wait, 30 s by default) is logged by both, under the
same request id, which readers can group by; in durable mode, a row whose fsync outlasts
``BANDITLAKE_LAKE_DURABLE_WAIT_MS`` is not acknowledged (the message is returned) but may
still reach the log, and is then logged again when the message is served anew. The
newest rows are read back by one query over the lake's live files at start, whose cost
grows with the lake (seconds for tens of millions of rows).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from sqlalchemy import Engine

from api.streaming.replies import row_reply
from lake.reader import open_lake
from lake.storage import LakeStorage

__all__ = ["DEFAULT_LIMIT", "Answer", "Answers", "read_recent_answers"]

log = logging.getLogger(__name__)

DEFAULT_LIMIT: Final = 65_536
"""Answers kept in memory and read back at start (a few hundred bytes each)."""

# (reply body, the HTTP status it stands for)
Answer = tuple[bytes, int]


class Answers:
    """The answers given to recent request ids, and the servings in flight."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            msg = f"The answer cache needs room for at least one answer; got {limit}."
            raise ValueError(msg)
        self._limit = limit
        self._done: dict[str, Answer] = {}
        self._flight: dict[str, asyncio.Future[Answer]] = {}

    def __len__(self) -> int:
        return len(self._done)

    def remember(self, request_id: str, answer: Answer) -> None:
        done = self._done
        done[request_id] = answer
        if len(done) > self._limit:
            del done[next(iter(done))]

    async def once(
        self, request_id: str, serve: Callable[[], Awaitable[Answer]]
    ) -> tuple[Answer, bool]:
        """The answer for ``request_id``: ``serve``'s if it is the first, else the first's.

        Returns the answer and whether it was served now. When ``serve`` raises, nothing
        is remembered (nothing was logged): a waiting duplicate gets the same error.
        """
        found = self._done.get(request_id)
        if found is not None:
            return found, False
        flight = self._flight.get(request_id)
        if flight is not None:
            return await asyncio.shield(flight), False
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._flight[request_id] = future
        try:
            answer = await serve()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            # Retrieved here, so an exception nobody waited for is not reported as lost.
            future.exception()
            raise
        finally:
            del self._flight[request_id]
        self.remember(request_id, answer)
        future.set_result(answer)
        return answer, True


def read_recent_answers(
    engine: Engine, storage: LakeStorage, experiment: str, limit: int
) -> list[tuple[str, Answer]]:
    """The newest ``limit`` stream answers of ``experiment`` in the lake, oldest first."""
    with open_lake(engine, storage) as lake:
        con = lake.duckdb()
        rows = con.execute(
            """
            SELECT request_id, variant, prediction, scores, propensity, allocation_version,
                   status, error
            FROM predictions
            WHERE experiment = ? AND role = 'arm' AND mode = 'stream'
            ORDER BY ts DESC
            LIMIT ?
            """,
            [experiment, limit],
        ).fetchall()
    answers = [
        (
            request_id,
            row_reply(
                request_id=request_id,
                experiment=experiment,
                variant=variant,
                prediction=prediction,
                scores=scores,
                propensity=propensity,
                allocation_version=version,
                status=status,
                error=error,
            ),
        )
        for request_id, variant, prediction, scores, propensity, version, status, error in rows
    ]
    answers.reverse()
    return answers
