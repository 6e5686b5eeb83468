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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from bandit.errors import InvalidInputError, InvalidPolicyError
from bandit.frequentist import Comparison, noninferiority_test
from bandit.guardrails import ArmHealth, Guardrails, check_guardrails
from bandit.policy import Evidence, Policy, PolicyConfig, Proposal, require
from bandit.posterior import RewardKind
from bandit.stats import ArmStats

__all__ = [
    "POLICY",
    "CanaryConfig",
    "CanaryEnd",
    "CanaryStep",
    "canary_decide",
    "canary_end",
    "canary_step",
]

# Shares recovered from stored float weights carry rounding; closer than this is equal.
_SHARE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class CanaryConfig(PolicyConfig):
    """A staged rollout of ``candidate`` against ``control``.

    The candidate's share climbs through ``stages``, one stage per allocation,
    while its guardrails hold and it is shown non-inferior to the control at
    level ``alpha`` with margin ``margin`` times the control's mean. A guardrail
    breach, or evidence that the candidate is worse than the control by more
    than the margin, rolls it back to zero. Until both arms have ``min_samples``
    rewarded requests (and the candidate ``min_samples`` served requests for the
    guardrails) the stage holds.
    """

    kind: ClassVar[str] = "canary"
    adaptive: ClassVar[bool] = False
    default_min_weight: ClassVar[float] = 0.0

    candidate: str
    control: str
    stages: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 1.0)
    margin: float = 0.05
    alpha: float = 0.05
    min_samples: int = 100
    max_error_rate: float | None = None
    max_p99_latency_ms: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            bool(self.candidate) and bool(self.control) and self.candidate != self.control,
            f"The candidate and the control must be two different arms, but "
            f"{self.candidate!r} and {self.control!r} were given.",
        )
        require(
            len(self.stages) >= 1
            and all(0.0 < s <= 1.0 for s in self.stages)
            and all(a < b for a, b in zip(self.stages, self.stages[1:], strict=False)),
            f"stages must be strictly increasing shares in (0, 1], but {self.stages!r} was given.",
        )
        require(
            math.isfinite(self.margin) and self.margin >= 0.0,
            f"margin must be finite and non-negative, but {self.margin!r} was given.",
        )
        require(0.0 < self.alpha < 1.0, f"alpha must be in (0, 1), but {self.alpha!r} was given.")
        require(
            self.min_samples >= 0,
            f"min_samples must be non-negative, but {self.min_samples!r} was given.",
        )
        try:
            _ = self.guardrails
        except InvalidInputError as exc:
            raise InvalidPolicyError(str(exc)) from exc

    arms_error_code: ClassVar[str] = "canary_arms_missing"

    def arms_problem(self, arms: Sequence[str], *, experiment: str) -> str | None:
        """Both the candidate and the control must be active arms."""
        if self.candidate in arms and self.control in arms:
            return None
        return (
            f"The canary's candidate {self.candidate!r} and control {self.control!r} must "
            f"both be active arms of {experiment!r} (active arms: {list(arms)})."
        )

    def start(self, arms: Sequence[str]) -> tuple[dict[str, float], str]:
        """The first stage: the candidate's share, the rest to the control."""
        share = float(self.stages[0])
        weights = {arm: 0.0 for arm in arms}
        weights[self.candidate], weights[self.control] = share, 1.0 - share
        return weights, f"start: canary stage 1, {share:g} of traffic to {self.candidate!r}"

    @property
    def guardrails(self) -> Guardrails:
        """The candidate's limits, judged on ``min_samples`` served requests."""
        return Guardrails(
            max_error_rate=self.max_error_rate,
            max_p99_latency_ms=self.max_p99_latency_ms,
            min_requests=self.min_samples,
        )


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
    check = check_guardrails(health, config.guardrails, arm=cand)
    state, why = check.state, check.reason
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


def _current_share(config: CanaryConfig, evidence: Evidence) -> float | None:
    if evidence.previous is None or config.candidate not in evidence.previous:
        return None
    spread = 1.0 - len(evidence.names) * config.min_weight
    raw = evidence.previous[config.candidate] - config.min_weight
    # Undo the floor so the stage is read in the policy's own units.
    return max(raw / spread, 0.0) if spread > 0 else config.stages[0]


def canary_decide(config: CanaryConfig, evidence: Evidence) -> Proposal:
    """End the canary (rule 0) or take one step, as shares of the candidate and the control."""
    names = evidence.names
    end = canary_end(names, config)
    if end is not None:
        ended = np.array([end.shares[name] for name in names], dtype=np.float64)
        return Proposal(ended, end.reason, "ended", stage=end.shares.get(config.candidate, 0.0))
    by_name: Mapping[str, ArmStats] = dict(zip(names, evidence.stats, strict=True))
    step = canary_step(
        by_name[config.control],
        by_name[config.candidate],
        config,
        kind=evidence.kind,
        current_share=_current_share(config, evidence),
        health=None if evidence.health is None else evidence.health.get(config.candidate),
    )
    distribution = np.zeros(len(names))
    distribution[names.index(config.candidate)] = step.share
    distribution[names.index(config.control)] = 1.0 - step.share
    return Proposal(distribution, step.reason, step.decision, stage=step.share)


POLICY = Policy(CanaryConfig, canary_decide)
