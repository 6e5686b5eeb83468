"""Thompson sampling as an allocation: weights are posterior probabilities of being best.

Serving each request from the weights :math:`P_k = \\Pr(\\theta_k = \\max_j \\theta_j)`
chooses arms with exactly the probabilities of per-request Thompson sampling on
the posterior frozen at the last reallocation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from bandit._wording import number
from bandit.bayesian import BayesSummary, bayes_summary
from bandit.policy import Evidence, Policy, PolicyConfig, Proposal, require
from bandit.posterior import RewardKind
from bandit.stats import ArmStats

__all__ = ["POLICY", "ThompsonConfig", "thompson_decide", "thompson_distribution"]


@dataclass(frozen=True)
class ThompsonConfig(PolicyConfig):
    """Thompson sampling: each arm's weight is its posterior probability of being best."""

    kind: ClassVar[str] = "thompson"

    draws: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.draws >= 1, f"draws must be at least 1, but {self.draws!r} was given.")


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


def thompson_decide(config: ThompsonConfig, evidence: Evidence) -> Proposal:
    """Weights proportional to P(best); the posterior summaries go with them."""
    names = evidence.names
    summary = thompson_distribution(evidence.stats, config, kind=evidence.kind, rng=evidence.rng)
    best = int(np.argmax(summary.prob_best))
    reason = (
        f"Thompson sampling: each arm's weight is its posterior probability of being best "
        f"({config.draws} draws); {names[best]!r} leads with "
        f"{number(float(summary.prob_best[best]))}."
    )
    return Proposal(
        summary.prob_best,
        reason,
        prob_best={n: float(p) for n, p in zip(names, summary.prob_best, strict=True)},
        expected_loss={n: float(x) for n, x in zip(names, summary.expected_loss, strict=True)},
    )


POLICY = Policy(ThompsonConfig, thompson_decide)
