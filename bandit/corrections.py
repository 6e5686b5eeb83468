"""Multiple-comparison corrections."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from bandit.errors import InvalidInputError

__all__ = ["holm", "holm_reject"]


def holm(p_values: Sequence[float] | NDArray[np.float64]) -> NDArray[np.float64]:
    """Holm's step-down adjusted p-values (controls the family-wise error rate).

    With the :math:`m` p-values sorted ascending, :math:`p_{(1)} \\le \\dots \\le p_{(m)}`,

    .. math:: \\tilde p_{(i)} = \\max_{j \\le i} \\min\\big(1, (m - j + 1)\\, p_{(j)}\\big),

    returned in the input order.

    Parameters
    ----------
    p_values : array-like, shape ``(m,)``
        Values in ``[0, 1]``.

    Returns
    -------
    ndarray, shape ``(m,)``
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        msg = f"The p-values must be a 1-dimensional array, but one of shape {p.shape} was given."
        raise InvalidInputError(msg)
    if np.any(~((p >= 0.0) & (p <= 1.0))):
        bad = p[~((p >= 0.0) & (p <= 1.0))][0]
        msg = f"Every p-value must be in [0, 1], but {float(bad)!r} was given."
        raise InvalidInputError(msg)
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted


def holm_reject(
    p_values: Sequence[float] | NDArray[np.float64], *, alpha: float = 0.05
) -> NDArray[np.bool_]:
    """Which hypotheses Holm's procedure rejects at family-wise level ``alpha``, shape ``(m,)``."""
    if not (0.0 < alpha < 1.0):
        msg = f"The significance level alpha must be in (0, 1), but {alpha!r} was given."
        raise InvalidInputError(msg)
    return holm(p_values) <= alpha
