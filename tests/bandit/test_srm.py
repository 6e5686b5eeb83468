from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bandit.errors import InvalidInputError
from bandit.srm import srm_test


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        ([5050, 4950], [5000.0, 5000.0]),
        ([980, 2100, 6920], [1000.2, 1999.9, 7000.4]),
        # Propensity sums need not add up to the observed total: proportions count.
        ([300, 700], [0.3, 0.7]),
        ([12, 30, 18, 40], [25.0, 25.0, 25.0, 25.0]),
    ],
)
def test_srm_matches_scipy_chisquare(observed: list[int], expected: list[float]) -> None:
    got = srm_test(observed, expected)
    exp = np.asarray(expected) * sum(observed) / sum(expected)
    ref = stats.chisquare(observed, f_exp=exp)
    np.testing.assert_allclose([got.statistic, got.p_value], [ref.statistic, ref.pvalue], rtol=1e-9)
    assert got.df == len(observed) - 1
    np.testing.assert_allclose(got.expected, exp, rtol=1e-12)


def test_a_real_mismatch_is_flagged() -> None:
    assert srm_test([5300, 4700], [5000, 5000]).p_value < 1e-6
    assert srm_test([5010, 4990], [5000, 5000]).p_value > 0.5


@pytest.mark.parametrize(
    ("observed", "expected", "statistic", "p_value"),
    [
        ([0, 0], [10.0, 10.0], 0.0, 1.0),
        ([7], [7.0], 0.0, 1.0),
        ([], [], 0.0, 1.0),
        ([10, 0], [10.0, 0.0], 0.0, 1.0),
        ([10, 3], [10.0, 0.0], math.inf, 0.0),
        ([4, 4], [0.0, 0.0], math.inf, 0.0),
    ],
)
def test_degenerate_counts_have_defined_answers(
    observed: list[int], expected: list[float], statistic: float, p_value: float
) -> None:
    got = srm_test(observed, expected)
    assert (got.statistic, got.p_value) == (statistic, p_value)
    assert not np.any(np.isnan(got.expected))


@pytest.mark.parametrize(
    ("observed", "expected", "message"),
    [
        (
            [1, 2],
            [1.0],
            "Observed and expected counts must be 1-dimensional arrays of the same length, "
            "but shapes (2,) and (1,) were given.",
        ),
        (
            [1, -2],
            [1.0, 1.0],
            "Every observed count must be finite and non-negative, but [1.0, -2.0] was given.",
        ),
        (
            [1, 2],
            [1.0, math.nan],
            "Every expected count must be finite and non-negative, but [1.0, nan] was given.",
        ),
    ],
)
def test_invalid_counts_are_rejected(
    observed: list[float], expected: list[float], message: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        srm_test(observed, expected)
    assert str(caught.value) == message
