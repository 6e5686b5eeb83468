"""Posterior distributions of each arm's mean reward.

Binary rewards
    Beta-Bernoulli with a uniform Beta(1, 1) prior:
    :math:`\\theta_k \\mid \\text{data} \\sim \\mathrm{Beta}(1 + s_k, 1 + n_k - s_k)`.

Continuous rewards
    A normal approximation with a unit-information prior. Pooling every arm's
    rewards gives the grand mean :math:`m_0` and variance :math:`v_0`; each
    arm's mean has the prior :math:`N(m_0, v_0)`, worth one observation, and
    the likelihood :math:`\\bar r_k \\sim N(\\mu_k, \\sigma_k^2 / n_k)` with
    :math:`\\sigma_k^2` the arm's sample variance (:math:`v_0` when the arm has
    fewer than two rewards or none that differ). The posterior is normal with

    .. math::

        \\tau_k = 1 / v_0 + n_k / \\sigma_k^2, \\qquad
        \\mu_k \\mid \\text{data} \\sim N\\big((m_0 / v_0 + s_k / \\sigma_k^2) / \\tau_k,\\;
        1 / \\tau_k\\big).

    The prior keeps arms without data defined and is negligible once an arm has
    more than a handful of rewards. When :math:`v_0 = 0` (no data, or every
    reward equal) every posterior is a point mass at :math:`m_0`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from scipy import stats as sps
else:
    from bandit._lazy import scipy_stats as sps

from bandit.errors import InvalidInputError, InvalidStatsError
from bandit.stats import ArmStats

__all__ = [
    "BetaPosterior",
    "NormalPosterior",
    "Posterior",
    "RewardKind",
    "check_binary",
    "posteriors",
]

RewardKind = Literal["binary", "continuous"]

# Rounding in sums accumulated over many files may push sum a hair past n.
_BINARY_SLACK = 1e-9


@dataclass(frozen=True)
class BetaPosterior:
    """Beta(``alpha``, ``beta``) posterior of a success probability."""

    alpha: float
    beta: float

    @property
    def mean(self) -> float:
        """Posterior mean :math:`\\alpha / (\\alpha + \\beta)`."""
        return self.alpha / (self.alpha + self.beta)

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Equal-tailed credible interval holding ``level`` of the posterior mass."""
        low, high = sps.beta.ppf([(1 - level) / 2, (1 + level) / 2], self.alpha, self.beta)
        return float(low), float(high)

    def sample(self, rng: np.random.Generator, size: int) -> NDArray[np.float64]:
        """Draw ``size`` values, shape ``(size,)``."""
        return rng.beta(self.alpha, self.beta, size=size)


@dataclass(frozen=True)
class NormalPosterior:
    """Normal posterior of a mean reward; ``sd = 0`` is a point mass."""

    mean: float
    sd: float

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Equal-tailed credible interval holding ``level`` of the posterior mass."""
        if self.sd == 0.0:
            return self.mean, self.mean
        low, high = sps.norm.ppf([(1 - level) / 2, (1 + level) / 2], self.mean, self.sd)
        return float(low), float(high)

    def sample(self, rng: np.random.Generator, size: int) -> NDArray[np.float64]:
        """Draw ``size`` values, shape ``(size,)``."""
        return self.mean + self.sd * rng.standard_normal(size)


Posterior = BetaPosterior | NormalPosterior


def check_binary(arms: Sequence[ArmStats]) -> None:
    """Raise unless every arm's rewards can be 0/1 values (``0 <= sum <= n``)."""
    for index, arm in enumerate(arms):
        slack = _BINARY_SLACK * max(arm.n, 1.0)
        if arm.sum < -slack or arm.sum > arm.n + slack:
            msg = (
                f"Binary rewards need 0 <= sum <= n, but arm {index} has "
                f"n = {arm.n!r} and sum = {arm.sum!r}."
            )
            raise InvalidStatsError(msg)


def posteriors(arms: Sequence[ArmStats], *, kind: RewardKind) -> list[Posterior]:
    """Posterior of each arm's mean reward (see the module docstring for the model).

    Parameters
    ----------
    arms : sequence of ArmStats, length ``K``
    kind : {"binary", "continuous"}

    Returns
    -------
    list of BetaPosterior or NormalPosterior, length ``K``
    """
    if kind == "binary":
        check_binary(arms)
        return [
            BetaPosterior(
                alpha=1.0 + min(max(arm.sum, 0.0), arm.n),
                beta=1.0 + arm.n - min(max(arm.sum, 0.0), arm.n),
            )
            for arm in arms
        ]
    if kind == "continuous":
        return list(_normal_posteriors(arms))
    msg = f"The reward kind must be 'binary' or 'continuous', but {kind!r} was given."
    raise InvalidInputError(msg)


def _normal_posteriors(arms: Sequence[ArmStats]) -> list[NormalPosterior]:
    pooled = ArmStats()
    for arm in arms:
        pooled = pooled + arm
    m0, v0 = pooled.mean, pooled.variance
    if v0 == 0.0:
        return [NormalPosterior(mean=m0, sd=0.0) for _ in arms]
    result = []
    for arm in arms:
        sigma2 = arm.variance if arm.n >= 2 and arm.variance > 0.0 else v0
        precision = 1.0 / v0 + arm.n / sigma2
        mean = (m0 / v0 + arm.sum / sigma2) / precision
        result.append(NormalPosterior(mean=mean, sd=float(np.sqrt(1.0 / precision))))
    return result
