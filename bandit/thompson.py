"""Thompson sampling as an allocation: weights are posterior probabilities of being best.

Serving each request from the weights :math:`P_k = \\Pr(\\theta_k = \\max_j \\theta_j)`
chooses arms with exactly the probabilities of per-request Thompson sampling on
the posterior frozen at the last reallocation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bandit.bayesian import BayesSummary, bayes_summary
from bandit.config import ThompsonConfig
from bandit.posterior import RewardKind
from bandit.stats import ArmStats

__all__ = ["thompson_distribution"]


def thompson_distribution(
    arms: Sequence[ArmStats],
    config: ThompsonConfig,
    *,
    kind: RewardKind,
    rng: np.random.Generator,
) -> BayesSummary:
    """P(best) and expected loss of each arm from ``config.draws`` posterior draws.

    The allocation before the floor is ``prob_best``, shape ``(K,)``.
    """
    return bayes_summary(arms, kind=kind, rng=rng, draws=config.draws)
