from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

from bandit.corrections import holm, holm_reject
from bandit.errors import InvalidInputError

p_values = st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=30)


# multipletests runs gc.collect() on every call, so a few examples cost seconds.
@settings(max_examples=15, deadline=None)
@given(p_values)
def test_holm_matches_statsmodels(p: list[float]) -> None:
    reject, adjusted, _, _ = multipletests(p, alpha=0.05, method="holm")
    np.testing.assert_allclose(holm(p), adjusted, rtol=1e-9, atol=0.0)
    np.testing.assert_array_equal(holm_reject(p, alpha=0.05), reject)


def test_holm_on_a_textbook_example() -> None:
    # Sorted 0.01, 0.02, 0.03, 0.04 with m = 4: 0.04, 0.06, 0.06 (monotone), 0.06.
    np.testing.assert_allclose(holm([0.03, 0.01, 0.04, 0.02]), [0.06, 0.04, 0.06, 0.06])


def test_holm_of_nothing_is_empty() -> None:
    assert holm([]).shape == (0,)


@pytest.mark.parametrize(
    ("p", "message"),
    [
        ([0.1, 1.2], "Every p-value must be in [0, 1], but 1.2 was given."),
        ([float("nan")], "Every p-value must be in [0, 1], but nan was given."),
        ([[0.1]], "The p-values must be a 1-dimensional array, but one of shape (1, 1) was given."),
    ],
)
def test_invalid_p_values_are_rejected(p: list[float], message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        holm(p)
    assert str(caught.value) == message
