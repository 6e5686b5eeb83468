"""The stream consumer's options, checked once (``banditlake stream`` and ``serve``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Final

from api.streaming.answers import DEFAULT_LIMIT
from api.streaming.errors import StreamError
from api.streaming.jetstream import check_name, check_subject

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "DEFAULT_NATS_URL", "StreamOptions", "default_nats_url"]

DEFAULT_NATS_URL: Final = "nats://127.0.0.1:4222"
DEFAULT_MAX_IN_FLIGHT: Final = 256
# How long JetStream waits for an ack before delivering a message again: longer than a
# request can take (the model timeout plus the durable log's wait) by a wide margin. A
# message held by a consumer that died is delivered again after it.
DEFAULT_ACK_WAIT_S: Final = 30.0
_MAX_ACK_WAIT_S: Final = 3600.0
_MAX_IN_FLIGHT: Final = 65_536


def default_nats_url() -> str:
    """``BANDITLAKE_NATS_URL``, else the local server."""
    return os.environ.get("BANDITLAKE_NATS_URL") or DEFAULT_NATS_URL


def _name_of(experiment: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]", "_", experiment)


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """Where one experiment's requests and feedback come from, and where answers go.

    Parameters
    ----------
    experiment
        The experiment that serves the requests.
    subject
        The subject of the predict requests.
    reply_subject
        Where answers go when a message names no inbox (``Reply-To``); ``None``: only
        messages that name one are answered (every one is still logged).
    feedback_subject
        The subject of feedback messages (``POST /v1/feedback`` bodies); ``None``: none.
    stream
        The JetStream stream; created over the subjects when missing. Default
        ``BANDITLAKE_<experiment>``.
    durable
        The durable consumer's name (the feedback consumer adds ``-feedback``); every
        process with the same name shares its messages. Default ``banditlake-<experiment>``.
    max_in_flight
        Messages received and not yet settled, at most (also ``max_ack_pending``).
    nats_url
        The NATS server.
    answers
        Answers kept to recognise repeats, and read back from the lake at start.
    ack_wait_s
        Seconds JetStream waits for an ack before delivering the message again (when
        the consumer is created).
    """

    experiment: str
    subject: str
    reply_subject: str | None = None
    feedback_subject: str | None = None
    stream: str | None = None
    durable: str | None = None
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    nats_url: str = DEFAULT_NATS_URL
    answers: int = DEFAULT_LIMIT
    ack_wait_s: float = DEFAULT_ACK_WAIT_S

    def __post_init__(self) -> None:
        check_subject("--subject", self.subject)
        if self.reply_subject is not None:
            check_subject("--reply-subject", self.reply_subject, wildcards=False)
        if self.feedback_subject is not None:
            check_subject("--feedback-subject", self.feedback_subject)
            if self.feedback_subject == self.subject:
                msg = f"--feedback-subject {self.feedback_subject!r} is also --subject."
                raise StreamError(msg)
        if self.reply_subject is not None and self.reply_subject in (
            self.subject,
            self.feedback_subject,
        ):
            msg = f"--reply-subject {self.reply_subject!r} would feed the answers back in."
            raise StreamError(msg)
        check_name("--stream", self.stream_name)
        check_name("--durable", self.durable_name)
        if not 1 <= self.max_in_flight <= _MAX_IN_FLIGHT:
            msg = f"--max-in-flight must be 1 to {_MAX_IN_FLIGHT}; got {self.max_in_flight}."
            raise StreamError(msg)
        if not 1.0 <= self.ack_wait_s <= _MAX_ACK_WAIT_S:
            msg = f"--ack-wait must be 1 to {_MAX_ACK_WAIT_S:g} seconds; got {self.ack_wait_s:g}."
            raise StreamError(msg)
        if not self.nats_url.startswith(("nats://", "tls://", "ws://", "wss://")):
            msg = f"--nats-url {self.nats_url!r} is not a nats://host:port URL."
            raise StreamError(msg)
        if self.answers < self.max_in_flight:
            msg = (
                f"The answers kept ({self.answers}) must be at least --max-in-flight "
                f"({self.max_in_flight}): the repeats after a restart are found among them."
            )
            raise StreamError(msg)

    @property
    def stream_name(self) -> str:
        return self.stream or f"BANDITLAKE_{_name_of(self.experiment)}"

    @property
    def durable_name(self) -> str:
        return self.durable or f"banditlake-{_name_of(self.experiment)}"

    @property
    def subjects(self) -> list[str]:
        """The subjects a stream created by the consumer captures."""
        return [self.subject] + ([self.feedback_subject] if self.feedback_subject else [])
