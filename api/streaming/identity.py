"""Who a stream message is, and what follows from it: its request id and its variant.

A message's key is the first of: the body's ``request_id`` (the client's), the broker's
message id (JetStream ``Nats-Msg-Id``), the stream and sequence of the message. Every
delivery of one message has the same key; two messages with the same key and the same
request (features and unit id) are one request sent twice (a client's retry).

The service's request id and the variant are keyed hashes of that, under the
deployment's request-id secret (:class:`api.serving.request_ids.RequestIds`):

- the request id is a valid signed id (``<experiment id>.<nonce><tag>``) whose nonce is
  the keyed hash of (experiment, key, request): feedback for it is accepted like any
  other, every replica and restart derives the same one, and a client cannot compute
  another client's id without the secret. Because the request is hashed in, a client
  reusing someone else's key with other features gets a request of its own, never the
  other client's answer;
- the variant is drawn from a generator seeded with the keyed hash of (request id,
  allocation version): over distinct messages the draw is uniform, so the variant's
  propensity is its weight exactly as for an HTTP request, and a client cannot pick its
  variant by choosing its key (an unkeyed hash would let it).
"""

from __future__ import annotations

import json
import random
from typing import Final

from api.serving.features import Features
from api.serving.request_ids import RequestIds
from api.streaming.transport import Delivery

__all__ = ["MAX_KEY_CHARS", "StreamIdentity", "message_key"]

MAX_KEY_CHARS: Final = 256
"""The longest message id a key is made of; a longer one is refused."""


def message_key(request_id: str | None, delivery: Delivery) -> str:
    """The key every delivery of one message shares (see the module docstring)."""
    if request_id is not None:
        return f"r:{request_id}"
    if delivery.message_id:
        return f"m:{delivery.message_id}"
    return f"s:{delivery.stream}:{delivery.sequence}"


def canonical_request(features: Features, unit_id: str | None) -> str:
    """One text per request, whatever the key order or spacing the client sent."""
    return json.dumps([features, unit_id], sort_keys=True, separators=(",", ":"))


class StreamIdentity:
    """Derive a message's request id and its variant generator from its key."""

    __slots__ = ("_ids",)

    def __init__(self, request_ids: RequestIds) -> None:
        self._ids = request_ids

    def _hash(self, text: str) -> str:
        # RequestIds' keyed BLAKE2b (64 bits, hex): the same key signs the ids themselves.
        return self._ids._tag(text)

    def request_id(self, experiment_id: int, key: str, request: str) -> str:
        """The signed request id of the message ``key`` carrying ``request``."""
        nonce = self._hash(f"stream\x00{experiment_id}\x00{key}\x00{request}")
        head = f"{experiment_id}.{nonce}"
        return head + self._hash(head)

    def chooser(self, request_id: str, allocation_version: int) -> random.Random:
        """The generator whose first draw picks this request's variant in this version."""
        seed = int(self._hash(f"choice\x00{request_id}\x00{allocation_version}"), 16)
        return random.Random(seed)
