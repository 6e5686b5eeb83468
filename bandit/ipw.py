"""Per-arm values from bandit-collected data: IPW and AIPW with confidence intervals.

When an adaptive policy chose the arm, the arm's plain sample mean is biased and
its naive interval under-covers. Weighting each reward by the inverse of the
logged propensity restores unbiasedness: with :math:`N` requests, :math:`a_t`
the arm chosen at request :math:`t`, :math:`\\pi_t(k)` the probability it had of
choosing arm :math:`k` and :math:`w_t = 1/\\pi_t(k)`,

.. math:: \\hat\\mu_k^{\\text{IPW}} = \\frac1N \\sum_{t=1}^N [a_t = k]\\, w_t r_t .

The estimators need only these additive sums, kept per arm :math:`k` (and,
for AIPW, per stratum such as an allocation version):

============ ======================================================= =======
field        per-row contribution                                    combine
============ ======================================================= =======
``n_total``  1 for *every* request with an observed reward, any arm  ``+``
``n``        1 for a row routed to arm k                             ``+``
``sum_w``    w for a row routed to arm k                             ``+``
``sum_wr``   w r                                                     ``+``
``sum_w2``   w²                                                      ``+``
``sum_w2r``  w² r                                                    ``+``
``sum_w2r2`` w² r²                                                   ``+``
``max_w``    w                                                       ``max``
============ ======================================================= =======

Rows routed to other arms contribute only to ``n_total``. The propensity must
be the logged probability of the arm actually chosen (the allocation weight in
force), never 1/K; keeping every propensity above a floor (``min_weight``) keeps
the weights, and so the variance, bounded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scipy import stats as sps
else:
    from bandit._lazy import scipy_stats as sps

from bandit.errors import InvalidInputError, InvalidStatsError

__all__ = [
    "Difference",
    "Estimate",
    "IpwStats",
    "aipw_difference",
    "aipw_estimate",
    "ipw_difference",
    "ipw_estimate",
]


@dataclass(frozen=True)
class IpwStats:
    """Additive inverse-propensity sums of one arm (see the module docstring)."""

    n_total: float = 0
    n: float = 0
    sum_w: float = 0.0
    sum_wr: float = 0.0
    sum_w2: float = 0.0
    sum_w2r: float = 0.0
    sum_w2r2: float = 0.0
    max_w: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n_total", "n", "sum_w", "sum_wr", "sum_w2", "sum_w2r", "sum_w2r2", "max_w"):
            value = getattr(self, name)
            if not math.isfinite(value):
                msg = f"IpwStats.{name} must be finite, but {value!r} was given."
                raise InvalidStatsError(msg)
        for name in ("n_total", "n", "sum_w", "sum_w2", "sum_w2r2", "max_w"):
            if getattr(self, name) < 0:
                msg = (
                    f"IpwStats.{name} must be non-negative, but {getattr(self, name)!r} was given."
                )
                raise InvalidStatsError(msg)
        if self.n > self.n_total:
            msg = (
                f"IpwStats.n ({self.n!r} rows routed to the arm) cannot exceed "
                f"n_total ({self.n_total!r} rows in all)."
            )
            raise InvalidStatsError(msg)
        if self.n > 0 and self.max_w < 1.0:
            msg = f"Inverse propensities are at least 1, but IpwStats.max_w is {self.max_w!r}."
            raise InvalidStatsError(msg)

    @classmethod
    def from_rows(
        cls, *, n_total: int, rewards: Sequence[float], propensities: Sequence[float]
    ) -> IpwStats:
        """Aggregate the rows routed to one arm, shapes ``(n,)``, among ``n_total`` requests."""
        if len(rewards) != len(propensities):
            msg = (
                f"Rewards and propensities must have the same length, but {len(rewards)} "
                f"rewards and {len(propensities)} propensities were given."
            )
            raise InvalidInputError(msg)
        w = []
        for p in propensities:
            if not (0.0 < p <= 1.0):
                msg = f"Every propensity must be in (0, 1], but {p!r} was given."
                raise InvalidInputError(msg)
            w.append(1.0 / p)
        r = [float(x) for x in rewards]
        return cls(
            n_total=n_total,
            n=len(r),
            sum_w=math.fsum(w),
            sum_wr=math.fsum(wi * ri for wi, ri in zip(w, r, strict=True)),
            sum_w2=math.fsum(wi * wi for wi in w),
            sum_w2r=math.fsum(wi * wi * ri for wi, ri in zip(w, r, strict=True)),
            sum_w2r2=math.fsum((wi * ri) ** 2 for wi, ri in zip(w, r, strict=True)),
            max_w=max(w, default=0.0),
        )

    def __add__(self, other: IpwStats) -> IpwStats:
        if not isinstance(other, IpwStats):
            return NotImplemented
        return IpwStats(
            n_total=self.n_total + other.n_total,
            n=self.n + other.n,
            sum_w=self.sum_w + other.sum_w,
            sum_wr=self.sum_wr + other.sum_wr,
            sum_w2=self.sum_w2 + other.sum_w2,
            sum_w2r=self.sum_w2r + other.sum_w2r,
            sum_w2r2=self.sum_w2r2 + other.sum_w2r2,
            max_w=max(self.max_w, other.max_w),
        )

    @property
    def ess(self) -> float:
        """Kish effective sample size of the arm's weights, :math:`(\\sum w)^2 / \\sum w^2`."""
        return self.sum_w**2 / self.sum_w2 if self.sum_w2 > 0 else 0.0


@dataclass(frozen=True)
class Estimate:
    """An arm's estimated value with a normal-approximation confidence interval.

    Attributes
    ----------
    value : float
        Point estimate; 0.0 when no row was routed to the arm.
    std_error : float
        Standard error; ``inf`` when it cannot be estimated (no row routed to
        the arm, or fewer than two requests in all).
    ci_low, ci_high : float
        :math:`\\text{value} \\mp z_{1-\\alpha/2}\\,\\text{std\\_error}`.
    ess : float
        Kish effective sample size of the arm's importance weights.
    max_weight : float
        Largest importance weight, :math:`\\max 1/\\pi`.
    n : float
        Rows routed to the arm.
    n_total : float
        Requests in all.
    """

    value: float
    std_error: float
    ci_low: float
    ci_high: float
    ess: float
    max_weight: float
    n: float
    n_total: float


def _estimate(total: float, total_sq: float, stats: IpwStats, alpha: float) -> Estimate:
    if not (0.0 < alpha < 1.0):
        msg = f"The significance level alpha must be in (0, 1), but {alpha!r} was given."
        raise InvalidInputError(msg)
    big_n = stats.n_total
    if stats.n == 0 or big_n < 2:
        value = total / big_n if stats.n > 0 else 0.0
        return Estimate(
            value, math.inf, -math.inf, math.inf, stats.ess, stats.max_w, stats.n, big_n
        )
    value = total / big_n
    variance = max((total_sq - big_n * value * value) / (big_n - 1), 0.0)
    se = math.sqrt(variance / big_n)
    half = float(sps.norm.isf(alpha / 2)) * se
    return Estimate(value, se, value - half, value + half, stats.ess, stats.max_w, stats.n, big_n)


def ipw_estimate(stats: IpwStats, *, alpha: float = 0.05) -> Estimate:
    """Inverse-propensity-weighted value of one arm with a Wald interval.

    With :math:`Y_t = [a_t = k]\\, w_t r_t` over all :math:`N` requests,

    .. math::

        \\hat\\mu = \\frac{\\sum w r}{N}, \\qquad
        \\widehat{\\mathrm{se}}^2 = \\frac{1}{N}\\cdot\\frac{\\sum w^2 r^2 - N \\hat\\mu^2}{N - 1}.
    """
    return _estimate(stats.sum_wr, stats.sum_w2r2, stats, alpha)


def aipw_estimate(strata: Sequence[tuple[IpwStats, float]], *, alpha: float = 0.05) -> Estimate:
    """Augmented IPW (doubly robust) value of one arm with a Wald interval.

    Each stratum :math:`s` (an allocation version, say) comes with an outcome
    estimate :math:`\\hat q_s` of the arm's mean computed from data *before*
    the stratum, which keeps the scores a martingale difference sequence on
    adaptively collected data. The score of request :math:`t` in stratum
    :math:`s` is :math:`\\Gamma_t = \\hat q_s + [a_t = k]\\, w_t (r_t - \\hat q_s)`, whose
    sums follow from the stratum's :class:`IpwStats`:

    .. math::

        \\sum_t \\Gamma_t &= N_s \\hat q_s + \\textstyle\\sum w r - \\hat q_s \\sum w, \\\\
        \\sum_t \\Gamma_t^2 &= N_s \\hat q_s^2 + 2 \\hat q_s \\big(\\textstyle\\sum w r
            - \\hat q_s \\sum w\\big) + \\sum w^2 r^2 - 2 \\hat q_s \\sum w^2 r
            + \\hat q_s^2 \\sum w^2 .

    The estimate is :math:`\\sum \\Gamma / N` with the standard error of a mean
    of the :math:`N` scores.

    Parameters
    ----------
    strata : sequence of (IpwStats, float)
        Each stratum's sums and its predictable outcome estimate :math:`\\hat q_s`.
    """
    total = total_sq = 0.0
    combined = IpwStats()
    for stats, q in strata:
        s1, s2 = _score_sums(stats, q)
        total += s1
        total_sq += s2
        combined = combined + stats
    return _estimate(total, total_sq, combined, alpha)


def _score_sums(stats: IpwStats, q: float) -> tuple[float, float]:
    """Sums of one stratum's AIPW scores and squared scores (see :func:`aipw_estimate`)."""
    if not math.isfinite(q):
        msg = f"Every outcome estimate q must be finite, but {q!r} was given."
        raise InvalidInputError(msg)
    resid = stats.sum_wr - q * stats.sum_w
    total = stats.n_total * q + resid
    total_sq = (
        stats.n_total * q * q
        + 2 * q * resid
        + stats.sum_w2r2
        - 2 * q * stats.sum_w2r
        + q * q * stats.sum_w2
    )
    return total, total_sq


@dataclass(frozen=True)
class Difference:
    """Treatment value minus control value from the same requests, with a Wald test.

    ``p_value`` is two-sided for :math:`H_0`: equal values. Without rows for
    either arm, or fewer than two requests, ``diff`` is 0.0, the p-value 1.0
    and the interval ``(-inf, inf)``.
    """

    diff: float
    std_error: float
    ci_low: float
    ci_high: float
    statistic: float
    p_value: float


def aipw_difference(
    control: Sequence[tuple[IpwStats, float]],
    treatment: Sequence[tuple[IpwStats, float]],
    *,
    alpha: float = 0.05,
) -> Difference:
    """AIPW estimate of treatment minus control with its Wald interval and test.

    Both arms' strata pair up (same requests, so equal ``n_total``). Per
    request the score of the difference is :math:`D_t = \\Gamma^T_t - \\Gamma^C_t`;
    because one request goes to one arm,
    :math:`\\Gamma^T_t \\Gamma^C_t = \\hat q^T \\hat q^C + \\hat q^T [a_t = C] w_t (r_t - \\hat q^C)
    + \\hat q^C [a_t = T] w_t (r_t - \\hat q^T)`, so :math:`\\sum D_t^2` also
    follows from the additive sums. With :math:`\\hat q = 0` this is the IPW
    difference (:func:`ipw_difference`).

    .. math::

        \\hat\\Delta = \\frac1N \\sum_t D_t, \\qquad
        \\widehat{\\mathrm{se}}^2 = \\frac{1}{N} \\cdot
            \\frac{\\sum_t D_t^2 - N\\hat\\Delta^2}{N - 1}.
    """
    if not (0.0 < alpha < 1.0):
        msg = f"The significance level alpha must be in (0, 1), but {alpha!r} was given."
        raise InvalidInputError(msg)
    if len(control) != len(treatment):
        msg = (
            f"Control and treatment need the same strata, but {len(control)} and "
            f"{len(treatment)} strata were given."
        )
        raise InvalidInputError(msg)
    total = total_sq = big_n = 0.0
    routed_c = routed_t = 0.0
    for (c_stats, q_c), (t_stats, q_t) in zip(control, treatment, strict=True):
        if c_stats.n_total != t_stats.n_total:
            msg = (
                f"Paired strata must count the same requests, but n_total is "
                f"{c_stats.n_total!r} for the control and {t_stats.n_total!r} for the treatment."
            )
            raise InvalidInputError(msg)
        c1, c2 = _score_sums(c_stats, q_c)
        t1, t2 = _score_sums(t_stats, q_t)
        cross = (
            t_stats.n_total * q_t * q_c
            + q_t * (c_stats.sum_wr - q_c * c_stats.sum_w)
            + q_c * (t_stats.sum_wr - q_t * t_stats.sum_w)
        )
        total += t1 - c1
        total_sq += t2 + c2 - 2 * cross
        big_n += t_stats.n_total
        routed_c += c_stats.n
        routed_t += t_stats.n
    if routed_c == 0 or routed_t == 0 or big_n < 2:
        return Difference(0.0, math.inf, -math.inf, math.inf, 0.0, 1.0)
    diff = total / big_n
    se = math.sqrt(max((total_sq - big_n * diff * diff) / (big_n - 1), 0.0) / big_n)
    if se == 0.0:
        if diff == 0.0:
            return Difference(0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
        return Difference(diff, 0.0, diff, diff, math.copysign(math.inf, diff), 0.0)
    half = float(sps.norm.isf(alpha / 2)) * se
    statistic = diff / se
    return Difference(
        diff, se, diff - half, diff + half, statistic, float(2 * sps.norm.sf(abs(statistic)))
    )


def ipw_difference(control: IpwStats, treatment: IpwStats, *, alpha: float = 0.05) -> Difference:
    """IPW estimate of treatment minus control over the same requests, with a Wald test.

    .. math::

        \\hat\\Delta = \\frac{\\sum_T w r - \\sum_C w r}{N}, \\qquad
        \\widehat{\\mathrm{se}}^2 = \\frac1N \\cdot
            \\frac{\\sum_T w^2 r^2 + \\sum_C w^2 r^2 - N \\hat\\Delta^2}{N - 1}.
    """
    return aipw_difference([(control, 0.0)], [(treatment, 0.0)], alpha=alpha)
