"""What one stream message becomes: an answer, and how the broker is told it is settled.

=====================================  =============================  ==================
the message                            the answer                     settled by
=====================================  =============================  ==================
served (or a model failure, logged)    the HTTP API's body            ack, after the row
                                                                      is handed over
a repeat of a request already served   the first answer, again        ack
malformed: bad JSON, wrong features,   the HTTP API's error body      term (never again)
too large
cannot be served now: the experiment   none                           nak: delivered
is not running, the durable log is                                    again after a pause
full or failing, the SQL store or the
lake is down
=====================================  =============================  ==================
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final, Literal

from pydantic import Field, ValidationError

from api.errors import (
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceError,
    _describe_validation,
)
from api.schemas import FeedbackBody, PredictBody
from api.serving.service import ServingService
from api.streaming.answers import Answer, Answers
from api.streaming.identity import MAX_KEY_CHARS, StreamIdentity, canonical_request, message_key
from api.streaming.replies import encode, error_reply, prediction_reply
from api.streaming.transport import Delivery

__all__ = ["FeedbackHandler", "Outcome", "PredictHandler", "StreamPredictBody"]

log = logging.getLogger(__name__)

Settle = Literal["ack", "term", "nak"]

# Model failures whose row is in the lake: answered and remembered like a prediction.
_LOGGED_FAILURES: Final = frozenset({"input_rejected_by_model", "model_timeout", "model_error"})


class StreamPredictBody(PredictBody):
    """A predict body, and the client's id of the request (its retries reuse it)."""

    request_id: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$"
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to answer (``None``: nothing), how to settle, and the metric's outcome label."""

    settle: Settle
    label: Literal["answered", "duplicate", "invalid", "retried"]
    answer: Answer | None = None
    key: str | None = None


def _invalid(exc: ServiceError, key: str | None = None) -> Outcome:
    return Outcome("term", "invalid", (error_reply(exc), exc.status_code), key)


def _parse_error(exc: ValidationError) -> InvalidRequestError:
    # The HTTP API's wording, so a client reads the same sentence on either path.
    message, details = _describe_validation([dict(e) for e in exc.errors(include_url=False)])
    return InvalidRequestError(message, details=details)


def _check_size(delivery: Delivery, limit: int) -> None:
    if len(delivery.data) > limit:
        msg = (
            f"The message body is {len(delivery.data)} bytes; this service takes at most "
            f"{limit} (BANDITLAKE_MAX_BODY_BYTES)."
        )
        raise PayloadTooLargeError(msg, details={"limit": limit})


class PredictHandler:
    """Serves predict messages through the serving service, each request once."""

    def __init__(
        self, service: ServingService, experiment: str, answers: Answers, identity: StreamIdentity
    ) -> None:
        self._service = service
        self._experiment = experiment
        self._answers = answers
        self._identity = identity
        self._limit = service.settings.max_body_bytes

    async def handle(self, delivery: Delivery) -> Outcome:
        try:
            _check_size(delivery, self._limit)
            body = StreamPredictBody.model_validate_json(delivery.data)
        except PayloadTooLargeError as exc:
            return _invalid(exc)
        except ValidationError as exc:
            return _invalid(_parse_error(exc))
        key = message_key(body.request_id, delivery)
        # The client's own id goes back in the answer's header, without the key's kind.
        client_key = key.partition(":")[2]
        if len(key) > MAX_KEY_CHARS:
            msg = (
                f"The message id is {len(key)} characters long; at most {MAX_KEY_CHARS} are taken."
            )
            return _invalid(InvalidRequestError(msg, code="invalid_request_id"))
        exp = self._service.runtime.experiments.get(self._experiment)
        if exp is None:
            # Not in this replica's snapshot (yet): the message waits, it is not refused.
            log.warning("experiment %s is unknown here; message %s waits", self._experiment, key)
            return Outcome("nak", "retried", key=client_key)
        request_id = self._identity.request_id(
            exp.id, key, canonical_request(body.features, body.unit_id)
        )

        async def serve() -> Answer:
            try:
                result = await self._service.predict(
                    self._experiment,
                    body.features,
                    body.unit_id,
                    request_id=request_id,
                    rng=self._identity.chooser(request_id, exp.version),
                    mode="stream",
                )
            except ServiceError as exc:
                if exc.code in _LOGGED_FAILURES:
                    return error_reply(exc), exc.status_code
                raise
            return prediction_reply(result), 200

        try:
            answer, fresh = await self._answers.once(request_id, serve)
        except InvalidRequestError as exc:
            return _invalid(exc, client_key)
        except ServiceError as exc:
            log.info("message %s of %s waits: %s", key, self._experiment, exc.message)
            return Outcome("nak", "retried", key=client_key)
        return Outcome("ack", "answered" if fresh else "duplicate", answer, client_key)


class FeedbackHandler:
    """Stores feedback messages as ``POST /v1/feedback`` does."""

    def __init__(self, service: ServingService) -> None:
        self._service = service
        self._limit = service.settings.max_body_bytes

    async def handle(self, delivery: Delivery) -> Outcome:
        try:
            _check_size(delivery, self._limit)
            body = FeedbackBody.model_validate_json(delivery.data)
        except PayloadTooLargeError as exc:
            return _invalid(exc)
        except ValidationError as exc:
            return _invalid(_parse_error(exc))
        try:
            result = await self._service.feedback([(body.request_id, body.reward, body.label)])
        except (InvalidRequestError, NotFoundError) as exc:
            # An id this deployment never issued, or feedback of the wrong kind: never valid.
            return _invalid(exc, body.request_id)
        except ServiceError as exc:
            log.info("feedback for %s waits: %s", body.request_id[:80], exc.message)
            return Outcome("nak", "retried", key=body.request_id)
        answer = encode({"accepted": result.accepted, "duplicate": result.duplicates > 0}), 202
        label: Literal["answered", "duplicate"] = "duplicate" if result.duplicates else "answered"
        return Outcome("ack", label, answer, body.request_id)
