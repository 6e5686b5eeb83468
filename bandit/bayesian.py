"""Bayesian summaries: probability of being best, expected loss, credible intervals.

Monte Carlo over the posteriors of :mod:`bandit.posterior` with the caller's
generator, so every number is reproducible from its seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bandit.errors import InvalidInputError
from bandit.posterior import BetaPosterior, NormalPosterior, RewardKind, posteriors
from bandit.stats import ArmStats

__all__ = [
    "BayesSummary",
    "bayes_summary",
    "credible_intervals",
    "expected_loss",
    "prob_best",
    "sample_posteriors",
    "summarize_draws",
]


@dataclass(frozen=True)
class BayesSummary:
    """Per-arm Bayesian summary, each array of shape ``(K,)``."""

    prob_best: NDArray[np.float64]
    expected_loss: NDArray[np.float64]


def sample_posteriors(
    arms: Sequence[ArmStats], *, kind: RewardKind, rng: np.random.Generator, draws: int = 10_000
) -> NDArray[np.float64]:
    """Joint draws from the arms' independent posteriors.

    Returns
    -------
    ndarray, shape ``(draws, K)``
        Column ``k`` holds draws of arm ``k``'s mean reward :math:`\\theta_k`.
    """
    if draws < 1:
        msg = f"The number of posterior draws must be at least 1, but {draws!r} was given."
        raise InvalidInputError(msg)
    posts = posteriors(arms, kind=kind)
    betas = [p for p in posts if isinstance(p, BetaPosterior)]
    normals = [p for p in posts if isinstance(p, NormalPosterior)]
    # Draw arm by arm, shape (K, draws), so reductions over arms run along
    # contiguous memory; the transpose is a view.
    if betas:
        alpha = np.array([p.alpha for p in betas])
        beta = np.array([p.beta for p in betas])
        by_arm = rng.beta(alpha[:, None], beta[:, None], size=(len(betas), draws))
        return by_arm.T
    mean = np.array([p.mean for p in normals])
    sd = np.array([p.sd for p in normals])
    by_arm = mean[:, None] + sd[:, None] * rng.standard_normal((len(normals), draws))
    return by_arm.T


def summarize_draws(samples: NDArray[np.float64]) -> BayesSummary:
    """P(best) and expected loss from joint draws of shape ``(draws, K)``.

    .. math::

        P_k = \\frac{1}{D} \\sum_d \\frac{[\\theta_{dk} = \\max_j \\theta_{dj}]}
              {\\#\\{j : \\theta_{dj} = \\max_i \\theta_{di}\\}}, \\qquad
        L_k = \\frac{1}{D} \\sum_d \\big(\\max_j \\theta_{dj} - \\theta_{dk}\\big)

    A draw where several arms tie for the maximum counts as a fraction for each,
    so point-mass posteriors (no data, all rewards equal) split evenly.
    """
    if samples.shape[1] == 0:
        return BayesSummary(prob_best=np.zeros(0), expected_loss=np.zeros(0))
    by_arm = samples.T
    best = by_arm.max(axis=0)
    is_best = by_arm == best
    ties = is_best.sum(axis=0)
    prob: NDArray[np.float64] = (
        is_best.mean(axis=1) if np.all(ties == 1) else (is_best / ties).mean(axis=1)
    )
    return BayesSummary(
        prob_best=prob, expected_loss=np.maximum(best.mean() - by_arm.mean(axis=1), 0.0)
    )


def bayes_summary(
    arms: Sequence[ArmStats], *, kind: RewardKind, rng: np.random.Generator, draws: int = 10_000
) -> BayesSummary:
    """P(best) and expected loss of each arm from one set of ``draws`` joint draws."""
    return summarize_draws(sample_posteriors(arms, kind=kind, rng=rng, draws=draws))


def prob_best(
    arms: Sequence[ArmStats], *, kind: RewardKind, rng: np.random.Generator, draws: int = 10_000
) -> NDArray[np.float64]:
    """Posterior probability that each arm has the highest mean reward.

    :math:`P_k = \\Pr(\\theta_k = \\max_j \\theta_j \\mid \\text{data})`, estimated
    from ``draws`` joint posterior draws; ties split evenly.

    Returns
    -------
    ndarray, shape ``(K,)``, summing to 1.
    """
    return bayes_summary(arms, kind=kind, rng=rng, draws=draws).prob_best


def expected_loss(
    arms: Sequence[ArmStats], *, kind: RewardKind, rng: np.random.Generator, draws: int = 10_000
) -> NDArray[np.float64]:
    """Expected loss of choosing each arm, :math:`E[\\max_j \\theta_j - \\theta_k]`.

    Returns
    -------
    ndarray, shape ``(K,)``, non-negative; in reward units.
    """
    return bayes_summary(arms, kind=kind, rng=rng, draws=draws).expected_loss


def credible_intervals(
    arms: Sequence[ArmStats], *, kind: RewardKind, level: float = 0.95
) -> NDArray[np.float64]:
    """Equal-tailed credible interval of each arm's mean reward.

    Returns
    -------
    ndarray, shape ``(K, 2)``
        Columns are the lower and upper :math:`(1 \\mp \\text{level})/2` quantiles.
    """
    if not (0.0 < level < 1.0):
        msg = f"The credible level must be in (0, 1), but {level!r} was given."
        raise InvalidInputError(msg)
    bounds = [p.interval(level) for p in posteriors(arms, kind=kind)]
    return np.array(bounds, dtype=np.float64).reshape(len(bounds), 2)
