"""One entry point from arm statistics and a policy configuration to traffic weights."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from bandit.canary import ArmHealth, CanaryStep, canary_end, canary_step
from bandit.config import (
    CanaryConfig,
    EpsilonGreedyConfig,
    FixedConfig,
    PolicyConfig,
    ThompsonConfig,
    Ucb1Config,
)
from bandit.epsilon_greedy import epsilon_greedy_distribution
from bandit.errors import InvalidInputError, InvalidPolicyError
from bandit.posterior import RewardKind, check_binary
from bandit.stats import ArmStats, reduce_buckets
from bandit.thompson import thompson_distribution
from bandit.ucb import ucb1_distribution, ucb1_index

__all__ = ["Allocation", "ArmInput", "allocate", "apply_floor"]

ArmInput = ArmStats | Sequence[ArmStats]
"""An arm's aggregate, or its time buckets oldest first (for ``discount``/``window``)."""

Decision = Literal["burn_in", "reweight", "fixed", "advance", "hold", "rollback", "ended"]


@dataclass(frozen=True)
class Allocation:
    """Traffic weights and why.

    Attributes
    ----------
    weights : dict[str, float]
        Arm name to share of traffic; every share is at least the policy's
        ``min_weight`` and the shares sum to 1 within 1e-12.
    reason : str
        A sentence for people: what the policy did and on what evidence.
    policy : str
        The policy kind, e.g. ``"thompson"``.
    decision : str
        ``"burn_in"`` (kept previous or equal weights), ``"reweight"``,
        ``"fixed"``, or the canary's ``"advance"``, ``"hold"``, ``"rollback"``,
        ``"ended"`` (its candidate or control is no longer an active arm).
    means, counts : dict[str, float]
        Each arm's mean reward and (possibly discounted) rewarded requests.
    prob_best, expected_loss : dict[str, float] or None
        Posterior probability of being best and expected loss (Thompson only).
    stage : float or None
        The canary candidate's share before the floor (canary only).
    """

    weights: dict[str, float]
    reason: str
    policy: str
    decision: Decision
    means: dict[str, float]
    counts: dict[str, float]
    prob_best: dict[str, float] | None = None
    expected_loss: dict[str, float] | None = None
    stage: float | None = None


def apply_floor(distribution: NDArray[np.float64], min_weight: float) -> NDArray[np.float64]:
    """Mix a distribution with the floor: :math:`w_k = f + (1 - K f)\\, p_k`.

    Every weight is at least :math:`f` and the order of the arms is kept. The
    rounding residual of the sum goes to the largest weight, which is at least
    :math:`1/K \\ge f`, so the sum is 1 within a few ulp and no weight drops
    below the floor.

    Parameters
    ----------
    distribution : ndarray, shape ``(K,)``
        Non-negative with a positive sum (normalised here).
    min_weight : float
        :math:`f`, with :math:`K f \\le 1`.
    """
    k = distribution.size
    p = distribution / distribution.sum()
    weights: NDArray[np.float64] = min_weight + (1.0 - k * min_weight) * p
    largest = int(np.argmax(weights))
    weights[largest] += 1.0 - weights.sum()
    # When K f = 1 exactly, a negative residual could push the largest weight an
    # ulp under the floor; the floor wins over the last ulp of the sum.
    floored: NDArray[np.float64] = np.maximum(weights, min_weight)
    return floored


def _reduce(arm: ArmInput, config: PolicyConfig) -> ArmStats:
    if isinstance(arm, ArmStats):
        return arm
    return reduce_buckets(arm, discount=config.discount, window=config.window)


def _previous_distribution(
    names: Sequence[str], previous: Mapping[str, float] | None
) -> NDArray[np.float64] | None:
    if previous is None or set(previous) != set(names):
        return None
    values = np.array([previous[name] for name in names], dtype=np.float64)
    if not np.all(np.isfinite(values) & (values >= 0)) or values.sum() <= 0:
        return None
    normalised: NDArray[np.float64] = values / values.sum()
    return normalised


def _floored(
    distribution: NDArray[np.float64], min_weight: float, *, keep_if_feasible: bool
) -> NDArray[np.float64]:
    if keep_if_feasible and np.all(distribution >= min_weight):
        # Previous weights already honour the floor; mixing again would drift them.
        return apply_floor(distribution, 0.0)
    return apply_floor(distribution, min_weight)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def allocate(
    arms: Sequence[tuple[str, ArmInput]],
    config: PolicyConfig,
    *,
    kind: RewardKind,
    rng: np.random.Generator,
    previous: Mapping[str, float] | None = None,
    health: Mapping[str, ArmHealth] | None = None,
) -> Allocation:
    """Compute the next allocation.

    Parameters
    ----------
    arms : sequence of (name, ArmStats or sequence of ArmStats)
        Every active arm, the control first. An arm given as buckets (oldest
        first) is reduced with the policy's ``discount`` and ``window``; a
        single aggregate is used as it is.
    config : PolicyConfig
        A canary whose candidate or control is not among ``arms`` has ended
        (:func:`bandit.canary.canary_end`) and gets decision ``"ended"``.
    kind : {"binary", "continuous"}
    rng : numpy.random.Generator
        Source of randomness (Thompson's posterior draws).
    previous : mapping of name to weight, optional
        The allocation in force: kept during burn-in, and the canary's stage
        is read from it (``None`` starts a canary at its first stage).
    health : mapping of name to ArmHealth, optional
        Served requests, errors and latency for the canary's guardrails.

    Returns
    -------
    Allocation
    """
    if not arms:
        msg = "At least one arm is needed to allocate traffic, but none was given."
        raise InvalidInputError(msg)
    names = [name for name, _ in arms]
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        msg = f"Arm names must be unique, but {duplicated!r} appear more than once."
        raise InvalidInputError(msg)
    if kind not in ("binary", "continuous"):
        msg = f"The reward kind must be 'binary' or 'continuous', but {kind!r} was given."
        raise InvalidInputError(msg)
    k = len(names)
    if k * config.min_weight > 1.0 + 1e-12:
        msg = (
            f"min_weight {config.min_weight!r} cannot hold for {k} arms: "
            f"it must be at most 1/{k} = {1 / k:.6g}."
        )
        raise InvalidPolicyError(msg)
    stats = [_reduce(arm, config) for _, arm in arms]
    if kind == "binary":
        check_binary(stats)
    means = {name: s.mean for name, s in zip(names, stats, strict=True)}
    counts = {name: float(s.n) for name, s in zip(names, stats, strict=True)}

    def done(
        distribution: NDArray[np.float64],
        reason: str,
        decision: Decision,
        *,
        keep_if_feasible: bool = False,
        prob_best: dict[str, float] | None = None,
        expected_loss: dict[str, float] | None = None,
        stage: float | None = None,
    ) -> Allocation:
        weights = _floored(distribution, config.min_weight, keep_if_feasible=keep_if_feasible)
        if config.min_weight > 0 and not keep_if_feasible:
            reason = f"{reason} Every arm keeps at least {_fmt(config.min_weight)} of traffic."
        return Allocation(
            weights={name: float(w) for name, w in zip(names, weights, strict=True)},
            reason=reason,
            policy=config.kind,
            decision=decision,
            means=means,
            counts=counts,
            prob_best=prob_best,
            expected_loss=expected_loss,
            stage=stage,
        )

    if isinstance(config, FixedConfig):
        if set(config.weights) != set(names):
            msg = (
                f"Fixed weights must name exactly the active arms {sorted(names)!r}, "
                f"but they name {sorted(config.weights)!r}."
            )
            raise InvalidPolicyError(msg)
        fixed = np.array([config.weights[name] for name in names], dtype=np.float64)
        return done(fixed, "Fixed split as configured.", "fixed")

    if isinstance(config, CanaryConfig):
        end = canary_end(names, config)
        if end is not None:
            ended = np.array([end.shares[name] for name in names], dtype=np.float64)
            return done(ended, end.reason, "ended", stage=end.shares.get(config.candidate, 0.0))
        step = _canary(names, stats, config, kind, previous, health)
        distribution = np.zeros(k)
        distribution[names.index(config.candidate)] = step.share
        distribution[names.index(config.control)] = 1.0 - step.share
        return done(distribution, step.reason, step.decision, stage=step.share)

    if config.burn_in > 0:
        short = [(name, s.n) for name, s in zip(names, stats, strict=True) if s.n < config.burn_in]
        if short:
            name, n = min(short, key=lambda item: item[1])
            kept = _previous_distribution(names, previous)
            what = (
                "keeping the previous weights" if kept is not None else "splitting traffic evenly"
            )
            reason = (
                f"Burn-in: arm {name!r} has {n:g} rewarded requests, fewer than the "
                f"{config.burn_in} every arm needs before reweighting; {what}."
            )
            if kept is None:
                return done(np.full(k, 1.0 / k), reason, "burn_in")
            return done(kept, reason, "burn_in", keep_if_feasible=True)

    if isinstance(config, ThompsonConfig):
        summary = thompson_distribution(stats, config, kind=kind, rng=rng)
        best = int(np.argmax(summary.prob_best))
        reason = (
            f"Thompson sampling: each arm's weight is its posterior probability of being best "
            f"({config.draws} draws); {names[best]!r} leads with "
            f"{_fmt(float(summary.prob_best[best]))}."
        )
        return done(
            summary.prob_best,
            reason,
            "reweight",
            prob_best={n: float(p) for n, p in zip(names, summary.prob_best, strict=True)},
            expected_loss={n: float(x) for n, x in zip(names, summary.expected_loss, strict=True)},
        )
    if isinstance(config, EpsilonGreedyConfig):
        distribution = epsilon_greedy_distribution(stats, config)
        leaders = [n for n, s in zip(names, stats, strict=True) if s.n == 0] or [
            n for n in names if means[n] == max(means.values())
        ]
        reason = (
            f"Epsilon-greedy with epsilon {_fmt(config.epsilon)}: {_names(leaders)} "
            f"{'share' if len(leaders) > 1 else 'gets'} the greedy {_fmt(1 - config.epsilon)} "
            f"of traffic ({'untried' if counts[leaders[0]] == 0 else 'highest mean reward'}); "
            f"the rest is spread evenly."
        )
        return done(distribution, reason, "reweight")
    if isinstance(config, Ucb1Config):
        distribution = ucb1_distribution(stats, config)
        index = ucb1_index(stats, c=config.c)
        leaders = [n for n, p in zip(names, distribution, strict=True) if p > 0]
        bound = float(index[names.index(leaders[0])])
        detail = "untried" if math.isinf(bound) else f"upper confidence bound {_fmt(bound)}"
        reason = f"UCB1: {_names(leaders)} with the highest index ({detail}) takes all traffic."
        return done(distribution, reason, "reweight")
    msg = f"Unsupported policy configuration {config!r}."
    raise InvalidPolicyError(msg)


def _names(names: Sequence[str]) -> str:
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _canary(
    names: Sequence[str],
    stats: Sequence[ArmStats],
    config: CanaryConfig,
    kind: RewardKind,
    previous: Mapping[str, float] | None,
    health: Mapping[str, ArmHealth] | None,
) -> CanaryStep:
    k = len(names)
    current: float | None = None
    if previous is not None and config.candidate in previous:
        spread = 1.0 - k * config.min_weight
        raw = previous[config.candidate] - config.min_weight
        # Undo the floor so the stage is read in the policy's own units.
        current = max(raw / spread, 0.0) if spread > 0 else config.stages[0]
    by_name = dict(zip(names, stats, strict=True))
    return canary_step(
        by_name[config.control],
        by_name[config.candidate],
        config,
        kind=kind,
        current_share=current,
        health=None if health is None else health.get(config.candidate),
    )
