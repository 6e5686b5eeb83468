"""Canary rollout: one stage step per allocation, guarded by guardrails and a non-inferiority test.

Each allocation either advances the candidate to the next stage, holds it, or
rolls it back to zero:

0. a canary whose candidate or control is no longer an active arm (a guardrail
   or a person disabled it) has ended (:func:`canary_end`): the other of the
   two takes all traffic, or, when neither is active, the remaining arms share
   it evenly; the rules below do not apply;
1. a candidate already at zero stays there (a rollback is final until a person
   promotes or restarts it);
2. a guardrail breach (error rate or p99 latency over its limit, measured on at
   least ``min_samples`` served requests) rolls back;
3. with fewer than ``min_samples`` rewarded requests on either arm, hold;
4. when the one-sided upper bound of ``candidate - control`` lies below
   ``-margin * |control mean|`` (worse by more than the margin), roll back;
5. when the guardrails are known to hold and the non-inferiority test rejects
   at ``alpha``, advance one stage; otherwise hold.

The test is re-run on cumulative data at every allocation, so the chance of
advancing past a truly inferior candidate at some stage exceeds ``alpha``;
small early stages bound what such an error costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bandit.config import CanaryConfig
from bandit.errors import InvalidInputError
from bandit.frequentist import Comparison, noninferiority_test
from bandit.posterior import RewardKind
from bandit.stats import ArmStats

__all__ = ["ArmHealth", "CanaryEnd", "CanaryStep", "canary_end", "canary_step"]

# Shares recovered from stored float weights carry rounding; closer than this is equal.
_SHARE_TOLERANCE = 1e-9


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


@dataclass(frozen=True)
class CanaryStep:
    """The candidate's share after this allocation and why."""

    share: float
    decision: Literal["advance", "hold", "rollback"]
    reason: str
    comparison: Comparison | None = None


@dataclass(frozen=True)
class CanaryEnd:
    """The shares of a canary that has ended, before the floor, and why."""

    shares: dict[str, float]
    reason: str


def canary_end(names: Sequence[str], config: CanaryConfig) -> CanaryEnd | None:
    """End the canary when its candidate or control is not among the active arms (rule 0).

    Parameters
    ----------
    names : sequence of str
        The active arms, at least one.
    config : CanaryConfig

    Returns
    -------
    CanaryEnd or None
        ``None`` while both the candidate and the control are active.
    """
    cand, ctrl = config.candidate, config.control
    missing = [
        (role, name) for role, name in (("candidate", cand), ("control", ctrl)) if name not in names
    ]
    if not missing:
        return None
    if len(missing) == 2:
        share = 1.0 / len(names)
        quoted = ", ".join(repr(n) for n in names)
        return CanaryEnd(
            {name: share for name in names},
            f"The canary has ended: neither its candidate {cand!r} nor its control {ctrl!r} is "
            f"an active arm, so traffic is split evenly over {quoted}.",
        )
    ((role, gone),) = missing
    survivor, survivor_role = (ctrl, "control") if role == "candidate" else (cand, "candidate")
    return CanaryEnd(
        {name: 1.0 if name == survivor else 0.0 for name in names},
        f"The canary has ended: its {role} {gone!r} is no longer an active arm, so its "
        f"{survivor_role} {survivor!r} takes all traffic.",
    )


def _pct(share: float) -> str:
    return f"{100 * share:g}%"


def _guardrails(config: CanaryConfig, health: ArmHealth | None) -> tuple[str, str]:
    """("ok" | "breach" | "unknown", explanation)."""
    limits = config.max_error_rate is not None or config.max_p99_latency_ms is not None
    if not limits:
        return "ok", "no guardrails are configured"
    if health is None or health.requests < config.min_samples:
        served = 0 if health is None else health.requests
        return "unknown", (
            f"the guardrails need {config.min_samples} served requests of "
            f"{config.candidate!r} and it has {served}"
        )
    if config.max_error_rate is not None and health.error_rate > config.max_error_rate:
        return "breach", (
            f"its error rate {health.error_rate:.4g} exceeds the limit {config.max_error_rate:g}"
        )
    if config.max_p99_latency_ms is not None:
        if health.p99_latency_ms is None:
            return "unknown", f"no p99 latency is known for {config.candidate!r}"
        if health.p99_latency_ms > config.max_p99_latency_ms:
            return "breach", (
                f"its p99 latency {health.p99_latency_ms:g} ms exceeds the limit "
                f"{config.max_p99_latency_ms:g} ms"
            )
    return "ok", "its guardrails hold"


def canary_step(
    control: ArmStats,
    candidate: ArmStats,
    config: CanaryConfig,
    *,
    kind: RewardKind,
    current_share: float | None,
    health: ArmHealth | None = None,
) -> CanaryStep:
    """Decide the candidate's next share (rules in the module docstring).

    Parameters
    ----------
    control, candidate : ArmStats
        Cumulative reward statistics of the two arms.
    config : CanaryConfig
    kind : {"binary", "continuous"}
    current_share : float or None
        The candidate's share before the floor in the allocation in force;
        ``None`` for the first allocation, which starts at the first stage.
    health : ArmHealth or None
        The candidate's served requests, errors and p99 latency.
    """
    cand, ctrl = config.candidate, config.control
    if current_share is None:
        share = config.stages[0]
        return CanaryStep(
            share, "advance", f"Canary started: {cand!r} gets {_pct(share)} of traffic."
        )
    if current_share <= _SHARE_TOLERANCE:
        return CanaryStep(
            0.0,
            "hold",
            f"{cand!r} was rolled back earlier and stays at 0% until it is promoted or restarted.",
        )
    state, why = _guardrails(config, health)
    if state == "breach":
        return CanaryStep(0.0, "rollback", f"Rolled back {cand!r} to 0%: {why}.")
    if min(control.n, candidate.n) < config.min_samples:
        return CanaryStep(
            current_share,
            "hold",
            f"Holding {cand!r} at {_pct(current_share)}: each arm needs {config.min_samples} "
            f"rewarded requests and {cand!r} has {candidate.n:g}, {ctrl!r} has {control.n:g}.",
        )
    margin = config.margin * abs(control.mean)
    test = noninferiority_test(control, candidate, kind=kind, margin=margin, alpha=config.alpha)
    if test.ci_high < -margin:
        return CanaryStep(
            0.0,
            "rollback",
            f"Rolled back {cand!r} to 0%: it is worse than {ctrl!r} by more than the margin "
            f"{margin:.4g} (difference {test.diff:.4g}, upper bound {test.ci_high:.4g}).",
            test,
        )
    if state == "unknown":
        return CanaryStep(
            current_share, "hold", f"Holding {cand!r} at {_pct(current_share)}: {why}.", test
        )
    if test.p_value > config.alpha:
        return CanaryStep(
            current_share,
            "hold",
            f"Holding {cand!r} at {_pct(current_share)}: non-inferiority to {ctrl!r} within "
            f"{margin:.4g} is not shown yet (p = {test.p_value:.4g}).",
            test,
        )
    later = [s for s in config.stages if s > current_share + _SHARE_TOLERANCE]
    if not later:
        return CanaryStep(
            current_share,
            "hold",
            f"{cand!r} is at its final stage, {_pct(current_share)}; {why} and it is non-inferior "
            f"to {ctrl!r} (p = {test.p_value:.4g}).",
            test,
        )
    return CanaryStep(
        later[0],
        "advance",
        f"Advanced {cand!r} from {_pct(current_share)} to {_pct(later[0])}: {why} and it is "
        f"non-inferior to {ctrl!r} within {margin:.4g} (p = {test.p_value:.4g}).",
        test,
    )
