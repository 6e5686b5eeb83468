"""check_guardrails: one threshold logic, in the canary's and the reallocator's words."""

from __future__ import annotations

import pytest

from bandit import ArmHealth, Guardrails, check_guardrails
from bandit.errors import InvalidInputError

LIMITS = Guardrails(max_error_rate=0.02, max_p99_latency_ms=250.0, min_requests=100)


@pytest.mark.parametrize(
    ("health", "guardrails", "state", "clause", "audit"),
    [
        (
            ArmHealth(5000, 400, 120.0),
            Guardrails(),
            "ok",
            "no guardrails are configured",
            "no guardrails are configured",
        ),
        (
            None,
            LIMITS,
            "unknown",
            "the guardrails need 100 served requests of 'x' and it has 0",
            "the guardrails need 100 served requests of 'x' and it has 0",
        ),
        (
            ArmHealth(99, 99, 900.0),
            LIMITS,
            "unknown",
            "the guardrails need 100 served requests of 'x' and it has 99",
            "the guardrails need 100 served requests of 'x' and it has 99",
        ),
        (
            ArmHealth(5000, 400, 120.0),
            LIMITS,
            "breach",
            "its error rate 0.08 exceeds the limit 0.02",
            "error rate 0.08 over max_error_rate 0.02 on 5000 requests",
        ),
        (
            ArmHealth(5000, 0, 912.345),
            LIMITS,
            "breach",
            "its p99 latency 912.345 ms exceeds the limit 250 ms",
            "p99 latency 912.3 ms over max_p99_latency_ms 250 on 5000 requests",
        ),
        (
            ArmHealth(5000, 0, None),
            LIMITS,
            "unknown",
            "no p99 latency is known for 'x'",
            "no p99 latency is known for 'x'",
        ),
        # At the limit is not over it.
        (ArmHealth(5000, 100, 250.0), LIMITS, "ok", "its guardrails hold", "its guardrails hold"),
    ],
)
def test_one_check_two_wordings(
    health: ArmHealth | None, guardrails: Guardrails, state: str, clause: str, audit: str
) -> None:
    as_clause = check_guardrails(health, guardrails, arm="x")
    as_audit = check_guardrails(health, guardrails, arm="x", wording="audit")
    assert (as_clause.state, as_clause.reason) == (state, clause)
    assert (as_audit.state, as_audit.reason) == (state, audit)
    assert (as_clause.breach is not None) == (state == "breach")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_error_rate": 2.0}, "max_error_rate must be in [0, 1], but 2.0 was given."),
        ({"max_p99_latency_ms": 0.0}, "max_p99_latency_ms must be positive, but 0.0 was given."),
        ({"min_requests": -1}, "min_requests must be non-negative, but -1 was given."),
    ],
)
def test_impossible_limits_are_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        Guardrails(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"requests": 3, "errors": 4},
            "ArmHealth needs 0 <= errors <= requests, but requests = 3 and errors = 4 were given.",
        ),
        (
            {"requests": -1},
            "ArmHealth needs 0 <= errors <= requests, but requests = -1 and errors = 0 were given.",
        ),
    ],
)
def test_impossible_health_is_rejected(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        ArmHealth(**kwargs)
    assert str(caught.value) == message
