"""Sample-ratio mismatch: did each arm get the traffic its allocation promised?

The expected count of arm :math:`k` is the sum over served requests of the
probability with which the allocation in force would have chosen it,

.. math:: E_k = \\sum_t \\pi_t(k) = \\sum_v N_v\\, w_{k,v},

where :math:`N_v` is the number of requests served under allocation version
:math:`v` (all arms together) and :math:`w_{k,v}` that version's weight of
arm :math:`k`. The lake therefore keeps one count per allocation version and
one count of served requests per arm; the weights come from the SQL store.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from scipy import stats as sps
else:
    from bandit._lazy import scipy_stats as sps

from bandit.errors import InvalidInputError

__all__ = ["SrmResult", "srm_test"]


@dataclass(frozen=True)
class SrmResult:
    """Pearson chi-square test of observed against expected counts.

    ``expected`` holds the expected counts rescaled to the observed total,
    shape ``(K,)``; ``df`` counts the arms with positive expected count, minus one.
    """

    statistic: float
    p_value: float
    df: int
    expected: NDArray[np.float64]


def srm_test(
    observed: Sequence[float] | NDArray[np.float64],
    expected: Sequence[float] | NDArray[np.float64],
) -> SrmResult:
    """Chi-square test of sample-ratio mismatch.

    Expected counts are rescaled to the observed total,
    :math:`\\tilde E_k = E_k \\sum_j O_j / \\sum_j E_j`, and

    .. math:: X^2 = \\sum_{k: \\tilde E_k > 0} \\frac{(O_k - \\tilde E_k)^2}{\\tilde E_k},
              \\qquad p = \\Pr(\\chi^2_{K'-1} \\ge X^2),

    with :math:`K'` the number of arms with positive expected count, as
    ``scipy.stats.chisquare``. Defined answers for degenerate input: no
    observations or fewer than two arms with positive expectation give
    statistic 0 and p-value 1; observations on an arm expected to get none
    give statistic ``inf`` and p-value 0.

    Parameters
    ----------
    observed : array-like, shape ``(K,)``
        Requests served by each arm.
    expected : array-like, shape ``(K,)``
        Summed logged propensities of each arm, :math:`E_k`.
    """
    obs = np.asarray(observed, dtype=np.float64)
    exp = np.asarray(expected, dtype=np.float64)
    if obs.ndim != 1 or exp.shape != obs.shape:
        msg = (
            f"Observed and expected counts must be 1-dimensional arrays of the same length, "
            f"but shapes {obs.shape} and {exp.shape} were given."
        )
        raise InvalidInputError(msg)
    for name, values in (("observed", obs), ("expected", exp)):
        if not np.all(np.isfinite(values) & (values >= 0)):
            msg = (
                f"Every {name} count must be finite and non-negative, "
                f"but {values.tolist()!r} was given."
            )
            raise InvalidInputError(msg)
    total_obs, total_exp = float(obs.sum()), float(exp.sum())
    if total_obs == 0.0:
        return SrmResult(0.0, 1.0, max(int(np.count_nonzero(exp)) - 1, 0), exp * 0.0)
    if total_exp == 0.0 or np.any((exp == 0) & (obs > 0)):
        scaled = exp * (total_obs / total_exp) if total_exp > 0 else exp * 0.0
        return SrmResult(math.inf, 0.0, max(int(np.count_nonzero(exp)) - 1, 0), scaled)
    scaled = exp * (total_obs / total_exp)
    live = scaled > 0
    df = int(live.sum()) - 1
    if df < 1:
        return SrmResult(0.0, 1.0, 0, scaled)
    statistic = float(np.sum((obs[live] - scaled[live]) ** 2 / scaled[live]))
    return SrmResult(statistic, float(sps.chi2.sf(statistic, df)), df, scaled)
