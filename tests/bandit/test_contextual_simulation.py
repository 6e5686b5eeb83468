"""Acceptance by simulation: contextual policies against non-contextual Thompson sampling.

The digits figures printed by ``test_digits_replayed_as_a_ten_arm_bandit`` (``pytest -s``)
are the ones in the README's "Contextual bandits (preview)" section.
"""

from __future__ import annotations

import numpy as np
import pytest

from bandit.contextual import LinearConfig
from bandit.errors import InvalidInputError
from bandit.replay import classification_rewards, replay

SEEDS = range(10)


def linear_problem(
    seed: int, rounds: int = 20_000, features: int = 5, arms: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rewards z·θ_k + N(0, 1): which arm is best depends on the context."""
    rng = np.random.default_rng(seed)
    theta = 0.5 * rng.normal(size=(arms, features))
    bias = rng.normal(0.0, 0.1, size=arms)
    x = rng.normal(size=(rounds, features))
    means = x @ theta.T + bias
    return x, means + rng.normal(size=means.shape), means


def test_lints_regret_is_below_half_of_thompson_sampling_on_a_linear_problem() -> None:
    regret: dict[str, list[float]] = {"lints": [], "thompson": []}
    against_fixed: list[float] = []
    for seed in SEEDS:
        x, rewards, means = linear_problem(seed)
        for policy in regret:
            result = replay(
                x,
                rewards,
                means=means,
                policy=policy,  # type: ignore[arg-type]
                rng=np.random.default_rng(1000 + seed),
                batch=500,
                reward_kind="continuous",
                linear=LinearConfig(exploration=1.0, draws=1),
            )
            regret[policy].append(result.regret_context)
            if policy == "lints":
                against_fixed.append(result.regret_fixed)
    lints, thompson = np.mean(regret["lints"]), np.mean(regret["thompson"])
    print(f"\nmean regret over 20,000 rounds, 10 seeds: LinTS {lints:.0f}, Thompson {thompson:.0f}")
    assert lints < 0.5 * thompson
    # No fixed arm is good everywhere here: LinTS earns more than the best one in hindsight.
    assert max(against_fixed) < 0


def test_digits_replayed_as_a_ten_arm_bandit() -> None:
    from sklearn.datasets import load_digits

    x, labels = load_digits(return_X_y=True)
    averages: dict[str, list[float]] = {"lints": [], "linucb": [], "thompson": [], "random": []}
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(len(labels))
        rewards = classification_rewards(labels[order], np.arange(10))
        for policy in averages:
            result = replay(
                x[order],
                rewards,
                policy=policy,  # type: ignore[arg-type]
                rng=np.random.default_rng(100 + seed),
                batch=50,
                linear=LinearConfig(ridge=10.0, exploration=0.1, draws=1),
            )
            averages[policy].append(result.average_reward)
    mean = {policy: float(np.mean(values)) for policy, values in averages.items()}
    print("\ndigits, 1,797 rounds, 5 seeds, final average reward:", mean)
    assert mean["lints"] > mean["thompson"] + 0.4
    assert mean["lints"] > mean["random"] + 0.4
    assert mean["linucb"] > mean["random"] + 0.4
    assert 0.05 < mean["random"] < 0.15
    assert 0.05 < mean["thompson"] < 0.2


def test_replay_regrets_match_their_definitions() -> None:
    rewards = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    result = replay(np.zeros((4, 1)), rewards, policy="random", rng=np.random.default_rng(0))
    got = rewards[np.arange(4), result.chosen]
    assert result.regret_context == pytest.approx(4 - got.sum())
    assert result.regret_fixed == pytest.approx(2 - got.sum())
    assert result.cumulative_reward == got.sum()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"policy": "greedy"}, r"Unknown replay policy 'greedy'"),
        ({"policy": "lints", "batch": 0}, r"batch must be a whole number of rounds of at least 1"),
        ({"policy": "lints", "means": np.zeros((3, 3))}, r"shapes \(3, 1\), \(3, 2\) and \(3, 3\)"),
    ],
)
def test_replay_refuses_bad_input(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        replay(np.zeros((3, 1)), np.zeros((3, 2)), rng=np.random.default_rng(0), **kwargs)  # type: ignore[arg-type]
