"""Intervals that stay valid on adaptively collected data: arm values and differences.

When a bandit moves traffic while the data come in, the classical intervals (the
sample mean's Wald interval, and the IPW interval) lose their coverage: the usual
central-limit argument fails when an arm's propensity shrinks with the data. Two
families of estimators recover it; both need only sums kept per arm and allocation
version (a *batch*: the stretch of requests served under one allocation, whose
propensities were fixed before it started).

**Adaptively weighted AIPW** (Hadad, Hirshberg, Zhan, Wager & Athey 2021, "Confidence
intervals for policy evaluation in adaptive experiments", *PNAS* 118(15)). Request
:math:`t` of batch :math:`b` gets the augmented score of arm :math:`k`

.. math:: \\Gamma_t = \\hat q_b + \\frac{[a_t = k]}{e_b} (r_t - \\hat q_b),

where :math:`e_b` is the arm's propensity in the batch and :math:`\\hat q_b` its mean
reward over the batches *before* :math:`b` (0 before any data), so the scores are a
martingale difference sequence around the arm's value :math:`\\mu`. The estimate weights
them with the variance-stabilising weights :math:`h_b = \\sqrt{e_b}`:

.. math::

    \\hat\\mu = \\frac{\\sum_t h_t \\Gamma_t}{\\sum_t h_t}, \\qquad
    \\widehat{\\mathrm{se}}^2 = \\frac{N}{N-1}\\,
        \\frac{\\sum_t h_t^2 (\\Gamma_t - \\hat\\mu)^2}{(\\sum_t h_t)^2},

and :math:`(\\hat\\mu - \\mu) / \\widehat{\\mathrm{se}} \\to N(0, 1)` although the
propensities depend on the data (the weights make each batch's conditional variance
comparable, which is what the martingale central limit theorem needs). A difference
against the control uses the two arms' estimates and the variance of the difference of
their linearisations, :math:`\\sum_t (u^k_t - u^c_t)^2` with
:math:`u^k_t = h^k_t (\\Gamma^k_t - \\hat\\mu_k) / \\sum h^k`. With a constant
propensity the weights are constant and this is the plain AIPW estimate
(:func:`bandit.ipw.aipw_estimate`) exactly.

**Binary rewards.** With a rare outcome a starved arm has few successes, and a Wald
interval around the estimate is lopsided (the variance estimate shrinks with the
estimate). For binary rewards the arm's interval therefore inverts the score test, as
Wilson's interval does for a proportion: the conditional variance of a score is
:math:`\\sigma^2/e_b + (\\mu - \\hat q_b)^2 (1/e_b - 1)` with :math:`\\sigma^2 = \\mu(1-\\mu)`,
so :math:`(\\hat\\mu - \\mu)^2 \\le z^2\\, V(\\mu)` with

.. math:: V(\\mu) = \\frac{\\sum_b N_b \\big(\\mu(1-\\mu) + (1 - e_b)(\\mu - \\hat q_b)^2\\big)}
          {(\\sum_b h_b N_b)^2}

is a quadratic inequality in :math:`\\mu`, solved in closed form. A difference's interval
inverts its score test the same way (:func:`score_difference_arrays`: the variance of
the difference evaluated at the hypothesised means, quadratic in the difference), and
its p-value is that test at 0, as the pooled two-proportion z-test is for fixed splits;
the interval and the test therefore agree. Continuous rewards use the Wald forms above.

**Batched OLS** (Zhang, Janson & Murphy 2020, "Inference for batched bandits",
*NeurIPS*). Within a batch the allocation is fixed, so each batch's arm mean is a
classical estimate; normalising each batch by its own standard error and summing gives
a statistic that is :math:`N(0, 1)` whatever the allocation did between batches:

.. math::

    \\frac{1}{\\sqrt{B}} \\sum_b \\frac{\\sqrt{n_b}\\,(\\bar r_b - \\mu)}{\\hat\\sigma}
    \\;\\Rightarrow\\; \\hat\\mu = \\frac{\\sum_b \\sqrt{n_b}\\,\\bar r_b}{\\sum_b \\sqrt{n_b}},
    \\quad \\text{half-width } z_{1-\\alpha/2}
        \\frac{\\hat\\sigma \\sqrt{B}}{\\sum_b \\sqrt{n_b}},

over the :math:`B` batches in which the arm was served, with the arm's pooled
within-batch standard deviation :math:`\\hat\\sigma` (a per-batch one is zero for a
Bernoulli arm with no success in a small batch). Differences normalise each batch's
difference of means the same way.

**The default is adaptively weighted AIPW** (with the score forms for binary rewards).
In 10,000 simulated experiments of batched Thompson sampling (arms 0.05/0.06/0.07,
20,000 requests in 20 batches, floor 0.02) its Wald form covered the starved arm in
93.8% and batched OLS in 94.0% (both miss mostly on one side: few successes make the
estimate and its variance small together), while the score form covered every arm in
95.1-95.3% with both tails near 2.5%; for normal rewards (5 arms) the Wald forms of both
estimators covered 94.7-95.2%, batched OLS giving no narrower intervals. Batched OLS
also needs every arm in every batch for its per-batch normalisation.
``tests/bandit/test_adaptive_coverage.py`` keeps these properties on 2,000 experiments
per scenario, with the classical intervals' coverage printed beside them.

Sequential use: :func:`adaptive_msprt` applies the mixture SPRT of
:mod:`bandit.sequential` to the AIPW difference. Its statistic is built on a
martingale whatever the allocation, so its p-values stay valid at any number of looks
(asymptotically, with the variance estimated); the simulation checks it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from scipy import stats as sps
else:
    from bandit._lazy import scipy_stats as sps

from bandit.errors import InvalidInputError
from bandit.sequential import SequentialResult, mixture_test

__all__ = [
    "ESTIMATORS",
    "AdaptiveDifference",
    "AdaptiveEstimate",
    "AdaptiveIntervals",
    "BatchStats",
    "adaptive_intervals",
    "adaptive_msprt",
    "aw_aipw_arrays",
    "batched_ols_arrays",
    "intervals_from_batches",
    "score_difference_arrays",
    "wilson_aw_arrays",
]

Estimator = Literal["aw_aipw", "batched_ols"]
ESTIMATORS: tuple[Estimator, ...] = ("aw_aipw", "batched_ols")
"""The estimators by name; the first is the default."""

_F = NDArray[np.float64]


@dataclass(frozen=True)
class BatchStats:
    """Sums per batch and arm, arrays of shape ``(..., n_batches, n_arms)``.

    Leading dimensions, if any, are independent experiments (the simulations use them).

    Attributes
    ----------
    n_total : array, shape ``(..., n_batches)``
        Requests of the batch (with an observed reward), whatever arm served them.
    n, sum_r, sum_r2 : arrays, shape ``(..., n_batches, n_arms)``
        Requests served by the arm in the batch, and the sums of their rewards and
        squared rewards.
    propensity : array, shape ``(..., n_batches, n_arms)``
        The arm's probability of being chosen in the batch (its allocation weight);
        0 for an arm that could not be chosen.
    """

    n_total: _F
    n: _F
    sum_r: _F
    sum_r2: _F
    propensity: _F

    @classmethod
    def from_arrays(
        cls,
        *,
        n_total: ArrayLike,
        n: ArrayLike,
        sum_r: ArrayLike,
        sum_r2: ArrayLike,
        propensity: ArrayLike,
    ) -> BatchStats:
        """Validated stats from array-likes (the shapes and ranges are checked)."""
        arrays = {
            name: np.asarray(value, dtype=np.float64)
            for name, value in {
                "n": n,
                "sum_r": sum_r,
                "sum_r2": sum_r2,
                "propensity": propensity,
            }.items()
        }
        total = np.asarray(n_total, dtype=np.float64)
        shape = arrays["n"].shape
        if len(shape) < 2:
            msg = f"n must have shape (..., n_batches, n_arms), but its shape is {shape}."
            raise InvalidInputError(msg)
        for name, value in arrays.items():
            if value.shape != shape:
                msg = f"{name} must have the shape of n, {shape}, but its shape is {value.shape}."
                raise InvalidInputError(msg)
            if not np.all(np.isfinite(value)):
                msg = f"Every value of {name} must be finite."
                raise InvalidInputError(msg)
        if total.shape != shape[:-1]:
            msg = f"n_total must have shape {shape[:-1]}, but its shape is {total.shape}."
            raise InvalidInputError(msg)
        e = arrays["propensity"]
        if np.any((e < 0) | (e > 1)):
            msg = "Every propensity must be in [0, 1]."
            raise InvalidInputError(msg)
        if np.any(arrays["n"] < 0) or np.any(total < arrays["n"].sum(axis=-1) - 1e-9):
            msg = "Counts must be non-negative and n_total at least the batch's routed rows."
            raise InvalidInputError(msg)
        if np.any((arrays["n"] > 0) & (e == 0)):
            msg = "An arm served rows in a batch where its propensity is 0."
            raise InvalidInputError(msg)
        return cls(total, arrays["n"], arrays["sum_r"], arrays["sum_r2"], e)


@dataclass(frozen=True)
class AdaptiveEstimate:
    """One arm's value with its confidence interval."""

    value: float
    std_error: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class AdaptiveDifference:
    """An arm's value minus the control's, with its interval and two-sided test."""

    diff: float
    std_error: float
    ci_low: float
    ci_high: float
    statistic: float
    p_value: float


@dataclass(frozen=True)
class AdaptiveIntervals:
    """Per arm values and, for every other arm, the difference against the control.

    Attributes
    ----------
    estimator : {"aw_aipw", "batched_ols"}
    arms : tuple of AdaptiveEstimate
        One per arm, in arm order.
    control : int
        Index of the control arm.
    differences : dict of int to AdaptiveDifference
        Arm index to (arm - control), for every arm but the control.
    """

    estimator: Estimator
    arms: tuple[AdaptiveEstimate, ...]
    control: int
    differences: dict[int, AdaptiveDifference]


# -- vectorised cores: arrays over experiments, batches and arms --------------------


def _prior_means(n: _F, sum_r: _F) -> _F:
    """Each batch's predictable outcome estimate: the arm's mean over earlier batches."""
    cum_n = np.cumsum(n, axis=-2) - n
    cum_s = np.cumsum(sum_r, axis=-2) - sum_r
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cum_n > 0, cum_s / np.where(cum_n > 0, cum_n, 1.0), 0.0)


def aw_aipw_arrays(stats: BatchStats) -> tuple[_F, _F, _F]:
    """Adaptively weighted AIPW values, their variances and the difference covariances.

    Returns
    -------
    value : array ``(..., n_arms)``
    variance : array ``(..., n_arms)``
    covariance : array ``(..., n_arms, n_arms)``
        Of the arms' linearisations; the variance of a difference ``k - c`` is
        ``variance[k] + variance[c] - 2 covariance[k, c]``.
    """
    n, s, ss, e = stats.n, stats.sum_r, stats.sum_r2, stats.propensity
    big_n = stats.n_total[..., None]
    q = _prior_means(n, s)
    served = e > 0
    w = np.where(served, 1.0 / np.where(served, e, 1.0), 0.0)
    h = np.sqrt(e)
    resid = s - n * q  # sum over the arm's rows of (r - q)
    s1 = big_n * q + w * resid  # sum of the batch's scores
    s2 = big_n * q * q + 2 * q * w * resid + w * w * (ss - 2 * q * s + n * q * q)
    hn = (h * big_n).sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (h * s1).sum(axis=-2) / hn
        c = q - value[..., None, :]  # per batch, q_b - value
        # sum over the batch of (score - value)^2
        centred = s2 - 2 * value[..., None, :] * s1 + big_n * value[..., None, :] ** 2
        total = stats.n_total.sum(axis=-1)[..., None]
        correction = total / (total - 1)
        variance = (h * h * centred).sum(axis=-2) / hn**2 * correction
        # Cross sums over the batch of (score_k - value_k)(score_j - value_j), k != j:
        # big_n c_k c_j + c_k w_j resid_j + c_j w_k resid_k (one request, one arm).
        wr = w * resid
        cross = (
            big_n[..., None] * c[..., :, None] * c[..., None, :]
            + c[..., :, None] * wr[..., None, :]
            + c[..., None, :] * wr[..., :, None]
        )
        hh = h[..., :, None] * h[..., None, :]
        covariance = (hh * cross).sum(axis=-3) / (hn[..., :, None] * hn[..., None, :])
        covariance = covariance * correction[..., None]
    return value, variance, covariance


def batched_ols_arrays(stats: BatchStats) -> tuple[_F, _F, _F, _F]:
    """Batched OLS values and half-widths per unit z, and the same for differences.

    Returns
    -------
    value, scale : arrays ``(..., n_arms)``
        ``value ± z * scale`` is the interval.
    diff, diff_scale : arrays ``(..., n_arms, n_arms)``
        For arm ``k`` against arm ``c``: ``diff[..., k, c]``.
    """
    n, s, ss = stats.n, stats.sum_r, stats.sum_r2
    served = n > 0
    safe_n = np.where(served, n, 1.0)
    mean_b = np.where(served, s / safe_n, 0.0)
    within = np.where(served, ss - s * s / safe_n, 0.0)
    dof = (n - served).sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma2 = np.maximum(within.sum(axis=-2), 0.0) / dof
        root = np.sqrt(n)
        batches = served.sum(axis=-2)
        value = (root * mean_b).sum(axis=-2) / root.sum(axis=-2)
        scale = np.sqrt(sigma2 * batches) / root.sum(axis=-2)
        # Differences: per batch where both arms were served, normalised by its sd.
        both = served[..., :, None] & served[..., None, :]
        inv_n = np.where(served, 1.0 / safe_n, 0.0)
        v_b = sigma2[..., None, :, None] * inv_n[..., :, None] + (
            sigma2[..., None, None, :] * inv_n[..., None, :]
        )
        inv_sd = np.where(both, 1.0 / np.sqrt(np.where(both, v_b, 1.0)), 0.0)
        d_b = mean_b[..., :, None] - mean_b[..., None, :]
        diff = (inv_sd * d_b).sum(axis=-3) / inv_sd.sum(axis=-3)
        diff_scale = np.sqrt(both.sum(axis=-3)) / inv_sd.sum(axis=-3)
    return value, scale, diff, diff_scale


# -- the public entry points --------------------------------------------------------


def wilson_aw_arrays(stats: BatchStats, value: _F, z: float) -> tuple[_F, _F]:
    r"""The score (Wilson-type) interval of each arm's AIPW value, for binary rewards.

    Solves :math:`(\hat\mu - \mu)^2 \le z^2 V(\mu)` (module docstring) for
    :math:`\mu`; arrays of shape ``(..., n_arms)``.
    """
    n, e = stats.n, stats.propensity
    big_n = stats.n_total[..., None] * (e > 0)
    q = _prior_means(n, stats.sum_r)
    hn = (np.sqrt(e) * big_n).sum(axis=-2)
    a = big_n.sum(axis=-2)  # the coefficient of mu (1 - mu)
    c = (big_n * (1 - e)).sum(axis=-2)
    d = (big_n * (1 - e) * q).sum(axis=-2)
    f = (big_n * (1 - e) * q * q).sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        k2 = z * z / hn**2
        # (value - mu)^2 - k2 (a mu - a mu^2 + c mu^2 - 2 d mu + f) <= 0
        a2 = 1 - k2 * (c - a)
        a1 = -2 * value - k2 * (a - 2 * d)
        a0 = value * value - k2 * f
        root = np.sqrt(np.maximum(a1 * a1 - 4 * a2 * a0, 0.0))
        low = (-a1 - root) / (2 * a2)
        high = (-a1 + root) / (2 * a2)
    return np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)


def score_difference_arrays(
    stats: BatchStats, value: _F, variance: _F, arm: int, control: int, z: float
) -> tuple[_F, _F, _F]:
    r"""The score interval of an AIPW difference for binary rewards, and its null variance.

    Under :math:`H_\Delta` the two arms' means are :math:`\mu_c = \bar\mu - \pi\Delta`
    and :math:`\mu_k = \mu_c + \Delta`, where :math:`\bar\mu` is the two estimates'
    inverse-variance-weighted mean and :math:`\pi` the arm's share of that weight. The
    variance :math:`V(\Delta)` of the difference's linearisation, evaluated there
    (per batch, each score's conditional variance
    :math:`\mu(1-\mu)/e_b + (\mu - \hat q_b)^2 (1/e_b - 1)` and their covariance
    :math:`-(\hat q^k_b - \mu_k)(\hat q^c_b - \mu_c)`), is quadratic in :math:`\Delta`, so
    :math:`(\hat\Delta - \Delta)^2 \le z^2 V(\Delta)` is solved in closed form; the
    test of :math:`H_0` uses :math:`V(0)`.

    Returns
    -------
    low, high, null_variance : arrays of shape ``(...)``
    """
    n, s, e = stats.n, stats.sum_r, stats.propensity
    big_n = stats.n_total
    q = _prior_means(n, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        info_k, info_c = 1.0 / variance[..., arm], 1.0 / variance[..., control]
        share = info_k / (info_k + info_c)
        centre = share * value[..., arm] + (1 - share) * value[..., control]

        def parts(j: int, m: _F) -> tuple[_F, _F]:
            ej = e[..., j]
            served = ej > 0
            inv = np.where(served, 1.0 / np.where(served, ej, 1.0), 0.0)
            weight = np.sqrt(ej) / (np.sqrt(ej) * big_n).sum(axis=-1)[..., None]
            var = np.where(served, m * (1 - m) * inv + (m - q[..., j]) ** 2 * (inv - 1), 0.0)
            return weight, var

        def at(delta: float) -> _F:
            m_c = (centre - share * delta)[..., None]
            m_k = m_c + delta
            wk, vk = parts(arm, m_k)
            wc, vc = parts(control, m_c)
            cov = -(q[..., arm] - m_k) * (q[..., control] - m_c)
            total = (big_n * (wk * wk * vk + wc * wc * vc - 2 * wk * wc * cov)).sum(axis=-1)
            return np.asarray(total, dtype=np.float64)

        # V is exactly quadratic in delta: three evaluations give its coefficients.
        v0, v_plus, v_minus = at(0.0), at(1.0), at(-1.0)
        c2 = (v_plus + v_minus) / 2 - v0
        c1 = (v_plus - v_minus) / 2
        diff = value[..., arm] - value[..., control]
        a2 = 1 - z * z * c2
        a1 = -2 * diff - z * z * c1
        a0 = diff * diff - z * z * v0
        root = np.sqrt(np.maximum(a1 * a1 - 4 * a2 * a0, 0.0))
        low = (-a1 - root) / (2 * a2)
        high = (-a1 + root) / (2 * a2)
    return np.clip(low, -1.0, 1.0), np.clip(high, -1.0, 1.0), v0


def intervals_from_batches(
    stats: BatchStats,
    *,
    alpha: float = 0.05,
    control: int = 0,
    estimator: Estimator = "aw_aipw",
    kind: Literal["binary", "continuous"] = "continuous",
) -> AdaptiveIntervals:
    """Adaptive-valid intervals of one experiment from its per-batch sums.

    Parameters
    ----------
    stats : BatchStats
        Arrays of shape ``(n_batches, n_arms)`` (and ``(n_batches,)`` for ``n_total``),
        batches in the order they were served.
    alpha : float
        1 - the intervals' level, and the tests' level.
    control : int
        The arm the others are compared with.
    estimator : {"aw_aipw", "batched_ols"}
        See the module docstring; the default is adaptively weighted AIPW.
    kind : {"binary", "continuous"}
        Binary rewards take the score forms of adaptively weighted AIPW.
    """
    if kind not in ("binary", "continuous"):
        msg = f"The reward kind must be 'binary' or 'continuous', but {kind!r} was given."
        raise InvalidInputError(msg)
    if stats.n.ndim != 2:
        msg = f"One experiment's stats have shape (n_batches, n_arms), not {stats.n.shape}."
        raise InvalidInputError(msg)
    _check_alpha(alpha)
    k = stats.n.shape[1]
    if not (0 <= control < k):
        msg = f"The control must be an arm index in [0, {k}), but {control!r} was given."
        raise InvalidInputError(msg)
    z = float(sps.norm.isf(alpha / 2))
    arms: list[AdaptiveEstimate] = []
    differences: dict[int, AdaptiveDifference] = {}
    if estimator == "aw_aipw" and kind == "binary":
        value, variance, cov = aw_aipw_arrays(stats)
        se = np.sqrt(np.maximum(variance, 0.0))
        low, high = wilson_aw_arrays(stats, value, z)
        for a in range(k):
            arms.append(_bounded(float(value[a]), float(se[a]), float(low[a]), float(high[a])))
        for a in range(k):
            if a != control:
                v = variance[a] + variance[control] - 2 * cov[a, control]
                low_d, high_d, null_v = score_difference_arrays(
                    stats, value, variance, a, control, z
                )
                differences[a] = _score_difference(
                    float(value[a] - value[control]),
                    math.sqrt(max(float(v), 0.0)),
                    float(low_d),
                    float(high_d),
                    math.sqrt(max(float(null_v), 0.0)),
                )
    elif estimator == "aw_aipw":
        value, variance, cov = aw_aipw_arrays(stats)
        se = np.sqrt(np.maximum(variance, 0.0))
        for a in range(k):
            arms.append(_estimate(float(value[a]), float(se[a]), z))
        for a in range(k):
            if a != control:
                v = variance[a] + variance[control] - 2 * cov[a, control]
                d = float(value[a] - value[control])
                differences[a] = _difference(d, math.sqrt(max(float(v), 0.0)), z)
    elif estimator == "batched_ols":
        value, scale, diff, diff_scale = batched_ols_arrays(stats)
        for a in range(k):
            arms.append(_estimate(float(value[a]), float(scale[a]), z))
        for a in range(k):
            if a != control:
                differences[a] = _difference(
                    float(diff[a, control]), float(diff_scale[a, control]), z
                )
    else:
        msg = f"The estimator must be one of {', '.join(ESTIMATORS)}, but {estimator!r} was given."
        raise InvalidInputError(msg)
    return AdaptiveIntervals(estimator, tuple(arms), control, differences)


def adaptive_intervals(
    *,
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    batch: ArrayLike,
    n_actions: int,
    alpha: float = 0.05,
    control: int = 0,
    estimator: Estimator = "aw_aipw",
    action_dist: ArrayLike | None = None,
    kind: Literal["auto", "binary", "continuous"] = "auto",
) -> AdaptiveIntervals:
    """Adaptive-valid intervals from logged rows (Open Bandit Pipeline's conventions).

    Parameters
    ----------
    reward, action, pscore, batch : arrays of shape ``(n_rounds,)``
        Each row's reward, chosen arm (``0 .. n_actions - 1``), the propensity of that
        choice, and the batch (allocation version) it was served under; batches are
        ordered by their number.
    n_actions : int
    action_dist : array ``(n_batches, n_actions)``, optional
        Every arm's propensity in every batch (in the order of the sorted batch numbers).
        Without it an arm's propensity in a batch is the ``pscore`` of its rows there;
        an arm with no row in a batch then counts with propensity 0 in that batch,
        which is exact when it could not be chosen and otherwise drops that batch's
        (tiny) information about it.
    kind : {"auto", "binary", "continuous"}
        ``"auto"``: binary when every reward is 0 or 1.
    """
    r = np.asarray(reward, dtype=np.float64)
    a = np.asarray(action)
    p = np.asarray(pscore, dtype=np.float64)
    b = np.asarray(batch)
    if not (r.ndim == a.ndim == p.ndim == b.ndim == 1) or not (
        len(r) == len(a) == len(p) == len(b)
    ):
        msg = (
            "reward, action, pscore and batch must be 1-d arrays of one length, but their "
            f"shapes are {r.shape}, {a.shape}, {p.shape} and {b.shape}."
        )
        raise InvalidInputError(msg)
    if n_actions < 1:
        msg = f"n_actions must be at least 1, but {n_actions!r} was given."
        raise InvalidInputError(msg)
    if len(r) == 0:
        msg = "There are no rows to estimate from."
        raise InvalidInputError(msg)
    if not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= n_actions:
        msg = f"Every action must be an integer in [0, {n_actions})."
        raise InvalidInputError(msg)
    if not np.all(np.isfinite(r)):
        msg = "Every reward must be finite."
        raise InvalidInputError(msg)
    if not np.all((p > 0) & (p <= 1)):
        msg = "Every pscore must be in (0, 1]."
        raise InvalidInputError(msg)
    batches, index = np.unique(b, return_inverse=True)
    nb = len(batches)
    flat = index * n_actions + a
    size = nb * n_actions
    n = np.bincount(flat, minlength=size).reshape(nb, n_actions).astype(np.float64)
    s = np.bincount(flat, weights=r, minlength=size).reshape(nb, n_actions)
    ss = np.bincount(flat, weights=r * r, minlength=size).reshape(nb, n_actions)
    total = np.bincount(index, minlength=nb).astype(np.float64)
    if action_dist is None:
        with np.errstate(invalid="ignore", divide="ignore"):
            e = np.bincount(flat, weights=p, minlength=size).reshape(nb, n_actions) / n
        e = np.where(n > 0, e, 0.0)
    else:
        e = np.asarray(action_dist, dtype=np.float64)
        if e.shape != (nb, n_actions):
            msg = f"action_dist must have shape ({nb}, {n_actions}), but its shape is {e.shape}."
            raise InvalidInputError(msg)
    stats = BatchStats.from_arrays(n_total=total, n=n, sum_r=s, sum_r2=ss, propensity=e)
    if kind == "auto":
        kind = "binary" if bool(np.all((r == 0) | (r == 1))) else "continuous"
    return intervals_from_batches(
        stats, alpha=alpha, control=control, estimator=estimator, kind=kind
    )


def adaptive_msprt(
    difference: AdaptiveDifference,
    *,
    tau: float,
    alpha: float = 0.05,
    previous_p_value: float = 1.0,
) -> SequentialResult:
    """Always-valid p-value and confidence sequence of an adaptive difference at one look.

    The mixture SPRT of :mod:`bandit.sequential` with the difference's estimate and its
    variance (``std_error**2``). ``tau`` (the mixing standard deviation, in reward
    units) must be fixed before the experiment.
    """
    return mixture_test(
        difference.diff,
        difference.std_error**2,
        tau=tau,
        alpha=alpha,
        previous_p_value=previous_p_value,
    )


def _check_alpha(alpha: float) -> None:
    if not (0.0 < alpha < 1.0):
        msg = f"The significance level alpha must be in (0, 1), but {alpha!r} was given."
        raise InvalidInputError(msg)


def _estimate(value: float, se: float, z: float) -> AdaptiveEstimate:
    if not (math.isfinite(value) and math.isfinite(se)):
        return AdaptiveEstimate(
            value if math.isfinite(value) else 0.0, math.inf, -math.inf, math.inf
        )
    return AdaptiveEstimate(value, se, value - z * se, value + z * se)


def _bounded(value: float, se: float, low: float, high: float) -> AdaptiveEstimate:
    if not (math.isfinite(value) and math.isfinite(low) and math.isfinite(high)):
        return AdaptiveEstimate(value if math.isfinite(value) else 0.0, math.inf, 0.0, 1.0)
    return AdaptiveEstimate(value, se, min(low, value), max(high, value))


def _score_difference(
    diff: float, se: float, low: float, high: float, null_se: float
) -> AdaptiveDifference:
    if not all(math.isfinite(x) for x in (diff, se, low, high)):
        return AdaptiveDifference(0.0, math.inf, -1.0, 1.0, 0.0, 1.0)
    low, high = min(low, diff), max(high, diff)
    if not (math.isfinite(null_se) and null_se > 0):
        return AdaptiveDifference(diff, se, low, high, 0.0, 1.0)
    statistic = diff / null_se
    p_value = float(2 * sps.norm.sf(abs(statistic)))
    return AdaptiveDifference(diff, se, low, high, statistic, p_value)


def _difference(diff: float, se: float, z: float) -> AdaptiveDifference:
    if not (math.isfinite(diff) and math.isfinite(se)):
        return AdaptiveDifference(0.0, math.inf, -math.inf, math.inf, 0.0, 1.0)
    if se == 0.0:
        if diff == 0.0:
            return AdaptiveDifference(0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
        return AdaptiveDifference(diff, 0.0, diff, diff, math.copysign(math.inf, diff), 0.0)
    statistic = diff / se
    p_value = float(2 * sps.norm.sf(abs(statistic)))
    return AdaptiveDifference(diff, se, diff - z * se, diff + z * se, statistic, p_value)
