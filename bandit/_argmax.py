"""Arg-max as a distribution, for policies that put their mass on the best arm."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["argmax_share"]


def argmax_share(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Uniform distribution over the maximisers of ``values``, shape ``(K,)``.

    Ties split the mass evenly rather than favouring the first arm, so no arm
    name order leaks into the allocation; ``+inf`` (an untried arm) ties with
    every other ``+inf``.
    """
    is_best = values == values.max()
    share: NDArray[np.float64] = is_best / is_best.sum()
    return share
