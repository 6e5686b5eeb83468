"""The consumer loop: fetch, handle with a bound on messages in flight, answer, settle.

The loop fetches only as many messages as it has room for (``max_in_flight``, which is
also the broker's ``max_ack_pending``), hands each to its handler in a task of its own
and settles it once handled. :meth:`Consumer.run` returns when asked to stop, after the
messages in flight are answered and settled: stopping never abandons a message half
way, and one never fetched stays in the stream for the next consumer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final, Literal, Protocol

from api.metrics import Metrics
from api.streaming.handlers import Outcome
from api.streaming.replies import KEY_HEADER, STATUS_HEADER
from api.streaming.transport import Delivery, Transport

__all__ = ["Consumer", "Handler"]

log = logging.getLogger(__name__)

_FETCH_BATCH: Final = 256
# A fetch waits this long for a message: the most a stop waits for the loop to notice.
_FETCH_TIMEOUT_S: Final = 0.5
# A message that cannot be served now is delivered again after this pause.
RETRY_DELAY_S: Final = 1.0


class Handler(Protocol):
    async def handle(self, delivery: Delivery) -> Outcome: ...


class Consumer:
    """Consume one transport with one handler until stopped.

    Parameters
    ----------
    transport
        Where the messages come from and the answers go.
    handler
        What each message becomes (:mod:`api.streaming.handlers`).
    metrics
        The service's metrics; the series are labelled ``experiment`` and ``kind``.
    max_in_flight
        Messages received and not yet settled, at most.
    """

    def __init__(
        self,
        transport: Transport,
        handler: Handler,
        metrics: Metrics,
        *,
        experiment: str,
        kind: Literal["predict", "feedback"],
        max_in_flight: int,
    ) -> None:
        if max_in_flight < 1:
            msg = f"max_in_flight must be at least 1; got {max_in_flight}."
            raise ValueError(msg)
        self._transport = transport
        self._handler = handler
        self._room = asyncio.Semaphore(max_in_flight)
        self._max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._lag = metrics.stream_lag.labels(experiment, kind)
        self._in_flight = metrics.stream_in_flight.labels(experiment, kind)
        self._latency = metrics.stream_latency.labels(experiment, kind)
        self._messages = metrics.stream_messages
        self._labels = (experiment, kind)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then finish the messages in flight."""
        try:
            while not stop.is_set():
                await self._room.acquire()
                room = 1
                # Take every free slot without waiting: one fetch for all of them.
                while room < _FETCH_BATCH and not self._room.locked():
                    await self._room.acquire()
                    room += 1
                try:
                    deliveries = await self._transport.fetch(room, _FETCH_TIMEOUT_S)
                except Exception:
                    log.exception("fetching from the stream failed; retrying")
                    deliveries = []
                    await asyncio.sleep(_FETCH_TIMEOUT_S)
                for _ in range(room - len(deliveries)):
                    self._room.release()
                if not deliveries:
                    self._lag.set(0)
                for delivery in deliveries:
                    self._lag.set(delivery.pending)
                    task = asyncio.get_running_loop().create_task(self._one(delivery))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:
            while self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _one(self, delivery: Delivery) -> None:
        start = time.perf_counter()
        self._in_flight.inc()
        label = "retried"
        try:
            outcome = await self._handler.handle(delivery)
            label = outcome.label
            if outcome.answer is not None:
                body, status = outcome.answer
                headers = {STATUS_HEADER: str(status)}
                if outcome.key is not None:
                    headers[KEY_HEADER] = outcome.key
                await self._transport.reply(delivery, body, headers)
            if outcome.settle == "ack":
                await self._transport.ack(delivery)
            elif outcome.settle == "term":
                await self._transport.term(delivery)
            else:
                await self._transport.nak(delivery, RETRY_DELAY_S)
        except Exception:
            # A defect or a lost connection: the message is delivered again, never dropped.
            log.exception("handling stream message %d failed", delivery.sequence)
            try:
                await self._transport.nak(delivery, RETRY_DELAY_S)
            except Exception as exc:
                log.warning("could not return message %d: %s", delivery.sequence, exc)
        finally:
            self._in_flight.dec()
            self._latency.observe(time.perf_counter() - start)
            self._messages.labels(*self._labels, label).inc()
            self._room.release()
