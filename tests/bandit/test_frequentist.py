"""Golden values from statsmodels and scipy for every statistic, p-value and interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats import proportion as smp
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)
from statsmodels.stats.weightstats import DescrStatsW
from statsmodels.stats.weightstats import ttest_ind as sm_ttest_ind

from bandit.errors import InvalidInputError, InvalidStatsError
from bandit.frequentist import (
    compare_to_control,
    mean_interval,
    noninferiority_test,
    welch_test,
    z_test,
)
from bandit.stats import ArmStats

RTOL = 1e-9

PROPORTIONS = [(100, 1000, 120, 900), (7, 50, 3, 61), (480, 5000, 530, 5000), (0, 20, 4, 20)]


def binary(successes: int, n: int) -> ArmStats:
    return ArmStats(n, successes, successes)


@pytest.mark.parametrize(("s_c", "n_c", "s_t", "n_t"), PROPORTIONS)
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_z_test_matches_statsmodels(s_c: int, n_c: int, s_t: int, n_t: int, alpha: float) -> None:
    got = z_test(binary(s_c, n_c), binary(s_t, n_t), alpha=alpha)
    z, p = proportions_ztest([s_t, s_c], [n_t, n_c])
    low, high = confint_proportions_2indep(
        s_t, n_t, s_c, n_c, method="wald", compare="diff", alpha=alpha
    )
    np.testing.assert_allclose(
        [got.statistic, got.p_value, got.ci_low, got.ci_high], [z, p, low, high], rtol=RTOL
    )
    assert got.diff == pytest.approx(s_t / n_t - s_c / n_c, rel=RTOL)


def rewards(seed: int, mean: float, sd: float, n: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, sd, n)


@pytest.mark.parametrize(("n_c", "n_t", "sd_c", "sd_t"), [(50, 80, 2.0, 1.0), (5, 400, 1.0, 3.0)])
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_welch_matches_scipy(n_c: int, n_t: int, sd_c: float, sd_t: float, alpha: float) -> None:
    x, y = rewards(1, 1.0, sd_c, n_c), rewards(2, 1.4, sd_t, n_t)
    got = welch_test(
        ArmStats.from_rewards(x.tolist()), ArmStats.from_rewards(y.tolist()), alpha=alpha
    )
    ref = stats.ttest_ind_from_stats(
        y.mean(), y.std(ddof=1), n_t, x.mean(), x.std(ddof=1), n_c, equal_var=False
    )
    raw = stats.ttest_ind(y, x, equal_var=False)
    ci = raw.confidence_interval(confidence_level=1 - alpha)
    np.testing.assert_allclose(
        [got.statistic, got.p_value, got.df, got.ci_low, got.ci_high],
        [ref.statistic, ref.pvalue, raw.df, ci.low, ci.high],
        rtol=RTOL,
    )


@pytest.mark.parametrize(("s_c", "n_c", "s_t", "n_t"), PROPORTIONS[:3])
def test_binary_noninferiority_matches_statsmodels(s_c: int, n_c: int, s_t: int, n_t: int) -> None:
    got = noninferiority_test(binary(s_c, n_c), binary(s_t, n_t), kind="binary", margin=0.02)
    # Imported through its module: pytest would collect a bare test_* function.
    ref = smp.test_proportions_2indep(
        s_t, n_t, s_c, n_c, value=-0.02, method="wald", compare="diff", alternative="larger"
    )
    np.testing.assert_allclose([got.statistic, got.p_value], [ref.statistic, ref.pvalue], rtol=RTOL)
    # The interval's lower end is the one-sided 95% bound: a 90% two-sided Wald interval.
    low, high = confint_proportions_2indep(
        s_t, n_t, s_c, n_c, method="wald", compare="diff", alpha=0.10
    )
    np.testing.assert_allclose([got.ci_low, got.ci_high], [low, high], rtol=RTOL)


def test_continuous_noninferiority_matches_statsmodels() -> None:
    x, y = rewards(5, 10.0, 2.0, 60), rewards(6, 9.8, 2.5, 70)
    got = noninferiority_test(
        ArmStats.from_rewards(x.tolist()),
        ArmStats.from_rewards(y.tolist()),
        kind="continuous",
        margin=0.5,
    )
    t, p, df = sm_ttest_ind(y, x, alternative="larger", usevar="unequal", value=-0.5)
    np.testing.assert_allclose([got.statistic, got.p_value, got.df], [t, p, df], rtol=RTOL)


@pytest.mark.parametrize(("successes", "n"), [(100, 1000), (0, 12), (12, 12), (3, 7)])
def test_binary_mean_interval_is_wilson(successes: int, n: int) -> None:
    got = mean_interval(binary(successes, n), kind="binary", alpha=0.05)
    low, high = proportion_confint(successes, n, alpha=0.05, method="wilson")
    np.testing.assert_allclose([got.low, got.high], [low, high], rtol=RTOL, atol=1e-15)


def test_continuous_mean_interval_is_the_t_interval() -> None:
    x = rewards(9, 3.0, 1.5, 25)
    got = mean_interval(ArmStats.from_rewards(x.tolist()), kind="continuous", alpha=0.1)
    low, high = DescrStatsW(x).tconfint_mean(alpha=0.1)
    np.testing.assert_allclose([got.low, got.high], [low, high], rtol=RTOL)


def test_compare_to_control_tests_every_arm_against_the_first_with_holm() -> None:
    arms = [binary(100, 1000), binary(130, 1000), binary(95, 1000), binary(150, 1000)]
    got = compare_to_control(arms, kind="binary")
    assert len(got) == 3
    raw = [proportions_ztest([a.sum, 100], [a.n, 1000])[1] for a in arms[1:]]
    np.testing.assert_allclose([c.p_value for c in got], raw, rtol=RTOL)
    adjusted = multipletests(raw, method="holm")[1]
    np.testing.assert_allclose([c.adjusted_p_value for c in got], adjusted, rtol=RTOL)
    assert compare_to_control(arms[:1], kind="binary") == []


INF = math.inf

DEGENERATE = [
    # (test, control, treatment, expected (statistic, p, ci_low, ci_high))
    (z_test, ArmStats(), ArmStats(), (0.0, 1.0, -1.0, 1.0)),
    (z_test, ArmStats(), binary(3, 10), (0.0, 1.0, -1.0, 1.0)),
    (z_test, binary(0, 10), binary(0, 20), (0.0, 1.0, 0.0, 0.0)),
    (z_test, binary(10, 10), binary(20, 20), (0.0, 1.0, 0.0, 0.0)),
    (welch_test, ArmStats(), ArmStats(), (0.0, 1.0, -INF, INF)),
    (welch_test, ArmStats(1, 2.0, 4.0), ArmStats(5, 5.0, 5.0), (0.0, 1.0, -INF, INF)),
    (welch_test, ArmStats(3, 6.0, 12.0), ArmStats(4, 8.0, 16.0), (0.0, 1.0, 0.0, 0.0)),
    (welch_test, ArmStats(3, 3.0, 3.0), ArmStats(4, 8.0, 16.0), (INF, 0.0, 1.0, 1.0)),
]


@pytest.mark.parametrize(("test", "control", "treatment", "expected"), DEGENERATE)
def test_degenerate_inputs_have_defined_answers(
    test: object, control: ArmStats, treatment: ArmStats, expected: tuple[float, ...]
) -> None:
    got = test(control, treatment)  # type: ignore[operator]
    assert (got.statistic, got.p_value, got.ci_low, got.ci_high) == expected
    assert not math.isnan(got.df)


def test_degenerate_noninferiority_and_intervals_are_defined() -> None:
    for kind in ("binary", "continuous"):
        got = noninferiority_test(ArmStats(), ArmStats(), kind=kind, margin=0.1)  # type: ignore[arg-type]
        assert got.p_value == 1.0
        assert not any(math.isnan(v) for v in (got.statistic, got.ci_low, got.ci_high, got.diff))
    zero_se = noninferiority_test(binary(0, 50), binary(0, 50), kind="binary", margin=0.01)
    assert (zero_se.p_value, zero_se.ci_low, zero_se.ci_high) == (1.0, 0.0, 0.0)
    # Without data: the mean is defined as 0.0 and the interval is the whole unit range.
    empty = mean_interval(ArmStats(), kind="binary")
    assert (empty.estimate, empty.low, empty.high) == (0.0, 0.0, 1.0)
    one = mean_interval(ArmStats(1, 2.0, 4.0), kind="continuous")
    assert (one.estimate, one.low, one.high) == (2.0, -INF, INF)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: z_test(ArmStats(), ArmStats(), alpha=1.5),
            InvalidInputError,
            "The significance level alpha must be in (0, 1), but 1.5 was given.",
        ),
        (
            lambda: z_test(ArmStats(2, 3.0, 9.0), ArmStats()),
            InvalidStatsError,
            "Binary rewards need 0 <= sum <= n, but arm 0 has n = 2 and sum = 3.0.",
        ),
        (
            lambda: noninferiority_test(ArmStats(), ArmStats(), kind="binary", margin=-0.1),
            InvalidInputError,
            "The non-inferiority margin must be finite and non-negative, but -0.1 was given.",
        ),
        (
            lambda: mean_interval(ArmStats(), kind="ordinal"),  # type: ignore[arg-type]
            InvalidInputError,
            "The reward kind must be 'binary' or 'continuous', but 'ordinal' was given.",
        ),
    ],
)
def test_bad_arguments_raise_with_a_sentence(
    call: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        call()  # type: ignore[operator]
    assert str(caught.value) == message
