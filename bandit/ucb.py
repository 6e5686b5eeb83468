"""UCB1 (Auer, Cesa-Bianchi and Fischer, 2002) as an allocation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from bandit._argmax import argmax_share
from bandit._wording import number, quoted
from bandit.policy import Evidence, Policy, PolicyConfig, Proposal, require
from bandit.stats import ArmStats

__all__ = ["POLICY", "Ucb1Config", "ucb1_decide", "ucb1_distribution", "ucb1_index"]


@dataclass(frozen=True)
class Ucb1Config(PolicyConfig):
    """UCB1: all weight above the floor on the arm with the highest upper confidence bound.

    The index is :math:`\\bar r_k + c \\sqrt{2 \\ln N / n_k}`; ``c`` is the width
    of the reward range (1 for binary rewards).
    """

    kind: ClassVar[str] = "ucb1"

    c: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            math.isfinite(self.c) and self.c >= 0.0,
            f"c must be finite and non-negative, but {self.c!r} was given.",
        )


def ucb1_index(arms: Sequence[ArmStats], *, c: float = 1.0) -> NDArray[np.float64]:
    """UCB1 index of each arm, shape ``(K,)``.

    .. math:: U_k = \\bar r_k + c \\sqrt{2 \\ln N / n_k}, \\qquad N = \\sum_j n_j,

    with :math:`U_k = +\\infty` for an arm without data and :math:`\\ln N`
    clipped at 0 (discounted counts can fall below 1).
    """
    total = sum(arm.n for arm in arms)
    log_total = math.log(total) if total > 1 else 0.0
    return np.array(
        [
            arm.mean + c * math.sqrt(2.0 * log_total / arm.n) if arm.n > 0 else math.inf
            for arm in arms
        ]
    )


def ucb1_distribution(arms: Sequence[ArmStats], config: Ucb1Config) -> NDArray[np.float64]:
    """All mass on the arm(s) with the highest UCB1 index, shape ``(K,)``."""
    return argmax_share(ucb1_index(arms, c=config.c))


def ucb1_decide(config: Ucb1Config, evidence: Evidence) -> Proposal:
    """The distribution above, naming the leaders and their bound."""
    names = evidence.names
    distribution = ucb1_distribution(evidence.stats, config)
    index = ucb1_index(evidence.stats, c=config.c)
    leaders = [n for n, p in zip(names, distribution, strict=True) if p > 0]
    bound = float(index[names.index(leaders[0])])
    detail = "untried" if math.isinf(bound) else f"upper confidence bound {number(bound)}"
    reason = f"UCB1: {quoted(leaders)} with the highest index ({detail}) takes all traffic."
    return Proposal(distribution, reason)


POLICY = Policy(Ucb1Config, ucb1_decide)
