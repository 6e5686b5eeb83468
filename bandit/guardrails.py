"""Guardrails: limits on an arm's error rate and p99 latency, checked one way for every caller.

The canary rolls its candidate back on a breach and holds it while the check
is unknown; the service's reallocator disables a breaching arm. Both call
:func:`check_guardrails`, which reads the limits in this order:

1. ``ok`` when no limit is configured;
2. ``unknown`` with fewer than ``min_requests`` served requests (or no health at all);
3. ``breach`` when the error rate (errors per served request) is over ``max_error_rate``;
4. ``unknown`` when a p99 limit is set but no p99 latency is known;
5. ``breach`` when the p99 latency is over ``max_p99_latency_ms``;
6. ``ok`` otherwise.

"Over" is strict: an arm exactly at its limit passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bandit.errors import InvalidInputError

__all__ = ["ArmHealth", "Breach", "GuardrailCheck", "Guardrails", "check_guardrails"]

GuardrailState = Literal["ok", "breach", "unknown"]
Wording = Literal["clause", "audit"]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidInputError(message)


@dataclass(frozen=True)
class ArmHealth:
    """Operational health of one arm over the served requests being judged."""

    requests: int
    errors: int = 0
    p99_latency_ms: float | None = None

    def __post_init__(self) -> None:
        if self.requests < 0 or not (0 <= self.errors <= self.requests):
            msg = (
                f"ArmHealth needs 0 <= errors <= requests, but requests = {self.requests!r} "
                f"and errors = {self.errors!r} were given."
            )
            raise InvalidInputError(msg)

    @property
    def error_rate(self) -> float:
        """Errors per served request, 0.0 without requests."""
        return self.errors / self.requests if self.requests > 0 else 0.0


@dataclass(frozen=True, kw_only=True)
class Guardrails:
    """Limits on an arm's health; ``None`` leaves a limit unset.

    ``min_requests`` is how many served requests the limits are judged on: with
    fewer, the check is ``unknown`` rather than a verdict on noise.
    """

    max_error_rate: float | None = None
    max_p99_latency_ms: float | None = None
    min_requests: int = 0

    def __post_init__(self) -> None:
        _require(
            self.max_error_rate is None or 0.0 <= self.max_error_rate <= 1.0,
            f"max_error_rate must be in [0, 1], but {self.max_error_rate!r} was given.",
        )
        _require(
            self.max_p99_latency_ms is None or self.max_p99_latency_ms > 0.0,
            f"max_p99_latency_ms must be positive, but {self.max_p99_latency_ms!r} was given.",
        )
        _require(
            self.min_requests >= 0,
            f"min_requests must be non-negative, but {self.min_requests!r} was given.",
        )

    @property
    def configured(self) -> bool:
        """Whether any limit is set."""
        return self.max_error_rate is not None or self.max_p99_latency_ms is not None


@dataclass(frozen=True)
class Breach:
    """The limit an arm is over, the value that is over it and on how many requests."""

    limit_name: Literal["max_error_rate", "max_p99_latency_ms"]
    value: float
    limit: float
    requests: int

    def sentence(self, wording: Wording) -> str:
        """The breach in words.

        ``"clause"`` continues a sentence about the arm ("its error rate 0.08
        exceeds the limit 0.02"); ``"audit"`` stands alone in a record and names
        the limit's field and the evidence ("error rate 0.08 over max_error_rate
        0.02 on 5000 requests").
        """
        if self.limit_name == "max_error_rate":
            if wording == "clause":
                return f"its error rate {self.value:.4g} exceeds the limit {self.limit:g}"
            return (
                f"error rate {self.value:.4g} over max_error_rate {self.limit:g} "
                f"on {self.requests} requests"
            )
        if wording == "clause":
            return f"its p99 latency {self.value:g} ms exceeds the limit {self.limit:g} ms"
        return (
            f"p99 latency {self.value:.4g} ms over max_p99_latency_ms {self.limit:g} "
            f"on {self.requests} requests"
        )


@dataclass(frozen=True)
class GuardrailCheck:
    """The outcome of :func:`check_guardrails` and the clause that explains it."""

    state: GuardrailState
    reason: str
    breach: Breach | None = None


def check_guardrails(
    health: ArmHealth | None,
    guardrails: Guardrails,
    *,
    arm: str,
    wording: Wording = "clause",
) -> GuardrailCheck:
    """Check one arm's health against the limits (the rules in the module docstring).

    Parameters
    ----------
    health : ArmHealth or None
        The arm's served requests, errors and p99 latency; ``None`` when unknown.
    guardrails : Guardrails
    arm : str
        The arm's name, for the explanation.
    wording : {"clause", "audit"}
        How a breach is worded (:meth:`Breach.sentence`).

    Returns
    -------
    GuardrailCheck
    """
    if not guardrails.configured:
        return GuardrailCheck("ok", "no guardrails are configured")
    if health is None or health.requests < guardrails.min_requests:
        served = 0 if health is None else health.requests
        return GuardrailCheck(
            "unknown",
            f"the guardrails need {guardrails.min_requests} served requests of {arm!r} "
            f"and it has {served}",
        )
    breach = None
    max_error_rate = guardrails.max_error_rate
    if max_error_rate is not None and health.error_rate > max_error_rate:
        breach = Breach("max_error_rate", health.error_rate, max_error_rate, health.requests)
    elif guardrails.max_p99_latency_ms is not None:
        if health.p99_latency_ms is None:
            return GuardrailCheck("unknown", f"no p99 latency is known for {arm!r}")
        if health.p99_latency_ms > guardrails.max_p99_latency_ms:
            breach = Breach(
                "max_p99_latency_ms",
                health.p99_latency_ms,
                guardrails.max_p99_latency_ms,
                health.requests,
            )
    if breach is not None:
        return GuardrailCheck("breach", breach.sentence(wording), breach)
    return GuardrailCheck("ok", "its guardrails hold")
