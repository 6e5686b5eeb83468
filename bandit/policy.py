"""What a policy is: a configuration dataclass and a function from evidence to a proposal.

A policy is registered (:mod:`bandit.registry`) as a :class:`Policy`: its
configuration class, a frozen dataclass deriving from :class:`PolicyConfig`
whose ``kind`` names it, and ``decide(config, evidence) -> Proposal``.
:func:`bandit.allocation.allocate` does what every policy shares (it checks the
arms, reduces time buckets, holds an adaptive policy in burn-in, applies the
floor) and asks ``decide`` for the rest. Parameters are parsed from JSON by
their type annotations (:mod:`bandit.parameters`).

Every policy shares the options of :class:`PolicyConfig` (keyword-only):

``min_weight``
    Floor on every arm's weight; the final weights are
    :math:`w_k = f + (1 - K f)\\, p_k` for the policy's distribution :math:`p`.
``burn_in``
    Rewarded requests every arm needs before an adaptive policy reweights;
    until then the previous (or equal) weights stay.
``discount``, ``window``
    For non-stationary rewards: when an arm is given as a sequence of buckets
    (oldest first) bucket ages are weighted by :math:`\\gamma^{\\text{age}}` and
    only the newest ``window`` buckets count (:func:`bandit.stats.reduce_buckets`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, Literal, TypeVar

import numpy as np
from numpy.typing import NDArray

from bandit.errors import InvalidPolicyError
from bandit.guardrails import ArmHealth
from bandit.posterior import RewardKind
from bandit.stats import ArmStats

__all__ = [
    "DEFAULT_MIN_WEIGHT",
    "Decision",
    "Evidence",
    "Policy",
    "PolicyConfig",
    "Proposal",
    "require",
]

DEFAULT_MIN_WEIGHT = 0.02
"""The floor of an adaptive experiment that names none (:attr:`PolicyConfig.default_min_weight`)."""

Decision = Literal["burn_in", "reweight", "fixed", "advance", "hold", "rollback", "ended"]


def require(condition: bool, message: str) -> None:
    """Raise :class:`~bandit.errors.InvalidPolicyError` with ``message`` unless ``condition``."""
    if not condition:
        raise InvalidPolicyError(message)


@dataclass(frozen=True, kw_only=True)
class PolicyConfig:
    """Options every policy shares (see the module docstring); each policy derives its own.

    Class attributes a policy sets:

    ``kind``
        Its name in the API and in stored JSON.
    ``adaptive``
        Whether it learns from rewards: burn-in applies to it. A policy whose
        shares are the operator's (``fixed``, ``canary``) is not.
    ``default_min_weight``
        The floor an experiment gets when it names none. An adaptive policy gets
        0.02, as the demo uses: with no floor, one unlucky early batch can send an
        arm to weight 0 (UCB1 does by design), after which it collects no more
        evidence and can never come back. With the floor every arm keeps at least
        2% of traffic; the price is regret on a stationary problem
        (``banditlake simulate --arms 0.05,0.06,0.07 --seeds 20``: mean
        pseudo-regret 117 over 100,000 requests against 76 without a floor, 191
        with 0.05). Operator-set shares get 0: a floor would change them (a
        canary's first stage is often 1%).
    """

    kind: ClassVar[str] = ""
    adaptive: ClassVar[bool] = True
    default_min_weight: ClassVar[float] = DEFAULT_MIN_WEIGHT

    min_weight: float = 0.0
    burn_in: int = 0
    discount: float = 1.0
    window: int | None = None

    def __post_init__(self) -> None:
        require(
            0.0 <= self.min_weight <= 1.0,
            f"min_weight must be in [0, 1], but {self.min_weight!r} was given.",
        )
        require(self.burn_in >= 0, f"burn_in must be non-negative, but {self.burn_in!r} was given.")
        require(
            0.0 < self.discount <= 1.0,
            f"discount must be in (0, 1], but {self.discount!r} was given.",
        )
        require(
            self.window is None or self.window >= 1,
            f"window must be a positive number of buckets, but {self.window!r} was given.",
        )

    # -- hooks a policy may override ---------------------------------------------------

    arms_error_code: ClassVar[str] = "policy_arms_missing"
    """The API's error code when :meth:`arms_problem` refuses the active arms."""

    def arms_problem(self, arms: Sequence[str], *, experiment: str) -> str | None:
        """The sentence refusing ``arms`` (the active arms) for this policy, or ``None``.

        Checked when an experiment starts and when its policy changes while it runs; a
        policy that names arms (a canary's candidate and control) refuses arms that
        lack them.
        """
        return None

    def start(self, arms: Sequence[str]) -> tuple[dict[str, float], str]:
        """The first allocation's weights over ``arms`` (the active arms) and its reason."""
        share = 1.0 / len(arms)
        return {arm: share for arm in arms}, "start: equal weights over the active arms"


@dataclass(frozen=True)
class Evidence:
    """What a policy decides from: the active arms, the control first.

    Attributes
    ----------
    names : tuple of str, length ``K``
    stats : tuple of ArmStats, length ``K``
        Each arm's rewards, buckets already reduced with ``discount``/``window``.
    kind : {"binary", "continuous"}
    rng : numpy.random.Generator
        The only source of randomness a policy may use.
    previous : mapping of name to weight, or None
        The allocation in force (``None`` before the first).
    health : mapping of name to ArmHealth, or None
        Served requests, errors and p99 latency, for policies with guardrails.
    """

    names: tuple[str, ...]
    stats: tuple[ArmStats, ...]
    kind: RewardKind
    rng: np.random.Generator
    previous: Mapping[str, float] | None = None
    health: Mapping[str, ArmHealth] | None = None

    @property
    def means(self) -> dict[str, float]:
        """Each arm's mean reward (0.0 without data)."""
        return {name: s.mean for name, s in zip(self.names, self.stats, strict=True)}

    @property
    def counts(self) -> dict[str, float]:
        """Each arm's (possibly discounted) rewarded requests."""
        return {name: float(s.n) for name, s in zip(self.names, self.stats, strict=True)}


@dataclass(frozen=True, eq=False)
class Proposal:
    """A policy's answer: a distribution over the arms before the floor, and why.

    Attributes
    ----------
    distribution : ndarray, shape ``(K,)``
        Non-negative with a positive sum, in the order of ``Evidence.names``.
    reason : str
        A sentence for people; the allocator appends the floor's.
    decision : str
        See :class:`bandit.allocation.Allocation`.
    prob_best, expected_loss : dict[str, float] or None
        Posterior summaries the policy computed anyway (reported with the allocation).
    stage : float or None
        A staged rollout's share before the floor.
    """

    distribution: NDArray[np.float64]
    reason: str
    decision: Decision = "reweight"
    prob_best: dict[str, float] | None = None
    expected_loss: dict[str, float] | None = None
    stage: float | None = None


C = TypeVar("C", bound=PolicyConfig)


@dataclass(frozen=True)
class Policy(Generic[C]):
    """A registered policy: its configuration class and its decide function."""

    config: type[C]
    decide: Callable[[C, Evidence], Proposal]

    @property
    def kind(self) -> str:
        return self.config.kind
