"""Streaming inference: predict requests and feedback off a message stream (NATS JetStream).

=====================================  ================================================
:mod:`api.streaming.transport`         the broker protocol (fetch, ack, nak, term,
                                       reply) and one delivery
:mod:`api.streaming.jetstream`         its NATS JetStream adapter
:mod:`api.streaming.identity`          a message's key, request id and variant draw
:mod:`api.streaming.answers`           answers given, so a repeat is answered the same
                                       way and logged once (why it holds)
:mod:`api.streaming.handlers`          what a message becomes, and how it is settled
:mod:`api.streaming.consumer`          the loop: bounded in flight, metrics, drain
:mod:`api.streaming.run`               start inside ``serve`` or as ``banditlake stream``
=====================================  ================================================
"""

from api.streaming.errors import BrokerUnavailableError, StreamError
from api.streaming.options import StreamOptions, default_nats_url
from api.streaming.run import Streaming, preflight, run_stream, start_streaming
from api.streaming.transport import Delivery, Transport

__all__ = [
    "BrokerUnavailableError",
    "Delivery",
    "StreamError",
    "StreamOptions",
    "Streaming",
    "Transport",
    "default_nats_url",
    "preflight",
    "run_stream",
    "start_streaming",
]
