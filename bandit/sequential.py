"""Always-valid inference: the mixture sequential probability ratio test (mSPRT).

Johari, Koomen, Pekelis and Walsh (2017), "Peeking at A/B Tests". With the
difference estimate :math:`\\hat\\theta = \\hat\\mu_t - \\hat\\mu_c`, its variance
:math:`V = \\sigma_t^2/n_t + \\sigma_c^2/n_c` and a normal mixing distribution
:math:`\\theta \\sim N(0, \\tau^2)` over alternatives, the mixture likelihood
ratio against :math:`H_0: \\theta = 0` is

.. math::

    \\Lambda = \\int \\frac{\\phi(\\hat\\theta; \\theta, V)}{\\phi(\\hat\\theta; 0, V)}
               \\,\\phi(\\theta; 0, \\tau^2)\\, d\\theta
             = \\sqrt{\\frac{V}{V + \\tau^2}}
               \\exp\\!\\Big(\\frac{\\tau^2 \\hat\\theta^2}{2 V (V + \\tau^2)}\\Big).

:math:`\\Lambda` is a non-negative martingale under :math:`H_0`, so the running
p-value :math:`p_n = \\min(p_{n-1}, 1/\\Lambda_n)` satisfies
:math:`\\Pr(\\exists n: p_n \\le \\alpha) \\le \\alpha` however often one looks.
The caller keeps :math:`p_{n-1}` between looks (``previous_p_value``).
Inverting the test gives the always-valid confidence sequence

.. math::

    \\hat\\theta \\pm \\sqrt{\\frac{V (V + \\tau^2)}{\\tau^2}
        \\Big(2 \\log \\frac1\\alpha + \\log \\frac{V + \\tau^2}{V}\\Big)}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from bandit.errors import InvalidInputError
from bandit.posterior import RewardKind, check_binary
from bandit.stats import ArmStats

__all__ = ["SequentialResult", "default_tau", "mixture_test", "msprt"]

# Standardized effect size used as the mixing scale when the caller gives none.
_DEFAULT_EFFECT_SD = 0.1


@dataclass(frozen=True)
class SequentialResult:
    """One look of the mSPRT of treatment against control.

    Attributes
    ----------
    diff : float
        Treatment mean minus control mean, :math:`\\hat\\theta`.
    likelihood_ratio : float
        Mixture likelihood ratio :math:`\\Lambda` at this look (1.0 without information).
    p_value : float
        Always-valid p-value, :math:`\\min(p_{\\text{previous}}, 1/\\Lambda)`.
    ci_low, ci_high : float
        Always-valid :math:`1-\\alpha` confidence sequence at this look; ``(-1, 1)``
        for binary and ``(-inf, inf)`` for continuous rewards without information.
    tau : float
        Mixing standard deviation used, in reward units.
    decision : {"reject", "continue"}
        ``"reject"`` once ``p_value <= alpha``.
    """

    diff: float
    likelihood_ratio: float
    p_value: float
    ci_low: float
    ci_high: float
    tau: float
    decision: Literal["reject", "continue"]


def msprt(
    control: ArmStats,
    treatment: ArmStats,
    *,
    kind: RewardKind,
    alpha: float = 0.05,
    tau: float | None = None,
    previous_p_value: float = 1.0,
) -> SequentialResult:
    """Mixture SPRT of :math:`H_0: \\mu_t = \\mu_c` at one look (formulas in the module docstring).

    Parameters
    ----------
    control, treatment : ArmStats
        Cumulative statistics at this look.
    kind : {"binary", "continuous"}
        Binary rewards use :math:`\\sigma^2 = \\hat p (1 - \\hat p)`, continuous
        rewards the sample variance.
    alpha : float
        Level of the decision and of the confidence sequence.
    tau : float or None
        Mixing standard deviation in reward units. ``None`` uses 0.1 times the
        pooled per-request standard deviation (a standardized effect of 0.1);
        fix it before the experiment when strict validity matters, because a
        value re-estimated at every look is only approximately valid.
    previous_p_value : float
        The always-valid p-value of the previous look (1.0 at the first).
    """
    if not (0.0 < alpha < 1.0):
        msg = f"The significance level alpha must be in (0, 1), but {alpha!r} was given."
        raise InvalidInputError(msg)
    if not (0.0 <= previous_p_value <= 1.0):
        msg = f"The previous p-value must be in [0, 1], but {previous_p_value!r} was given."
        raise InvalidInputError(msg)
    if tau is not None and not (math.isfinite(tau) and tau > 0):
        msg = (
            f"The mixing standard deviation tau must be positive and finite, but {tau!r} was given."
        )
        raise InvalidInputError(msg)
    if kind == "binary":
        check_binary([control, treatment])
        minimum_n, unbounded = 1.0, 1.0

        def var(arm: ArmStats) -> float:
            return max(arm.mean * (1 - arm.mean), 0.0)

    elif kind == "continuous":
        minimum_n, unbounded = 2.0, math.inf

        def var(arm: ArmStats) -> float:
            return arm.variance

    else:
        msg = f"The reward kind must be 'binary' or 'continuous', but {kind!r} was given."
        raise InvalidInputError(msg)

    if tau is None:
        tau = default_tau(control + treatment, kind=kind)
    diff = treatment.mean - control.mean
    if control.n < minimum_n or treatment.n < minimum_n:
        return SequentialResult(
            0.0, 1.0, previous_p_value, -unbounded, unbounded, tau, _decide(previous_p_value, alpha)
        )
    v = var(treatment) / treatment.n + var(control) / control.n
    if v == 0.0 or tau == 0.0:
        # Without a variance estimate there is no evidence to weigh: Λ = 1.
        return SequentialResult(
            diff,
            1.0,
            previous_p_value,
            -unbounded,
            unbounded,
            tau,
            _decide(previous_p_value, alpha),
        )
    return mixture_test(diff, v, tau=tau, alpha=alpha, previous_p_value=previous_p_value)


def default_tau(pooled: ArmStats, *, kind: RewardKind) -> float:
    r"""The mixing standard deviation taken when none is given: a standardized effect of 0.1.

    0.1 times the pooled per-request standard deviation: :math:`\sqrt{\hat p(1-\hat p)}`
    for binary rewards, the sample standard deviation for continuous ones; 0.0 without
    information (fewer than two rewards, or no spread).
    """
    variance = pooled.mean * (1 - pooled.mean) if kind == "binary" else pooled.variance
    return _DEFAULT_EFFECT_SD * math.sqrt(max(variance, 0.0))


def mixture_test(
    diff: float, variance: float, *, tau: float, alpha: float = 0.05, previous_p_value: float = 1.0
) -> SequentialResult:
    """The mSPRT look for any asymptotically normal estimate and its variance.

    :func:`msprt` computes ``diff`` and ``variance`` from two arms' statistics;
    :func:`bandit.adaptive.adaptive_msprt` from adaptively weighted scores. The formulas
    are in the module docstring; without information (``variance`` 0 or not finite) the
    ratio is 1 and the sequence unbounded.
    """
    if not (0.0 < alpha < 1.0):
        msg = f"The significance level alpha must be in (0, 1), but {alpha!r} was given."
        raise InvalidInputError(msg)
    if not (0.0 <= previous_p_value <= 1.0):
        msg = f"The previous p-value must be in [0, 1], but {previous_p_value!r} was given."
        raise InvalidInputError(msg)
    if not (math.isfinite(tau) and tau > 0):
        msg = (
            f"The mixing standard deviation tau must be positive and finite, but {tau!r} was given."
        )
        raise InvalidInputError(msg)
    v = variance
    if not (math.isfinite(v) and v > 0 and math.isfinite(diff)):
        decision = _decide(previous_p_value, alpha)
        return SequentialResult(
            diff if math.isfinite(diff) else 0.0,
            1.0,
            previous_p_value,
            -math.inf,
            math.inf,
            tau,
            decision,
        )
    t2 = tau * tau
    log_lr = 0.5 * math.log(v / (v + t2)) + t2 * diff * diff / (2 * v * (v + t2))
    p_value = min(previous_p_value, math.exp(-log_lr)) if log_lr > 0 else previous_p_value
    half = math.sqrt(v * (v + t2) / t2 * (2 * math.log(1 / alpha) + math.log((v + t2) / v)))
    return SequentialResult(
        diff=diff,
        likelihood_ratio=math.exp(min(log_lr, 700.0)),
        p_value=p_value,
        ci_low=diff - half,
        ci_high=diff + half,
        tau=tau,
        decision=_decide(p_value, alpha),
    )


def _decide(p_value: float, alpha: float) -> Literal["reject", "continue"]:
    return "reject" if p_value <= alpha else "continue"
