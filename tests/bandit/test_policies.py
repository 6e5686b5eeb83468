"""allocate(): invariants of every policy, and each policy's behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bandit import (
    CanaryConfig,
    EpsilonGreedyConfig,
    FixedConfig,
    PolicyConfig,
    ThompsonConfig,
    Ucb1Config,
)
from bandit.allocation import allocate, apply_floor
from bandit.bayesian import prob_best
from bandit.errors import InvalidInputError, InvalidPolicyError
from bandit.stats import ArmStats


def binary(successes: float, n: float) -> ArmStats:
    return ArmStats(n, successes, successes)


@st.composite
def binary_arms(draw: st.DrawFn, min_arms: int = 1, max_arms: int = 5) -> list[ArmStats]:
    k = draw(st.integers(min_arms, max_arms))
    arms = []
    for _ in range(k):
        n = draw(st.integers(0, 2000))
        arms.append(binary(draw(st.integers(0, n)), n))
    return arms


@st.composite
def configs(draw: st.DrawFn, k: int) -> PolicyConfig:
    floor = draw(st.sampled_from([0.0, 0.01, 1 / (3 * k), 1 / k]))
    choice = draw(st.sampled_from(["thompson", "epsilon_greedy", "ucb1", "fixed", "canary"]))
    if choice == "thompson":
        return ThompsonConfig(min_weight=floor, draws=500)
    if choice == "epsilon_greedy":
        return EpsilonGreedyConfig(min_weight=floor, epsilon=draw(st.floats(0.0, 1.0)))
    if choice == "ucb1":
        return Ucb1Config(min_weight=floor, c=draw(st.floats(0.0, 3.0)))
    if choice == "fixed" or k < 2:
        raw = draw(st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k))
        assume(sum(raw) > 1e-3)
        total = math.fsum(raw)
        return FixedConfig({f"arm{i}": w / total for i, w in enumerate(raw)}, min_weight=floor)
    return CanaryConfig("arm1", "arm0", min_weight=floor, min_samples=draw(st.integers(0, 500)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kind=st.sampled_from(["binary", "continuous"]))
def test_weights_respect_the_floor_and_sum_to_one(data: st.DataObject, kind: str) -> None:
    arms = data.draw(binary_arms())
    config = data.draw(configs(len(arms)))
    named = [(f"arm{i}", arm) for i, arm in enumerate(arms)]
    previous = data.draw(st.none() | st.just({name: 1 / len(arms) for name, _ in named}))
    result = allocate(
        named,
        config,
        kind=kind,
        rng=np.random.default_rng(0),
        previous=previous,  # type: ignore[arg-type]
    )
    weights = np.array(list(result.weights.values()))
    assert list(result.weights) == [name for name, _ in named]
    assert np.all(weights >= config.min_weight)
    assert abs(math.fsum(weights) - 1.0) <= 1e-12
    assert result.reason.endswith(".")
    assert result.policy == config.kind


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 1000),
    data=st.data(),
    others=st.lists(st.tuples(st.integers(0, 1000), st.floats(0.0, 1.0)), min_size=1, max_size=3),
    floor=st.sampled_from([0.0, 0.05]),
)
def test_more_reward_on_an_arm_never_lowers_its_weight(
    n: int, data: st.DataObject, others: list[tuple[int, float]], floor: float
) -> None:
    low = data.draw(st.integers(0, n - 1))
    high = data.draw(st.integers(low + 1, n))
    rest = [(f"b{i}", binary(round(rate * m), m)) for i, (m, rate) in enumerate(others)]
    for config in (EpsilonGreedyConfig(min_weight=floor), Ucb1Config(min_weight=floor)):
        before = allocate(
            [("a", binary(low, n)), *rest], config, kind="binary", rng=np.random.default_rng(1)
        )
        after = allocate(
            [("a", binary(high, n)), *rest], config, kind="binary", rng=np.random.default_rng(1)
        )
        assert after.weights["a"] >= before.weights["a"]
    draws = 20_000
    thompson = ThompsonConfig(min_weight=floor, draws=draws)
    before = allocate(
        [("a", binary(low, n)), *rest], thompson, kind="binary", rng=np.random.default_rng(1)
    )
    after = allocate(
        [("a", binary(high, n)), *rest], thompson, kind="binary", rng=np.random.default_rng(1)
    )
    # P(best) is exactly monotone; Monte Carlo noise gets four standard errors of slack.
    p = before.weights["a"]
    assert after.weights["a"] >= p - 4 * math.sqrt(p * (1 - p) / draws) - 1e-12


def test_thompson_weight_of_the_leader_grows_as_evidence_accumulates() -> None:
    config = ThompsonConfig(min_weight=0.01)
    weights = []
    for n in (20, 200, 2000, 20000):
        arms = [("control", binary(0.05 * n, n)), ("better", binary(0.07 * n, n))]
        weights.append(
            allocate(arms, config, kind="binary", rng=np.random.default_rng(5)).weights["better"]
        )
    assert weights == sorted(weights)
    assert weights[-1] > 0.98


def test_thompson_weights_are_the_floored_probabilities_of_being_best() -> None:
    arms = [binary(50, 1000), binary(62, 1000), binary(55, 1000)]
    named = [("a", arms[0]), ("b", arms[1]), ("c", arms[2])]
    got = allocate(
        named, ThompsonConfig(min_weight=0.05), kind="binary", rng=np.random.default_rng(9)
    )
    p = prob_best(arms, kind="binary", rng=np.random.default_rng(9))
    np.testing.assert_allclose(list(got.weights.values()), 0.05 + (1 - 3 * 0.05) * p, atol=1e-12)
    assert got.prob_best is not None and got.expected_loss is not None
    assert got.prob_best["b"] == pytest.approx(p[1])
    assert got.decision == "reweight"
    assert "'b' leads" in got.reason


def test_epsilon_greedy_splits_the_greedy_share_among_tied_leaders() -> None:
    named = [("a", binary(10, 100)), ("b", binary(20, 100)), ("c", binary(20, 100))]
    got = allocate(
        named, EpsilonGreedyConfig(epsilon=0.3), kind="binary", rng=np.random.default_rng(0)
    )
    np.testing.assert_allclose(list(got.weights.values()), [0.1, 0.1 + 0.35, 0.1 + 0.35])
    untried = allocate(
        [("a", binary(10, 100)), ("new", ArmStats())],
        EpsilonGreedyConfig(epsilon=0.2),
        kind="binary",
        rng=np.random.default_rng(0),
    )
    assert untried.weights == pytest.approx({"a": 0.1, "new": 0.9})
    assert "untried" in untried.reason


def test_ucb1_puts_everything_above_the_floor_on_the_highest_index() -> None:
    named = [("a", binary(60, 100)), ("b", binary(5, 10)), ("c", binary(700, 1000))]
    total = 1110
    index = [s.mean + math.sqrt(2 * math.log(total) / s.n) for _, s in named]
    assert int(np.argmax(index)) == 1
    got = allocate(named, Ucb1Config(min_weight=0.1), kind="binary", rng=np.random.default_rng(0))
    assert got.weights == pytest.approx({"a": 0.1, "b": 0.8, "c": 0.1})
    first = allocate(
        [("a", ArmStats()), ("b", ArmStats())],
        Ucb1Config(),
        kind="binary",
        rng=np.random.default_rng(0),
    )
    assert first.weights == {"a": 0.5, "b": 0.5}


def test_fixed_split_is_used_as_configured() -> None:
    named = [("a", binary(1, 10)), ("b", binary(9, 10))]
    got = allocate(
        named, FixedConfig({"a": 0.8, "b": 0.2}), kind="binary", rng=np.random.default_rng(0)
    )
    assert got.weights == pytest.approx({"a": 0.8, "b": 0.2}, abs=1e-15)
    assert got.decision == "fixed"


def test_burn_in_keeps_previous_weights_until_every_arm_has_enough_rewards() -> None:
    config = ThompsonConfig(burn_in=100)
    named = [("a", binary(5, 150)), ("b", binary(30, 60))]
    kept = allocate(
        named, config, kind="binary", rng=np.random.default_rng(0), previous={"a": 0.7, "b": 0.3}
    )
    assert kept.weights == pytest.approx({"a": 0.7, "b": 0.3}, abs=1e-15)
    assert kept.decision == "burn_in"
    assert kept.reason == (
        "Burn-in: arm 'b' has 60 rewarded requests, fewer than the 100 every arm needs before "
        "reweighting; keeping the previous weights."
    )
    fresh = allocate(named, config, kind="binary", rng=np.random.default_rng(0))
    assert fresh.weights == {"a": 0.5, "b": 0.5}
    ready = allocate(
        [("a", binary(5, 150)), ("b", binary(30, 100))],
        config,
        kind="binary",
        rng=np.random.default_rng(0),
    )
    assert ready.decision == "reweight"
    assert ready.weights["b"] > 0.99


def test_discount_lets_a_reversal_show_through() -> None:
    # Arm a was better long ago; b is better lately.
    a = [binary(800, 1000), binary(10, 100)]
    b = [binary(100, 1000), binary(60, 100)]
    named = [("a", a), ("b", b)]
    plain = allocate(
        named, EpsilonGreedyConfig(epsilon=0.0), kind="binary", rng=np.random.default_rng(0)
    )
    discounted = allocate(
        named,
        EpsilonGreedyConfig(epsilon=0.0, discount=0.05),
        kind="binary",
        rng=np.random.default_rng(0),
    )
    windowed = allocate(
        named,
        EpsilonGreedyConfig(epsilon=0.0, window=1),
        kind="binary",
        rng=np.random.default_rng(0),
    )
    assert plain.weights == {"a": 1.0, "b": 0.0}
    assert discounted.weights == {"a": 0.0, "b": 1.0}
    assert windowed.weights == {"a": 0.0, "b": 1.0}
    assert discounted.counts["a"] == pytest.approx(0.05 * 1000 + 100)


def test_apply_floor_keeps_order_and_the_floor() -> None:
    got = apply_floor(np.array([0.0, 0.25, 0.75]), 0.1)
    np.testing.assert_allclose(got, [0.1, 0.1 + 0.7 * 0.25, 0.1 + 0.7 * 0.75])
    seven = apply_floor(np.array([1.0, 0, 0, 0, 0, 0, 0]), 1 / 7)
    assert np.all(seven >= 1 / 7)


@pytest.mark.parametrize(
    ("arms", "config", "message"),
    [
        (
            [],
            ThompsonConfig(),
            "At least one arm is needed to allocate traffic, but none was given.",
        ),
        (
            [("a", ArmStats()), ("a", ArmStats())],
            ThompsonConfig(),
            "Arm names must be unique, but ['a'] appear more than once.",
        ),
        (
            [("a", ArmStats()), ("b", ArmStats()), ("c", ArmStats())],
            ThompsonConfig(min_weight=0.4),
            "min_weight 0.4 cannot hold for 3 arms: it must be at most 1/3 = 0.333333.",
        ),
        (
            [("a", ArmStats()), ("b", ArmStats())],
            FixedConfig({"a": 1.0}),
            "Fixed weights must name exactly the active arms ['a', 'b'], but they name ['a'].",
        ),
    ],
)
def test_bad_allocations_raise_with_a_sentence(
    arms: list[tuple[str, ArmStats]], config: PolicyConfig, message: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        allocate(arms, config, kind="binary", rng=np.random.default_rng(0))
    assert str(caught.value) == message


def test_impossible_binary_statistics_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match="Binary rewards need 0 <= sum <= n"):
        allocate(
            [("a", ArmStats(2, 3.0, 5.0))],
            ThompsonConfig(),
            kind="binary",
            rng=np.random.default_rng(0),
        )


def test_min_weight_above_one_over_k_is_a_policy_error() -> None:
    with pytest.raises(InvalidPolicyError):
        allocate(
            [("a", ArmStats()), ("b", ArmStats()), ("c", ArmStats())],
            EpsilonGreedyConfig(min_weight=0.5),
            kind="binary",
            rng=np.random.default_rng(0),
        )
