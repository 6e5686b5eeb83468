"""Posterior summaries against numerical integration of the same posteriors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from bandit.bayesian import credible_intervals, expected_loss, prob_best, sample_posteriors
from bandit.errors import InvalidInputError
from bandit.posterior import BetaPosterior, NormalPosterior, posteriors
from bandit.stats import ArmStats

DRAWS = 200_000


def binary(successes: int, n: int) -> ArmStats:
    return ArmStats(n, successes, successes)


def beta_params(arm: ArmStats) -> tuple[float, float]:
    """Beta(1, 1) prior updated by the arm's successes and failures."""
    return 1 + arm.sum, 1 + arm.n - arm.sum


def exact_prob_best(arms: list[ArmStats]) -> list[float]:
    dists = [stats.beta(*beta_params(a)) for a in arms]

    def density(x: float, k: int) -> float:
        others = math.prod(d.cdf(x) for j, d in enumerate(dists) if j != k)
        return float(dists[k].pdf(x) * others)

    return [
        integrate.quad(density, 0, 1, args=(k,), points=[0.1], limit=200)[0]
        for k in range(len(arms))
    ]


def exact_expected_loss(arms: list[ArmStats]) -> list[float]:
    dists = [stats.beta(*beta_params(a)) for a in arms]
    # E[max] of [0, 1]-valued variables: integral of 1 - prod of CDFs.
    e_max = integrate.quad(lambda t: 1 - math.prod(d.cdf(t) for d in dists), 0, 1, limit=200)[0]
    return [e_max - d.mean() for d in dists]


@pytest.mark.parametrize(
    "arms",
    [
        [binary(10, 100), binary(15, 100)],
        [binary(50, 1000), binary(60, 1000), binary(70, 1000)],
        [binary(0, 0), binary(3, 5)],
    ],
)
def test_prob_best_and_expected_loss_match_numerical_integration(arms: list[ArmStats]) -> None:
    rng = np.random.default_rng(7)
    got_p = prob_best(arms, kind="binary", rng=rng, draws=DRAWS)
    got_loss = expected_loss(arms, kind="binary", rng=rng, draws=DRAWS)
    want_p = exact_prob_best(arms)
    # Five Monte Carlo standard errors.
    np.testing.assert_allclose(got_p, want_p, atol=5 * 0.5 / math.sqrt(DRAWS))
    np.testing.assert_allclose(got_loss, exact_expected_loss(arms), rtol=0.03, atol=2e-4)
    assert got_p.sum() == pytest.approx(1.0, abs=1e-12)


def test_continuous_prob_best_of_two_arms_is_a_normal_cdf() -> None:
    rng = np.random.default_rng(11)
    a = ArmStats.from_rewards(rng.normal(1.0, 2.0, 200).tolist())
    b = ArmStats.from_rewards(rng.normal(1.3, 2.0, 200).tolist())
    pa, pb = posteriors([a, b], kind="continuous")
    assert isinstance(pa, NormalPosterior) and isinstance(pb, NormalPosterior)
    exact = stats.norm.cdf((pb.mean - pa.mean) / math.hypot(pa.sd, pb.sd))
    got = prob_best([a, b], kind="continuous", rng=rng, draws=DRAWS)
    assert got[1] == pytest.approx(exact, abs=5 * 0.5 / math.sqrt(DRAWS))


def test_continuous_posterior_is_the_grid_posterior_of_the_unit_information_prior() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(5.0, 3.0, 12)
    y = rng.normal(4.0, 1.0, 30)
    arm_x, arm_y = ArmStats.from_rewards(x.tolist()), ArmStats.from_rewards(y.tolist())
    pooled = np.concatenate([x, y])
    m0, v0 = pooled.mean(), pooled.var(ddof=1)
    # Prior N(m0, v0) times the likelihood of x's mean, N(mean | mu, s^2 / n), on a grid.
    grid = np.linspace(m0 - 12 * math.sqrt(v0), m0 + 12 * math.sqrt(v0), 400_001)
    log_post = stats.norm.logpdf(grid, m0, math.sqrt(v0)) + stats.norm.logpdf(
        x.mean(), grid, x.std(ddof=1) / math.sqrt(x.size)
    )
    weight = np.exp(log_post - log_post.max())
    weight /= weight.sum()
    grid_mean = float(np.sum(weight * grid))
    grid_sd = math.sqrt(float(np.sum(weight * (grid - grid_mean) ** 2)))
    post = posteriors([arm_x, arm_y], kind="continuous")[0]
    assert isinstance(post, NormalPosterior)
    assert post.mean == pytest.approx(grid_mean, rel=1e-6)
    assert post.sd == pytest.approx(grid_sd, rel=1e-4)


def test_credible_intervals_are_beta_and_normal_quantiles() -> None:
    arms = [binary(30, 200), binary(0, 0)]
    got = credible_intervals(arms, kind="binary", level=0.9)
    want = [stats.beta.interval(0.9, 31, 171), stats.beta.interval(0.9, 1, 1)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    x = np.random.default_rng(4).normal(0.0, 1.0, 50_000)
    big = ArmStats.from_rewards(x.tolist())
    # With this much data the prior is negligible: the t interval of the mean.
    low, high = credible_intervals([big], kind="continuous")[0]
    t_low, t_high = stats.t.interval(0.95, x.size - 1, x.mean(), x.std(ddof=1) / math.sqrt(x.size))
    assert low == pytest.approx(t_low, abs=1e-5)
    assert high == pytest.approx(t_high, abs=1e-5)


@pytest.mark.parametrize("kind", ["binary", "continuous"])
def test_arms_without_data_are_equally_likely_best(kind: str) -> None:
    arms = [ArmStats(), ArmStats(), ArmStats(), ArmStats()]
    rng = np.random.default_rng(0)
    p = prob_best(arms, kind=kind, rng=rng)  # type: ignore[arg-type]
    np.testing.assert_allclose(p, 0.25, atol=0.02)
    assert p.sum() == pytest.approx(1.0)


def test_all_equal_continuous_rewards_split_evenly_with_no_loss() -> None:
    arms = [ArmStats(5, 10.0, 20.0), ArmStats(3, 6.0, 12.0), ArmStats()]
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(prob_best(arms, kind="continuous", rng=rng), [1 / 3] * 3)
    np.testing.assert_allclose(expected_loss(arms, kind="continuous", rng=rng), [0.0] * 3)
    intervals = credible_intervals(arms, kind="continuous")
    np.testing.assert_allclose(intervals, [[2.0, 2.0]] * 3)


def test_one_arm_is_always_best() -> None:
    rng = np.random.default_rng(0)
    for kind in ("binary", "continuous"):
        assert prob_best([binary(3, 9)], kind=kind, rng=rng).tolist() == [1.0]  # type: ignore[arg-type]
        assert expected_loss([binary(3, 9)], kind=kind, rng=rng).tolist() == [0.0]  # type: ignore[arg-type]


def test_no_arms_give_empty_answers() -> None:
    rng = np.random.default_rng(0)
    assert prob_best([], kind="binary", rng=rng).shape == (0,)
    assert credible_intervals([], kind="binary").shape == (0, 2)


def test_draws_are_reproducible_from_the_seed() -> None:
    arms = [binary(5, 50), binary(9, 50)]
    first = sample_posteriors(arms, kind="binary", rng=np.random.default_rng(42), draws=100)
    again = sample_posteriors(arms, kind="binary", rng=np.random.default_rng(42), draws=100)
    other = sample_posteriors(arms, kind="binary", rng=np.random.default_rng(43), draws=100)
    assert first.shape == (100, 2)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_beta_posterior_uses_the_uniform_prior() -> None:
    post = posteriors([binary(3, 10)], kind="binary")[0]
    assert post == BetaPosterior(alpha=4.0, beta=8.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: prob_best([ArmStats()], kind="binary", rng=np.random.default_rng(0), draws=0),
            "The number of posterior draws must be at least 1, but 0 was given.",
        ),
        (
            lambda: credible_intervals([ArmStats()], kind="binary", level=1.0),
            "The credible level must be in (0, 1), but 1.0 was given.",
        ),
        (
            lambda: posteriors([ArmStats()], kind="count"),  # type: ignore[arg-type]
            "The reward kind must be 'binary' or 'continuous', but 'count' was given.",
        ),
    ],
)
def test_bad_arguments_raise_with_a_sentence(call: object, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        call()  # type: ignore[operator]
    assert str(caught.value) == message
