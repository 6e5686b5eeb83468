"""Coverage of 95% intervals over 2,000 simulated fixed-allocation experiments.

With a fixed 50/50 split the classical intervals are valid, so each must cover
the true value in 94-96% of experiments (the Monte Carlo standard error of a
coverage near 95% over 2,000 experiments is about 0.5 points).
"""

from __future__ import annotations

import numpy as np
import pytest

from bandit.bayesian import credible_intervals
from bandit.frequentist import mean_interval, welch_test, z_test
from bandit.ipw import IpwStats, ipw_estimate
from bandit.sequential import msprt
from bandit.stats import ArmStats

EXPERIMENTS = 2000


def covered(intervals: list[tuple[float, float]], truth: float) -> float:
    bounds = np.array(intervals)
    return float(np.mean((bounds[:, 0] <= truth) & (truth <= bounds[:, 1])))


@pytest.mark.slow
def test_binary_intervals_cover_in_94_to_96_percent() -> None:
    rng = np.random.default_rng(20240601)
    p_c, p_t, n = 0.10, 0.12, 2000
    s_c = rng.binomial(n, p_c, EXPERIMENTS)
    s_t = rng.binomial(n, p_t, EXPERIMENTS)
    arms = [(ArmStats(n, c, c), ArmStats(n, t, t)) for c, t in zip(s_c, s_t, strict=True)]
    wilson = [mean_interval(t, kind="binary") for _, t in arms]
    diff = [z_test(c, t) for c, t in arms]
    credible = [tuple(credible_intervals([t], kind="binary")[0]) for _, t in arms]
    # Under a fixed split every request's propensity is 1/2 (weight 2).
    ipw = [
        ipw_estimate(
            IpwStats(2 * n, n, 2.0 * n, 2.0 * t.sum, 4.0 * n, 4.0 * t.sum, 4.0 * t.sum, 2.0)
        )
        for _, t in arms
    ]
    coverage = {
        "Wilson mean": covered([(i.low, i.high) for i in wilson], p_t),
        "z difference": covered([(d.ci_low, d.ci_high) for d in diff], p_t - p_c),
        "Beta credible": covered(credible, p_t),  # type: ignore[arg-type]
        "IPW mean": covered([(e.ci_low, e.ci_high) for e in ipw], p_t),
    }
    print("\nbinary, n = 2000 per arm:", {k: round(v, 4) for k, v in coverage.items()})
    for name, value in coverage.items():
        assert 0.94 <= value <= 0.96, name


@pytest.mark.slow
def test_continuous_intervals_cover_in_94_to_96_percent() -> None:
    rng = np.random.default_rng(7)
    n_c, n_t = 150, 120
    mu_c, mu_t = 5.0, 5.4
    x = rng.normal(mu_c, 2.0, (EXPERIMENTS, n_c))
    y = rng.normal(mu_t, 3.0, (EXPERIMENTS, n_t))
    arms = [
        (
            ArmStats(n_c, float(a.sum()), float((a * a).sum())),
            ArmStats(n_t, float(b.sum()), float((b * b).sum())),
        )
        for a, b in zip(x, y, strict=True)
    ]
    t_mean = [mean_interval(t, kind="continuous") for _, t in arms]
    welch = [welch_test(c, t) for c, t in arms]
    coverage = {
        "t mean": covered([(i.low, i.high) for i in t_mean], mu_t),
        "Welch difference": covered([(w.ci_low, w.ci_high) for w in welch], mu_t - mu_c),
    }
    print("\ncontinuous, n = 150 / 120:", {k: round(v, 4) for k, v in coverage.items()})
    for name, value in coverage.items():
        assert 0.94 <= value <= 0.96, name


@pytest.mark.slow
def test_confidence_sequence_covers_at_every_look_at_once() -> None:
    rng = np.random.default_rng(99)
    looks, per_look, p_c, p_t = 20, 200, 0.2, 0.25
    c = rng.binomial(per_look, p_c, (EXPERIMENTS, looks)).cumsum(axis=1)
    t = rng.binomial(per_look, p_t, (EXPERIMENTS, looks)).cumsum(axis=1)
    always = 0
    for i in range(EXPERIMENTS):
        ok = True
        for look in range(looks):
            n = per_look * (look + 1)
            result = msprt(
                ArmStats(n, c[i, look], c[i, look]),
                ArmStats(n, t[i, look], t[i, look]),
                kind="binary",
                tau=0.05,
            )
            ok = ok and result.ci_low <= p_t - p_c <= result.ci_high
        always += ok
    print(
        f"\nmSPRT confidence sequence, 20 looks: covers at every look in {always / EXPERIMENTS:.4f}"
    )
    # Always valid: the sequence covers at all 20 looks simultaneously in at least 95%.
    assert always / EXPERIMENTS >= 0.95
