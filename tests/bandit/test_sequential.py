from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from bandit.errors import InvalidInputError
from bandit.sequential import msprt
from bandit.stats import ArmStats


def binary(successes: int, n: int) -> ArmStats:
    return ArmStats(n, successes, successes)


def mixture_ratio(theta_hat: float, v: float, tau: float) -> float:
    """The mixture likelihood ratio by integrating over the N(0, tau^2) alternatives."""
    sd = math.sqrt(v)

    def integrand(theta: float) -> float:
        ratio = math.exp(
            stats.norm.logpdf(theta_hat, theta, sd) - stats.norm.logpdf(theta_hat, 0.0, sd)
        )
        return ratio * stats.norm.pdf(theta, 0.0, tau)

    return integrate.quad(integrand, -12 * tau, 12 * tau, limit=400, points=[0.0, theta_hat])[0]


@pytest.mark.parametrize(
    ("control", "treatment", "tau"),
    [
        (binary(100, 1000), binary(130, 1000), 0.02),
        (binary(480, 5000), binary(560, 5200), 0.01),
        (binary(30, 300), binary(28, 310), 0.05),
    ],
)
def test_likelihood_ratio_is_the_normal_mixture_integral(
    control: ArmStats, treatment: ArmStats, tau: float
) -> None:
    got = msprt(control, treatment, kind="binary", tau=tau)
    p_c, p_t = control.mean, treatment.mean
    v = p_t * (1 - p_t) / treatment.n + p_c * (1 - p_c) / control.n
    want = mixture_ratio(p_t - p_c, v, tau)
    assert got.likelihood_ratio == pytest.approx(want, rel=1e-7)
    assert got.p_value == pytest.approx(min(1.0, 1 / want), rel=1e-7)
    # The confidence sequence's ends are where the ratio against that difference is 1/alpha.
    for end in (got.ci_low, got.ci_high):
        assert mixture_ratio(got.diff - end, v, tau) == pytest.approx(1 / 0.05, rel=1e-6)


def test_continuous_rewards_use_the_sample_variances() -> None:
    rng = np.random.default_rng(8)
    x, y = rng.normal(0.0, 2.0, 400), rng.normal(0.5, 1.0, 300)
    got = msprt(
        ArmStats.from_rewards(x.tolist()),
        ArmStats.from_rewards(y.tolist()),
        kind="continuous",
        tau=0.3,
    )
    v = y.var(ddof=1) / y.size + x.var(ddof=1) / x.size
    assert got.likelihood_ratio == pytest.approx(
        mixture_ratio(y.mean() - x.mean(), v, 0.3), rel=1e-7
    )


def test_p_value_never_increases_across_looks() -> None:
    strong = msprt(binary(100, 2000), binary(180, 2000), kind="binary", tau=0.02)
    assert strong.decision == "reject"
    later = msprt(
        binary(200, 4000),
        binary(205, 4000),
        kind="binary",
        tau=0.02,
        previous_p_value=strong.p_value,
    )
    assert later.p_value == strong.p_value
    assert later.decision == "reject"


@pytest.mark.parametrize(
    ("control", "treatment", "kind", "bounds"),
    [
        (ArmStats(), ArmStats(), "binary", (-1.0, 1.0)),
        (ArmStats(), binary(5, 10), "binary", (-1.0, 1.0)),
        (binary(0, 100), binary(0, 100), "binary", (-1.0, 1.0)),
        (ArmStats(1, 3.0, 9.0), ArmStats(10, 5.0, 5.0), "continuous", (-math.inf, math.inf)),
        (ArmStats(4, 8.0, 16.0), ArmStats(4, 8.0, 16.0), "continuous", (-math.inf, math.inf)),
    ],
)
def test_no_information_means_no_evidence(
    control: ArmStats, treatment: ArmStats, kind: str, bounds: tuple[float, float]
) -> None:
    got = msprt(control, treatment, kind=kind, previous_p_value=0.4)  # type: ignore[arg-type]
    assert (got.likelihood_ratio, got.p_value, got.decision) == (1.0, 0.4, "continue")
    assert (got.ci_low, got.ci_high) == bounds
    assert not math.isnan(got.tau)


def test_default_tau_is_a_tenth_of_the_pooled_standard_deviation() -> None:
    got = msprt(binary(100, 1000), binary(100, 1000), kind="binary")
    assert got.tau == pytest.approx(0.1 * math.sqrt(0.1 * 0.9))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "The significance level alpha must be in (0, 1), but 0.0 was given."),
        (
            {"tau": -1.0},
            "The mixing standard deviation tau must be positive and finite, but -1.0 was given.",
        ),
        ({"previous_p_value": 2.0}, "The previous p-value must be in [0, 1], but 2.0 was given."),
    ],
)
def test_bad_arguments_raise_with_a_sentence(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        msprt(ArmStats(), ArmStats(), kind="binary", **kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message


def monitor(
    effect: float, *, sims: int, looks: int, per_look: int, seed: int
) -> tuple[float, float]:
    """Share of A/B simulations where mSPRT, and a z-test peeked at each look, ever reject."""
    rng = np.random.default_rng(seed)
    base = 0.1
    control = rng.binomial(per_look, base, size=(sims, looks)).cumsum(axis=1)
    treatment = rng.binomial(per_look, base + effect, size=(sims, looks)).cumsum(axis=1)
    n = per_look * np.arange(1, looks + 1)
    pooled = (control + treatment) / (2 * n)
    se = np.sqrt(pooled * (1 - pooled) * 2 / n)
    z = np.divide((treatment - control) / n, se, out=np.zeros(se.shape), where=se > 0)
    peeked = (2 * stats.norm.sf(np.abs(z)) <= 0.05).any(axis=1)
    msprt_hits = 0
    for i in range(sims):
        p = 1.0
        for look in range(looks):
            c = binary(int(control[i, look]), int(n[look]))
            t = binary(int(treatment[i, look]), int(n[look]))
            p = msprt(c, t, kind="binary", tau=0.03, previous_p_value=p).p_value
        msprt_hits += p <= 0.05
    return msprt_hits / sims, float(peeked.mean())


@pytest.mark.slow
def test_msprt_false_positive_rate_stays_below_alpha_under_continuous_monitoring() -> None:
    fpr, naive_fpr = monitor(0.0, sims=2000, looks=40, per_look=250, seed=2024)
    print(f"\nA/A, 40 looks: mSPRT FPR {fpr:.3f}; z-test peeked at every look {naive_fpr:.3f}")
    assert fpr <= 0.05
    # The simulation is sensitive enough to see peeking inflate a fixed-horizon test.
    assert naive_fpr > 0.15


@pytest.mark.slow
def test_msprt_detects_a_real_difference() -> None:
    power, _ = monitor(0.02, sims=200, looks=40, per_look=250, seed=7)
    assert power > 0.8
