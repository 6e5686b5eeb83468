"""One entry point from arm statistics and a policy configuration to traffic weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bandit._wording import number
from bandit.errors import InvalidInputError, InvalidPolicyError
from bandit.guardrails import ArmHealth
from bandit.policy import Decision, Evidence, PolicyConfig, Proposal
from bandit.posterior import RewardKind, check_binary
from bandit.registry import get_policy
from bandit.stats import ArmStats, reduce_buckets

__all__ = ["Allocation", "ArmInput", "allocate", "apply_floor"]

ArmInput = ArmStats | Sequence[ArmStats]
"""An arm's aggregate, or its time buckets oldest first (for ``discount``/``window``)."""


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


def _burn_in(config: PolicyConfig, evidence: Evidence) -> tuple[Proposal, bool] | None:
    """Hold an adaptive policy until every arm has ``burn_in`` rewarded requests.

    Returns the proposal and whether it keeps the previous weights, or ``None``
    once burn-in is over.
    """
    names, stats = evidence.names, evidence.stats
    short = [(name, s.n) for name, s in zip(names, stats, strict=True) if s.n < config.burn_in]
    if not short:
        return None
    name, n = min(short, key=lambda item: item[1])
    kept = _previous_distribution(names, evidence.previous)
    what = "keeping the previous weights" if kept is not None else "splitting traffic evenly"
    reason = (
        f"Burn-in: arm {name!r} has {n:g} rewarded requests, fewer than the "
        f"{config.burn_in} every arm needs before reweighting; {what}."
    )
    if kept is None:
        return Proposal(np.full(len(names), 1.0 / len(names)), reason, "burn_in"), False
    return Proposal(kept, reason, "burn_in"), True


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

    What every policy shares happens here: the arms are checked, buckets are
    reduced, an adaptive policy (``config.adaptive``) is held in burn-in, and
    the floor is applied. The rest is the registered policy's ``decide``
    (:mod:`bandit.registry`).

    Parameters
    ----------
    arms : sequence of (name, ArmStats or sequence of ArmStats)
        Every active arm, the control first. An arm given as buckets (oldest
        first) is reduced with the policy's ``discount`` and ``window``; a
        single aggregate is used as it is.
    config : PolicyConfig
        The configuration of a registered policy. A canary whose candidate or
        control is not among ``arms`` has ended (:func:`bandit.canary.canary_end`)
        and gets decision ``"ended"``.
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
    policy = get_policy(config.kind)
    if not isinstance(config, policy.config):
        msg = f"Unsupported policy configuration {config!r}."
        raise InvalidPolicyError(msg)
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
    evidence = Evidence(tuple(names), tuple(stats), kind, rng, previous, health)
    held = _burn_in(config, evidence) if config.adaptive and config.burn_in > 0 else None
    if held is not None:
        proposal, keep_if_feasible = held
    else:
        proposal, keep_if_feasible = policy.decide(config, evidence), False
    weights = _floored(proposal.distribution, config.min_weight, keep_if_feasible=keep_if_feasible)
    reason = proposal.reason
    if config.min_weight > 0 and not keep_if_feasible:
        reason = f"{reason} Every arm keeps at least {number(config.min_weight)} of traffic."
    return Allocation(
        weights={name: float(w) for name, w in zip(names, weights, strict=True)},
        reason=reason,
        policy=config.kind,
        decision=proposal.decision,
        means=evidence.means,
        counts=evidence.counts,
        prob_best=proposal.prob_best,
        expected_loss=proposal.expected_loss,
        stage=proposal.stage,
    )
