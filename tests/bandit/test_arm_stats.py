from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandit.errors import BanditError, InvalidInputError, InvalidStatsError
from bandit.stats import ArmStats, reduce_buckets

rewards = st.lists(
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False),
    max_size=40,
)


def test_empty_stats_have_defined_mean_and_variance() -> None:
    empty = ArmStats()
    assert (empty.n, empty.mean, empty.variance, empty.std) == (0, 0.0, 0.0, 0.0)
    assert ArmStats.from_rewards([2.5]).variance == 0.0


def test_mean_and_variance_match_numpy() -> None:
    x = np.random.default_rng(3).normal(4.0, 2.0, 137)
    stats = ArmStats.from_rewards(x.tolist())
    assert stats.n == 137
    assert stats.mean == pytest.approx(x.mean(), rel=1e-12)
    assert stats.variance == pytest.approx(x.var(ddof=1), rel=1e-9)


@given(rewards, rewards)
def test_partial_aggregates_add_up_to_the_whole(left: list[float], right: list[float]) -> None:
    whole = ArmStats.from_rewards(left + right)
    combined = ArmStats.from_rewards(left) + ArmStats.from_rewards(right)
    assert combined.n == whole.n
    assert combined.sum == pytest.approx(whole.sum, rel=1e-9, abs=1e-6)
    assert combined.sum_sq == pytest.approx(whole.sum_sq, rel=1e-9, abs=1e-6)
    assert combined.variance >= 0.0


def test_discounted_buckets_weight_each_age_by_a_power_of_gamma() -> None:
    old, middle, new = ArmStats(10, 4, 4), ArmStats(20, 5, 5), ArmStats(30, 9, 9)
    got = reduce_buckets([old, middle, new], discount=0.5)
    assert got.n == pytest.approx(0.25 * 10 + 0.5 * 20 + 30)
    assert got.sum == pytest.approx(0.25 * 4 + 0.5 * 5 + 9)
    windowed = reduce_buckets([old, middle, new], window=2)
    assert windowed == middle + new
    assert reduce_buckets([old, middle, new]) == old + middle + new
    assert reduce_buckets([]) == ArmStats()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": -1}, "ArmStats.n must be non-negative, but -1 was given."),
        ({"n": 2, "sum_sq": -1.0}, "ArmStats.sum_sq must be non-negative, but -1.0 was given."),
        ({"n": math.nan}, "ArmStats.n must be finite, but nan was given."),
        ({"n": True}, "ArmStats.n must be a number, but True was given."),
        (
            {"n": 0, "sum": 1.0, "sum_sq": 1.0},
            "ArmStats with n = 0 must have sum = 0 and sum_sq = 0, but sum = 1.0 and "
            "sum_sq = 1.0 were given.",
        ),
        (
            {"n": 2, "sum": 4.0, "sum_sq": 1.0},
            "ArmStats(n=2, sum=4.0, sum_sq=1.0) is impossible: n * sum_sq must be at least "
            "sum ** 2.",
        ),
    ],
)
def test_impossible_statistics_are_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidStatsError) as caught:
        ArmStats(**kwargs)
    assert str(caught.value) == message
    assert isinstance(caught.value, BanditError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"discount": 0.0}, "The discount must be in (0, 1], but 0.0 was given."),
        ({"discount": 1.5}, "The discount must be in (0, 1], but 1.5 was given."),
        ({"window": 0}, "The window must be a positive number of buckets, but 0 was given."),
    ],
)
def test_bad_bucket_options_are_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        reduce_buckets([ArmStats(1, 1, 1)], **kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_numpy_scalars_are_accepted() -> None:
    stats = ArmStats(np.int64(4), np.float64(2.0), np.float64(2.0))
    assert stats.mean == 0.5
