from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bandit import EpsilonGreedyConfig, FixedConfig, ThompsonConfig, Ucb1Config
from bandit.errors import InvalidInputError
from bandit.simulate import _batch_rewards, arm_names, simulate

ARMS = [0.05, 0.06, 0.07]
HORIZON, BATCH = 100_000, 1000
SEEDS = 60


def uniform(k: int) -> FixedConfig:
    return FixedConfig(dict.fromkeys(arm_names(k), 1 / k))


@pytest.mark.slow
def test_batched_thompson_regret_is_close_to_online_and_below_the_alternatives() -> None:
    runs = {
        "thompson, online (batch 1)": simulate(
            ARMS, reward="bernoulli", policy=ThompsonConfig(), horizon=HORIZON, batch=1, seeds=SEEDS
        ),
        "thompson, batch 1000": simulate(
            ARMS,
            reward="bernoulli",
            policy=ThompsonConfig(),
            horizon=HORIZON,
            batch=BATCH,
            seeds=SEEDS,
        ),
        "epsilon-greedy 0.1": simulate(
            ARMS,
            reward="bernoulli",
            policy=EpsilonGreedyConfig(),
            horizon=HORIZON,
            batch=BATCH,
            seeds=SEEDS,
        ),
        "ucb1": simulate(
            ARMS, reward="bernoulli", policy=Ucb1Config(), horizon=HORIZON, batch=BATCH, seeds=SEEDS
        ),
        "uniform": simulate(
            ARMS, reward="bernoulli", policy=uniform(3), horizon=HORIZON, batch=BATCH, seeds=SEEDS
        ),
    }
    lines = [f"\narms {ARMS}, horizon {HORIZON:,}, {SEEDS} seeds: pseudo-regret"]
    lines.append(f"{'policy':<28}{'mean':>9}{'p5':>9}{'p50':>9}{'p95':>9}")
    for name, r in runs.items():
        lines.append(f"{name:<28}{r.mean:9.1f}{r.p5:9.1f}{r.p50:9.1f}{r.p95:9.1f}")
    print("\n".join(lines))

    online = runs["thompson, online (batch 1)"].mean
    batched = runs["thompson, batch 1000"].mean
    assert batched <= 1.15 * online
    for other in ("epsilon-greedy 0.1", "ucb1", "uniform"):
        assert batched < 0.7 * runs[other].mean, other
        assert runs["thompson, batch 1000"].p50 < runs[other].p50, other


def test_uniform_regret_is_the_mean_gap_times_the_horizon() -> None:
    result = simulate(
        ARMS, reward="bernoulli", policy=uniform(3), horizon=30_000, batch=500, seeds=20
    )
    # Per request the gap is 0.02, 0.01 or 0 with probability 1/3 each.
    gap_var = (0.02**2 + 0.01**2) / 3 - 0.01**2
    se = math.sqrt(30_000 * gap_var / 20)
    assert abs(result.mean - 300.0) < 4 * se
    assert result.pulls.sum() == 20 * 30_000


def test_runs_are_reproducible_from_their_seeds() -> None:
    kwargs = {"reward": "bernoulli", "horizon": 5000, "batch": 500}
    a = simulate(ARMS, policy=ThompsonConfig(draws=1000), seeds=[3, 4], **kwargs)  # type: ignore[arg-type]
    b = simulate(ARMS, policy=ThompsonConfig(draws=1000), seeds=[3, 4], **kwargs)  # type: ignore[arg-type]
    c = simulate(ARMS, policy=ThompsonConfig(draws=1000), seeds=[5, 6], **kwargs)  # type: ignore[arg-type]
    np.testing.assert_array_equal(a.regret, b.regret)
    assert not np.array_equal(a.regret, c.regret)
    # In batched mode each seed's run depends on that seed alone.
    solo = simulate(ARMS, policy=ThompsonConfig(draws=1000), seeds=[4], **kwargs)  # type: ignore[arg-type]
    assert solo.regret[0] == a.regret[1]


def test_result_has_the_cli_json_shape() -> None:
    result = simulate(
        ARMS,
        reward="bernoulli",
        policy=ThompsonConfig(draws=500),
        horizon=2000,
        batch=1000,
        seeds=3,
    )
    as_dict = result.to_dict()
    assert set(as_dict) == {"policy", "arms", "horizon", "batch", "seeds", "regret"}
    assert as_dict["seeds"] == 3 and as_dict["policy"] == "thompson"
    assert as_dict["regret"] == {
        "mean": result.mean,
        "p5": result.p5,
        "p50": result.p50,
        "p95": result.p95,
    }
    p5, p50, p95 = np.percentile(result.regret, [5, 50, 95])
    assert (result.p5, result.p50, result.p95) == (p5, p50, p95)
    np.testing.assert_allclose(result.regret, result.pulls @ (0.07 - np.array(ARMS)))


def test_online_thompson_honours_the_floor_and_burn_in() -> None:
    floor = simulate(
        ARMS,
        reward="bernoulli",
        policy=ThompsonConfig(min_weight=0.1),
        horizon=20_000,
        batch=1,
        seeds=4,
    )
    assert floor.pulls.min() >= 0.1 * 20_000 * 0.9
    burn = simulate(
        [0.1, 0.9],
        reward="bernoulli",
        policy=ThompsonConfig(burn_in=2000),
        horizon=6000,
        batch=1,
        seeds=4,
    )
    # Both arms are served evenly until each has 2000 rewards, so the worse arm gets at least 2000.
    assert burn.pulls[:, 0].min() >= 2000


def test_gaussian_arms_are_simulated_in_both_modes() -> None:
    for batch in (1, 200):
        ts = simulate(
            [0.0, 0.3, 0.5],
            reward="gaussian",
            policy=ThompsonConfig(draws=1000),
            horizon=4000,
            batch=batch,
            seeds=4,
        )
        flat = simulate(
            [0.0, 0.3, 0.5],
            reward="gaussian",
            policy=uniform(3),
            horizon=4000,
            batch=batch,
            seeds=4,
        )
        assert ts.mean < flat.mean


def test_batch_rewards_have_the_exact_gaussian_sufficient_statistics() -> None:
    rng = np.random.default_rng(0)
    mu, sigma, count = np.array([1.5]), 2.0, 5
    draws = [_batch_rewards(np.array([count]), mu, "gaussian", sigma, rng) for _ in range(20_000)]
    total = np.array([d[0][0] for d in draws])
    total_sq = np.array([d[1][0] for d in draws])
    # The sum is N(c mu, c sigma^2); the sample variance is sigma^2 chi2(c - 1) / (c - 1).
    assert (
        stats.kstest(total, stats.norm(count * mu[0], sigma * math.sqrt(count)).cdf).pvalue > 0.01
    )
    sample_var = (total_sq - total**2 / count) / (count - 1)
    assert (
        stats.kstest(sample_var * (count - 1) / sigma**2, stats.chi2(count - 1).cdf).pvalue > 0.01
    )
    zero = _batch_rewards(np.array([0, 1]), np.array([3.0, 3.0]), "gaussian", 1.0, rng)
    assert zero[0][0] == 0.0 and zero[1][0] == 0.0
    assert zero[1][1] == pytest.approx(zero[0][1] ** 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arms": []}, "arms must be a non-empty list of finite mean rewards, but [] was given."),
        ({"arms": [0.2, 1.2]}, "Bernoulli arms need means in [0, 1], but [0.2, 1.2] was given."),
        (
            {"reward": "poisson"},
            "reward must be 'bernoulli' or 'gaussian', but 'poisson' was given.",
        ),
        ({"horizon": 0}, "horizon and batch must be positive, but 0 and 10 were given."),
        ({"seeds": []}, "At least one seed is needed, but [] was given."),
        ({"sigma": 0.0}, "sigma must be positive and finite, but 0.0 was given."),
    ],
)
def test_bad_simulations_are_rejected(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "arms": [0.1, 0.2],
        "reward": "bernoulli",
        "policy": ThompsonConfig(),
        "horizon": 100,
        "batch": 10,
        "seeds": 2,
    }
    args.update(kwargs)
    arms = args.pop("arms")
    with pytest.raises(InvalidInputError) as caught:
        simulate(arms, **args)  # type: ignore[arg-type]
    assert str(caught.value) == message
