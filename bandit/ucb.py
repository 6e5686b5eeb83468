"""UCB1 (Auer, Cesa-Bianchi and Fischer, 2002) as an allocation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from bandit._argmax import argmax_share
from bandit.config import Ucb1Config
from bandit.stats import ArmStats

__all__ = ["ucb1_distribution", "ucb1_index"]


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
