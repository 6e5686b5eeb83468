"""Errors of the stream consumer.

Hierarchy::

    StreamError              the consumer cannot start or go on (a sentence for a person)
    └── BrokerUnavailableError   the broker cannot be reached or refused a setup request
"""

from __future__ import annotations

__all__ = ["BrokerUnavailableError", "StreamError"]


class StreamError(Exception):
    """The stream consumer cannot start or go on; the message says why."""


class BrokerUnavailableError(StreamError):
    """The message broker cannot be reached, or it refused to set up the stream."""
