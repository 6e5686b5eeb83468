"""Fixed-horizon frequentist tests of each arm against the control, from sufficient statistics.

Every comparison reports treatment minus control. Degenerate inputs give
defined answers rather than NaN or exceptions:

* an arm without data (``n = 0``; ``n < 2`` for Welch): statistic 0, p-value 1,
  and the widest possible interval, ``(-1, 1)`` for a difference of proportions
  and ``(-inf, inf)`` for a difference of means;
* zero standard error (every reward equal within each arm): statistic 0 and
  p-value 1 when the means agree; a statistic of ``±inf``, p-value 0 and the
  point interval ``(diff, diff)`` when they differ.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scipy import stats as sps
else:
    from bandit._lazy import scipy_stats as sps

from bandit.corrections import holm
from bandit.errors import InvalidInputError
from bandit.posterior import RewardKind, check_binary
from bandit.stats import ArmStats

__all__ = [
    "Comparison",
    "Interval",
    "compare_to_control",
    "mean_interval",
    "noninferiority_test",
    "welch_test",
    "z_test",
]


@dataclass(frozen=True)
class Comparison:
    """A test of treatment against control.

    Attributes
    ----------
    diff : float
        Treatment mean minus control mean.
    statistic : float
        z or t statistic.
    p_value : float
        p-value of the test.
    ci_low, ci_high : float
        Confidence interval for ``diff`` (see each test for its level).
    df : float
        Degrees of freedom of the t reference distribution; ``inf`` for z tests,
        0.0 when undefined.
    method : str
        ``"z"``, ``"welch"``, ``"noninferiority-z"`` or ``"noninferiority-welch"``.
    adjusted_p_value : float or None
        Holm-adjusted p-value when produced by :func:`compare_to_control`,
        otherwise ``None``.
    """

    diff: float
    statistic: float
    p_value: float
    ci_low: float
    ci_high: float
    df: float
    method: str
    adjusted_p_value: float | None = None


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval."""

    estimate: float
    low: float
    high: float


def _check_alpha(alpha: float) -> None:
    if not (0.0 < alpha < 1.0):
        msg = f"The significance level alpha must be in (0, 1), but {alpha!r} was given."
        raise InvalidInputError(msg)


def _zero_se(diff: float, method: str, df: float) -> Comparison:
    if diff == 0.0:
        return Comparison(0.0, 0.0, 1.0, 0.0, 0.0, df, method)
    return Comparison(diff, math.copysign(math.inf, diff), 0.0, diff, diff, df, method)


def z_test(control: ArmStats, treatment: ArmStats, *, alpha: float = 0.05) -> Comparison:
    """Two-sided two-proportion z-test with a Wald interval for the difference.

    With :math:`\\hat p_j = s_j / n_j` and the pooled :math:`\\hat p = (s_t + s_c) / (n_t + n_c)`,

    .. math::

        z = \\frac{\\hat p_t - \\hat p_c}{\\sqrt{\\hat p (1 - \\hat p)(1/n_t + 1/n_c)}}, \\qquad
        p = 2\\,\\bar\\Phi(|z|),

    and the :math:`1 - \\alpha` interval
    :math:`\\hat p_t - \\hat p_c \\pm z_{1-\\alpha/2}
    \\sqrt{\\hat p_t(1-\\hat p_t)/n_t + \\hat p_c(1-\\hat p_c)/n_c}`.
    These are statsmodels' ``proportions_ztest`` and
    ``confint_proportions_2indep(method="wald")``.
    """
    _check_alpha(alpha)
    check_binary([control, treatment])
    if control.n == 0 or treatment.n == 0:
        return Comparison(0.0, 0.0, 1.0, -1.0, 1.0, math.inf, "z")
    p_t, p_c = treatment.mean, control.mean
    diff = p_t - p_c
    pooled = (treatment.sum + control.sum) / (treatment.n + control.n)
    se0 = math.sqrt(max(pooled * (1 - pooled), 0.0) * (1 / treatment.n + 1 / control.n))
    se = math.sqrt(max(p_t * (1 - p_t), 0.0) / treatment.n + max(p_c * (1 - p_c), 0.0) / control.n)
    if se0 == 0.0:
        return _zero_se(diff, "z", math.inf)
    z = diff / se0
    half = float(sps.norm.isf(alpha / 2)) * se
    return Comparison(
        diff=diff,
        statistic=z,
        p_value=float(2 * sps.norm.sf(abs(z))),
        ci_low=diff - half,
        ci_high=diff + half,
        df=math.inf,
        method="z",
    )


def _welch_parts(control: ArmStats, treatment: ArmStats) -> tuple[float, float, float]:
    """Difference, standard error and Welch-Satterthwaite degrees of freedom."""
    v_t = treatment.variance / treatment.n
    v_c = control.variance / control.n
    se2 = v_t + v_c
    denom = v_t**2 / (treatment.n - 1) + v_c**2 / (control.n - 1)
    df = se2**2 / denom if denom > 0 else math.inf
    return treatment.mean - control.mean, math.sqrt(se2), df


def welch_test(control: ArmStats, treatment: ArmStats, *, alpha: float = 0.05) -> Comparison:
    """Two-sided Welch t-test with its interval for the difference of means.

    .. math::

        t = \\frac{\\bar r_t - \\bar r_c}{\\sqrt{s_t^2/n_t + s_c^2/n_c}}, \\qquad
        \\nu = \\frac{(s_t^2/n_t + s_c^2/n_c)^2}
                   {\\frac{(s_t^2/n_t)^2}{n_t - 1} + \\frac{(s_c^2/n_c)^2}{n_c - 1}},

    :math:`p = 2\\,\\bar F_\\nu(|t|)` and the interval
    :math:`\\bar r_t - \\bar r_c \\pm t_{1-\\alpha/2,\\nu}\\,\\text{se}`, as
    ``scipy.stats.ttest_ind_from_stats(equal_var=False)``.
    """
    _check_alpha(alpha)
    if control.n < 2 or treatment.n < 2:
        return Comparison(0.0, 0.0, 1.0, -math.inf, math.inf, 0.0, "welch")
    diff, se, df = _welch_parts(control, treatment)
    if se == 0.0:
        return _zero_se(diff, "welch", df)
    t = diff / se
    half = float(sps.t.isf(alpha / 2, df)) * se
    return Comparison(
        diff=diff,
        statistic=t,
        p_value=float(2 * sps.t.sf(abs(t), df)),
        ci_low=diff - half,
        ci_high=diff + half,
        df=df,
        method="welch",
    )


def noninferiority_test(
    control: ArmStats,
    treatment: ArmStats,
    *,
    kind: RewardKind,
    margin: float,
    alpha: float = 0.05,
) -> Comparison:
    """One-sided test that the treatment is at most ``margin`` worse than the control.

    :math:`H_0: \\mu_t - \\mu_c \\le -\\delta` against :math:`H_1: \\mu_t - \\mu_c > -\\delta`
    with the unpooled standard error (Wald for binary, Welch for continuous):

    .. math:: T = (\\hat\\mu_t - \\hat\\mu_c + \\delta) / \\text{se}, \\qquad p = \\bar F(T).

    The interval is ``diff ± q_{1-alpha} se``: its lower end is the one-sided
    :math:`1-\\alpha` lower bound (non-inferior when it exceeds :math:`-\\delta`)
    and its upper end the one-sided upper bound. Without data or with zero
    standard error the p-value is 1: non-inferiority is not shown.
    """
    _check_alpha(alpha)
    if not (math.isfinite(margin) and margin >= 0):
        msg = (
            f"The non-inferiority margin must be finite and non-negative, but {margin!r} was given."
        )
        raise InvalidInputError(msg)
    if kind == "binary":
        check_binary([control, treatment])
        method = "noninferiority-z"
        if control.n == 0 or treatment.n == 0:
            return Comparison(0.0, 0.0, 1.0, -1.0, 1.0, math.inf, method)
        p_t, p_c = treatment.mean, control.mean
        diff, df = p_t - p_c, math.inf
        se = math.sqrt(p_t * (1 - p_t) / treatment.n + p_c * (1 - p_c) / control.n)
    elif kind == "continuous":
        method = "noninferiority-welch"
        if control.n < 2 or treatment.n < 2:
            return Comparison(0.0, 0.0, 1.0, -math.inf, math.inf, 0.0, method)
        diff, se, df = _welch_parts(control, treatment)
    else:
        msg = f"The reward kind must be 'binary' or 'continuous', but {kind!r} was given."
        raise InvalidInputError(msg)
    if se == 0.0:
        return Comparison(diff, 0.0, 1.0, diff, diff, df, method)
    statistic = (diff + margin) / se
    reference = sps.norm if math.isinf(df) else sps.t(df)
    half = float(reference.isf(alpha)) * se
    return Comparison(
        diff=diff,
        statistic=statistic,
        p_value=float(reference.sf(statistic)),
        ci_low=diff - half,
        ci_high=diff + half,
        df=df,
        method=method,
    )


def mean_interval(arm: ArmStats, *, kind: RewardKind, alpha: float = 0.05) -> Interval:
    """Confidence interval of one arm's mean reward.

    Binary rewards use the Wilson score interval,

    .. math::

        \\frac{\\hat p + z^2/(2n)}{1 + z^2/n} \\pm \\frac{z}{1 + z^2/n}
        \\sqrt{\\frac{\\hat p(1-\\hat p)}{n} + \\frac{z^2}{4n^2}},

    which is ``(0, 1)`` without data. Continuous rewards use the t interval
    :math:`\\bar r \\pm t_{1-\\alpha/2, n-1}\\, s/\\sqrt n`, which is
    ``(-inf, inf)`` with fewer than two rewards.
    """
    _check_alpha(alpha)
    if kind == "binary":
        check_binary([arm])
        if arm.n == 0:
            return Interval(0.0, 0.0, 1.0)
        p, n = min(max(arm.mean, 0.0), 1.0), arm.n
        z = float(sps.norm.isf(alpha / 2))
        scale = 1 + z * z / n
        center = (p + z * z / (2 * n)) / scale
        half = z / scale * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return Interval(arm.mean, center - half, center + half)
    if kind == "continuous":
        if arm.n < 2:
            return Interval(arm.mean, -math.inf, math.inf)
        half = float(sps.t.isf(alpha / 2, arm.n - 1)) * arm.std / math.sqrt(arm.n)
        return Interval(arm.mean, arm.mean - half, arm.mean + half)
    msg = f"The reward kind must be 'binary' or 'continuous', but {kind!r} was given."
    raise InvalidInputError(msg)


def compare_to_control(
    arms: Sequence[ArmStats], *, kind: RewardKind, alpha: float = 0.05
) -> list[Comparison]:
    """Test every arm after the first against the first (the control).

    Binary rewards use :func:`z_test`, continuous rewards :func:`welch_test`;
    ``adjusted_p_value`` holds Holm's step-down adjustment across the
    ``K - 1`` comparisons.

    Returns
    -------
    list of Comparison, length ``K - 1`` (empty with fewer than two arms).
    """
    if kind not in ("binary", "continuous"):
        msg = f"The reward kind must be 'binary' or 'continuous', but {kind!r} was given."
        raise InvalidInputError(msg)
    if len(arms) < 2:
        return []
    test = z_test if kind == "binary" else welch_test
    raw = [test(arms[0], arm, alpha=alpha) for arm in arms[1:]]
    adjusted = holm([c.p_value for c in raw])
    return [
        dataclasses.replace(c, adjusted_p_value=float(a))
        for c, a in zip(raw, adjusted, strict=True)
    ]
