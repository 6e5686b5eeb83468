"""Epsilon-greedy as an allocation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from bandit._argmax import argmax_share
from bandit._wording import number, quoted
from bandit.policy import Evidence, Policy, PolicyConfig, Proposal, require
from bandit.stats import ArmStats

__all__ = [
    "POLICY",
    "EpsilonGreedyConfig",
    "epsilon_greedy_decide",
    "epsilon_greedy_distribution",
]


@dataclass(frozen=True)
class EpsilonGreedyConfig(PolicyConfig):
    """Epsilon-greedy: ``1 - epsilon`` on the best mean, ``epsilon`` spread evenly."""

    kind: ClassVar[str] = "epsilon_greedy"

    epsilon: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            0.0 <= self.epsilon <= 1.0,
            f"epsilon must be in [0, 1], but {self.epsilon!r} was given.",
        )


def epsilon_greedy_distribution(
    arms: Sequence[ArmStats], config: EpsilonGreedyConfig
) -> NDArray[np.float64]:
    """Epsilon-greedy weights, shape ``(K,)``.

    .. math:: p_k = \\varepsilon / K + (1 - \\varepsilon)\\, g_k,

    where :math:`g` is uniform over the arms with the highest sample mean.
    Arms without data count as best, so the greedy share explores them first.
    """
    means = np.array([arm.mean if arm.n > 0 else np.inf for arm in arms])
    k = len(arms)
    return config.epsilon / k + (1.0 - config.epsilon) * argmax_share(means)


def epsilon_greedy_decide(config: EpsilonGreedyConfig, evidence: Evidence) -> Proposal:
    """The distribution above, with the greedy arms named."""
    names, means, counts = evidence.names, evidence.means, evidence.counts
    leaders = [n for n, s in zip(names, evidence.stats, strict=True) if s.n == 0] or [
        n for n in names if means[n] == max(means.values())
    ]
    reason = (
        f"Epsilon-greedy with epsilon {number(config.epsilon)}: {quoted(leaders)} "
        f"{'share' if len(leaders) > 1 else 'gets'} the greedy {number(1 - config.epsilon)} "
        f"of traffic ({'untried' if counts[leaders[0]] == 0 else 'highest mean reward'}); "
        f"the rest is spread evenly."
    )
    return Proposal(epsilon_greedy_distribution(evidence.stats, config), reason)


POLICY = Policy(EpsilonGreedyConfig, epsilon_greedy_decide)
