"""What the stream consumer needs of a message broker: a small protocol, one adapter each.

The consumer (:mod:`api.streaming.consumer`) only fetches deliveries, answers them and
settles them (ack, nak, term); :mod:`api.streaming.jetstream` implements this over NATS
JetStream. A Kafka adapter would map ``fetch`` to a poll, ``ack`` to a commit of the
offset after the delivery (in order), ``nak`` to a seek back and ``term`` to a commit
(or a dead-letter topic), and the reply to a produce on the reply topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Delivery", "Transport"]


@dataclass(frozen=True, slots=True, eq=False)
class Delivery:
    """One delivery of a message; a redelivery of the same message is another ``Delivery``.

    Parameters
    ----------
    data
        The message body, as published.
    headers
        The message's headers (empty when it has none).
    message_id
        The broker's id of the message when the publisher set one (JetStream's
        ``Nats-Msg-Id``), else ``None``.
    sequence
        The message's position in its stream: the same for every delivery of it.
    stream
        The stream (or topic) the message belongs to.
    delivered
        How many times the message has been delivered, this time included.
    pending
        Messages of the stream not yet delivered to this consumer (its lag).
    handle
        The adapter's own message object (opaque to the consumer).
    """

    data: bytes
    headers: Mapping[str, str]
    message_id: str | None
    sequence: int
    stream: str
    delivered: int
    pending: int
    handle: object = field(repr=False)


class Transport(Protocol):
    """A durable, at-least-once source of messages with a way to answer them."""

    async def fetch(self, batch: int, timeout_s: float) -> list[Delivery]:
        """Up to ``batch`` deliveries; an empty list when none came within ``timeout_s``."""
        ...

    async def ack(self, delivery: Delivery) -> None:
        """The message is done: never deliver it again."""
        ...

    async def nak(self, delivery: Delivery, delay_s: float) -> None:
        """The message could not be handled now: deliver it again after ``delay_s``."""
        ...

    async def term(self, delivery: Delivery) -> None:
        """The message can never be handled (it is malformed): never deliver it again."""
        ...

    async def reply(self, delivery: Delivery, body: bytes, headers: Mapping[str, str]) -> bool:
        """Answer the message; ``False`` when it has nowhere to be answered."""
        ...

    async def close(self) -> None:
        """Stop receiving; deliveries not settled yet are redelivered later."""
        ...
