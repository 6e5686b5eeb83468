"""Additive sufficient statistics of one arm's rewards.

The lake keeps, per variant (and per allocation version or time bucket), three
running sums over the rows whose reward is known:

======== =========================== ==================
field    per-row contribution        combine
======== =========================== ==================
``n``    1                           ``+``
``sum``  reward                      ``+``
``sum_sq`` reward ** 2               ``+``
======== =========================== ==================

Partial aggregates from different files combine with ``+``; a discount factor
turns a sequence of buckets into one weighted aggregate for non-stationary
rewards (:func:`reduce_buckets`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from bandit.errors import InvalidInputError, InvalidStatsError

__all__ = ["ArmStats", "reduce_buckets"]


@dataclass(frozen=True)
class ArmStats:
    """Count, sum and sum of squares of one arm's rewards.

    ``n`` is a float so that discounted aggregates (weighted counts) keep the
    same type; undiscounted aggregates hold whole numbers.

    Parameters
    ----------
    n : float
        Number of rewarded requests, :math:`n = \\sum_i 1`.
    sum : float
        Sum of rewards, :math:`\\sum_i r_i`.
    sum_sq : float
        Sum of squared rewards, :math:`\\sum_i r_i^2`.
    """

    n: float = 0
    sum: float = 0.0
    sum_sq: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n", "sum", "sum_sq"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                msg = f"ArmStats.{name} must be a number, but {value!r} was given."
                raise InvalidStatsError(msg)
            if not math.isfinite(value):
                msg = f"ArmStats.{name} must be finite, but {value!r} was given."
                raise InvalidStatsError(msg)
        if self.n < 0:
            msg = f"ArmStats.n must be non-negative, but {self.n!r} was given."
            raise InvalidStatsError(msg)
        if self.sum_sq < 0:
            msg = f"ArmStats.sum_sq must be non-negative, but {self.sum_sq!r} was given."
            raise InvalidStatsError(msg)
        if self.n == 0 and (self.sum != 0 or self.sum_sq != 0):
            msg = (
                f"ArmStats with n = 0 must have sum = 0 and sum_sq = 0, "
                f"but sum = {self.sum!r} and sum_sq = {self.sum_sq!r} were given."
            )
            raise InvalidStatsError(msg)
        # Cauchy-Schwarz: n * sum_sq >= sum**2 for any rewards; the slack absorbs
        # rounding in sums the lake accumulated over many files.
        if self.n * self.sum_sq < self.sum * self.sum * (1 - 1e-9) - 1e-9:
            msg = (
                f"ArmStats(n={self.n!r}, sum={self.sum!r}, sum_sq={self.sum_sq!r}) is impossible: "
                f"n * sum_sq must be at least sum ** 2."
            )
            raise InvalidStatsError(msg)

    @classmethod
    def from_rewards(cls, rewards: Sequence[float]) -> ArmStats:
        """Aggregate raw rewards, shape ``(n,)``, into sufficient statistics."""
        values = [float(r) for r in rewards]
        return cls(n=len(values), sum=math.fsum(values), sum_sq=math.fsum(r * r for r in values))

    def __add__(self, other: ArmStats) -> ArmStats:
        if not isinstance(other, ArmStats):
            return NotImplemented
        return ArmStats(
            n=self.n + other.n, sum=self.sum + other.sum, sum_sq=self.sum_sq + other.sum_sq
        )

    def scaled(self, factor: float) -> ArmStats:
        """Return the statistics with every sum multiplied by ``factor`` (a discount weight)."""
        if not (math.isfinite(factor) and factor >= 0):
            msg = f"The scale factor must be finite and non-negative, but {factor!r} was given."
            raise InvalidInputError(msg)
        return ArmStats(n=self.n * factor, sum=self.sum * factor, sum_sq=self.sum_sq * factor)

    @property
    def mean(self) -> float:
        """Sample mean :math:`\\bar r = \\text{sum}/n`, defined as 0.0 when ``n = 0``."""
        return self.sum / self.n if self.n > 0 else 0.0

    @property
    def variance(self) -> float:
        """Sample variance with ``ddof = 1``, defined as 0.0 when ``n < 2``.

        :math:`s^2 = (\\text{sum\\_sq} - \\text{sum}^2 / n) / (n - 1)`, clipped at 0
        because cancellation can make the numerator slightly negative.
        """
        if self.n < 2:
            return 0.0
        return max((self.sum_sq - self.sum * self.sum / self.n) / (self.n - 1), 0.0)

    @property
    def std(self) -> float:
        """Sample standard deviation, :math:`\\sqrt{s^2}`."""
        return math.sqrt(self.variance)


def reduce_buckets(
    buckets: Sequence[ArmStats], *, discount: float = 1.0, window: int | None = None
) -> ArmStats:
    """Combine an arm's time buckets, oldest first, into one aggregate.

    Bucket :math:`j` of :math:`J` has age :math:`J - 1 - j` and weight
    :math:`\\gamma^{\\text{age}}`; only the newest ``window`` buckets count when a
    window is given:

    .. math:: S = \\sum_{j \\ge J - w} \\gamma^{J - 1 - j} S_j

    Parameters
    ----------
    buckets : sequence of ArmStats, length ``J``
        The arm's statistics per allocation version or time bucket, oldest first.
    discount : float
        :math:`\\gamma \\in (0, 1]`; 1.0 keeps every bucket at full weight.
    window : int or None
        Number of newest buckets to keep; ``None`` keeps them all.
    """
    if not (0.0 < discount <= 1.0):
        msg = f"The discount must be in (0, 1], but {discount!r} was given."
        raise InvalidInputError(msg)
    if window is not None and window < 1:
        msg = f"The window must be a positive number of buckets, but {window!r} was given."
        raise InvalidInputError(msg)
    kept = list(buckets) if window is None else list(buckets)[-window:]
    total = ArmStats()
    for age, bucket in enumerate(reversed(kept)):
        total = total + (bucket if discount == 1.0 else bucket.scaled(discount**age))
    return total
