"""Epsilon-greedy as an allocation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from bandit._argmax import argmax_share
from bandit.config import EpsilonGreedyConfig
from bandit.stats import ArmStats

__all__ = ["epsilon_greedy_distribution"]


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
