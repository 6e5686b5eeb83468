"""The NATS JetStream adapter of :class:`api.streaming.transport.Transport`.

Requests are read through a durable pull consumer, so messages published while no
consumer runs wait in the stream, and each is delivered again until it is acknowledged
(at least once). ``max_ack_pending`` bounds the messages delivered and not yet settled,
so a slow consumer is never handed more than it may hold.

An answer goes to the message's ``Reply-To`` header when it names an inbox
(``_INBOX.``), else to the configured reply subject. Only inboxes are accepted from a
message: a client naming any subject could otherwise make the consumer publish into
other streams (its own request subject among them).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from api.streaming.errors import BrokerUnavailableError, StreamError
from api.streaming.transport import Delivery

__all__ = ["JetStreamConnection", "JetStreamTransport", "check_name", "check_subject"]

log = logging.getLogger(__name__)

REPLY_HEADER: Final = "Reply-To"
_INBOX_PREFIX: Final = "_INBOX."
_MSG_ID_HEADER: Final = "Nats-Msg-Id"
# JetStream names: no whitespace, dots, wildcards or path separators.
_NAME: Final = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")
_SUBJECT: Final = re.compile(r"^[!-~]{1,255}$")
_CONNECT_TIMEOUT_S: Final = 5
# While messages keep coming, how long a batch fetch waits for more than are there.
_BUSY_FETCH_S: Final = 0.005


def check_name(flag: str, name: str) -> str:
    """A stream or consumer name JetStream accepts, or a sentence naming the bad one."""
    if not _NAME.fullmatch(name):
        msg = (
            f"{flag} {name!r} is not a valid JetStream name; use 1 to 200 letters, digits, "
            "'_' or '-'."
        )
        raise StreamError(msg)
    return name


def check_subject(flag: str, subject: str, *, wildcards: bool = True) -> str:
    """A NATS subject (printable, no spaces, no empty token), or a sentence naming it."""
    tokens = subject.split(".")
    if not _SUBJECT.fullmatch(subject) or "" in tokens:
        msg = f"{flag} {subject!r} is not a NATS subject such as 'predict.churn'."
        raise StreamError(msg)
    if not wildcards and any(t in ("*", ">") for t in tokens):
        msg = f"{flag} {subject!r} has a wildcard; answers need one concrete subject."
        raise StreamError(msg)
    return subject


async def _probe(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("nats", "tls"):
        return
    try:
        host, port = parts.hostname or "127.0.0.1", parts.port or 4222
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), timeout=_CONNECT_TIMEOUT_S
        )
    except (OSError, TimeoutError, ValueError) as exc:
        msg = f"Cannot connect to NATS at {url}: {exc or type(exc).__name__}."
        raise BrokerUnavailableError(msg) from exc
    writer.close()


class JetStreamTransport:
    """One durable pull consumer on one subject, and where its answers go."""

    def __init__(
        self, client: Client, subscription: JetStreamContext.PullSubscription, reply: str | None
    ) -> None:
        self._client = client
        self._subscription = subscription
        self._reply = reply
        self._busy = False

    async def fetch(self, batch: int, timeout_s: float) -> list[Delivery]:
        # nats-py's fetch of n > 1 first takes what is there (a no-wait pull); with nothing
        # there it waits for all n, or the timeout, before returning the first: messages
        # trickling in would wait up to timeout_s each. So a batch is asked for only while
        # messages keep coming, and otherwise one, which returns as soon as it arrives.
        if batch > 1 and self._busy:
            messages = await self._pull(batch, _BUSY_FETCH_S)
            if messages:
                return messages
            self._busy = False
        messages = await self._pull(1, timeout_s)
        self._busy = bool(messages)
        return messages

    async def _pull(self, batch: int, timeout_s: float) -> list[Delivery]:
        try:
            messages = await self._subscription.fetch(batch, timeout=timeout_s)
        except TimeoutError:  # nats-py's own and asyncio's: no message came in time
            return []
        return [_delivery(m) for m in messages]

    async def ack(self, delivery: Delivery) -> None:
        await _handle(delivery).ack()

    async def nak(self, delivery: Delivery, delay_s: float) -> None:
        await _handle(delivery).nak(delay=delay_s)

    async def term(self, delivery: Delivery) -> None:
        await _handle(delivery).term()

    async def reply(self, delivery: Delivery, body: bytes, headers: Mapping[str, str]) -> bool:
        target = delivery.headers.get(REPLY_HEADER)
        if target is None or not target.startswith(_INBOX_PREFIX) or " " in target:
            target = self._reply
        if target is None:
            return False
        await self._client.publish(target, body, headers=dict(headers))
        return True

    async def close(self) -> None:
        try:
            await self._subscription.unsubscribe()
        except nats.errors.Error as exc:  # the connection is going away anyway
            log.debug("unsubscribing failed: %s", exc)


def _handle(delivery: Delivery) -> Msg:
    handle = delivery.handle
    assert isinstance(handle, Msg)
    return handle


def _delivery(message: Msg) -> Delivery:
    meta = message.metadata
    headers = message.headers or {}
    return Delivery(
        data=message.data,
        headers=headers,
        message_id=headers.get(_MSG_ID_HEADER),
        sequence=meta.sequence.stream,
        stream=meta.stream,
        delivered=meta.num_delivered,
        pending=meta.num_pending,
        handle=message,
    )


@dataclass
class JetStreamConnection:
    """A connection to NATS and the JetStream stream the consumers read."""

    client: Client
    jetstream: JetStreamContext
    url: str

    @classmethod
    async def connect(cls, url: str) -> JetStreamConnection:
        """Connect to ``url``; a server that does not answer is a sentence, not a traceback."""

        async def on_error(exc: Exception) -> None:
            log.warning("NATS connection to %s: %s", url, exc)

        # nats-py retries a first connection like a reconnection (forever, here): a server
        # that refuses it is told by one plain TCP attempt first.
        await _probe(url)
        try:
            client = await asyncio.wait_for(
                nats.connect(
                    url,
                    connect_timeout=_CONNECT_TIMEOUT_S,
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                    error_cb=on_error,
                ),
                timeout=3 * _CONNECT_TIMEOUT_S,
            )
        except (OSError, TimeoutError, nats.errors.Error, ValueError) as exc:
            msg = f"Cannot connect to NATS at {url}: {exc or type(exc).__name__}."
            raise BrokerUnavailableError(msg) from exc
        return cls(client, client.jetstream(), url)

    async def ensure_stream(self, name: str, subjects: list[str]) -> None:
        """Create the stream over ``subjects`` unless a stream of that name exists."""
        try:
            await self.jetstream.stream_info(name)
            return
        except nats.js.errors.NotFoundError:
            pass
        except nats.errors.Error as exc:
            msg = f"JetStream at {self.url} did not answer about stream {name!r}: {exc}."
            raise BrokerUnavailableError(msg) from exc
        try:
            await self.jetstream.add_stream(StreamConfig(name=name, subjects=subjects))
        except nats.errors.Error as exc:
            msg = f"JetStream at {self.url} refused to create stream {name!r} on {subjects}: {exc}."
            raise BrokerUnavailableError(msg) from exc
        log.info("created JetStream stream %s on %s", name, ", ".join(subjects))

    async def consumer(
        self,
        stream: str,
        subject: str,
        durable: str,
        *,
        max_ack_pending: int,
        ack_wait_s: float,
        reply: str | None,
    ) -> JetStreamTransport:
        """A durable pull consumer of ``subject`` (created when missing).

        ``max_ack_pending`` and ``ack_wait_s`` apply when the consumer is created; an
        existing consumer keeps its own.
        """
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_ack_pending=max_ack_pending,
        )
        try:
            subscription = await self.jetstream.pull_subscribe(
                subject, durable=durable, stream=stream, config=config
            )
        except nats.errors.Error as exc:
            msg = (
                f"JetStream at {self.url} refused the consumer {durable!r} of {subject!r} on "
                f"stream {stream!r}: {exc}."
            )
            raise BrokerUnavailableError(msg) from exc
        return JetStreamTransport(self.client, subscription, reply)

    async def consumer_pending(self, stream: str, durable: str) -> int:
        info: Any = await self.jetstream.consumer_info(stream, durable)
        return int(info.num_pending or 0)

    async def close(self) -> None:
        """Send what is buffered (answers, acks), then close.

        Not ``drain()``: with pull subscriptions it waits out its whole timeout (30 s).
        The consumers have settled every message they took by now; one fetched after
        the last fetch returned is redelivered after the ack wait.
        """
        try:
            await self.client.flush(timeout=5)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("sending the last answers and acks to NATS failed: %s", exc)
        await self.client.close()
