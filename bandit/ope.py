"""Off-policy estimators as functions of arrays, with the Open Bandit Pipeline's conventions.

Notation, for round :math:`i` of :math:`n` logged rounds: reward :math:`r_i`,
logged action :math:`a_i`, logged propensity :math:`\\pi_b(a_i \\mid x_i)`
(``pscore``), slot :math:`k_i` (``position``), the evaluation policy's
probabilities :math:`\\pi_e(a \\mid x_i, k)` (``action_dist``, shape
``(n_rounds, n_actions, len_list)``) and a reward model :math:`\\hat q(x_i, a, k)`
(``estimated_rewards``, same shape). The importance weight is
:math:`w_i = \\pi_e(a_i \\mid x_i, k_i) / \\pi_b(a_i \\mid x_i)` and the model's
value of the evaluation policy in round :math:`i` is
:math:`\\hat q_i(\\pi_e) = \\sum_a \\pi_e(a \\mid x_i, k_i)\\, \\hat q_i(a)` with
:math:`\\hat q_i(a) = \\hat q(x_i, a, k_i)`.

========= =====================================================================================
``ipw``   :math:`\\frac1n \\sum_i w_i r_i`
``snipw`` :math:`\\sum_i w_i r_i / \\sum_i w_i`
``dm``    :math:`\\frac1n \\sum_i \\hat q_i(\\pi_e)`
``dr``    :math:`\\frac1n \\sum_i [\\hat q_i(\\pi_e) + w_i (r_i - \\hat q_i(a_i))]`
``sndr``  :math:`\\frac1n \\sum_i [\\hat q_i(\\pi_e) + w_i (r_i - \\hat q_i(a_i)) / \\bar w]`
========= =====================================================================================

with :math:`\\bar w = \\frac1n \\sum_i w_i`. These equal
``obp.ope.InverseProbabilityWeighting``, ``SelfNormalizedInverseProbabilityWeighting``,
``DirectMethod``, ``DoublyRobust`` and ``SelfNormalizedDoublyRobust`` without
clipping. Where OBP would divide by zero (every :math:`w_i = 0`), ``snipw``
returns 0.0 and ``sndr`` drops the correction term, returning the DM value.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bandit.errors import InvalidArrayError

__all__ = ["dm", "dr", "ipw", "sndr", "snipw"]

# Tolerance for action_dist summing to 1 over actions, as numpy.allclose's defaults.
_SUM_RTOL, _SUM_ATOL = 1e-5, 1e-8


def _fail(message: str) -> InvalidArrayError:
    return InvalidArrayError(message)


def _floats(name: str, value: ArrayLike, n: int) -> NDArray[np.float64]:
    array = np.asarray(value)
    if array.shape != (n,):
        msg = (
            f"{name} must be a 1-dimensional array of length n_rounds = {n}, "
            f"but an array of shape {array.shape} was given."
        )
        raise _fail(msg)
    if not (
        np.issubdtype(array.dtype, np.number) and not np.issubdtype(array.dtype, np.complexfloating)
    ):
        msg = f"{name} must hold real numbers, but an array of dtype {array.dtype} was given."
        raise _fail(msg)
    result = array.astype(np.float64)
    if not np.all(np.isfinite(result)):
        msg = f"{name} must be finite, but {float(result[~np.isfinite(result)][0])!r} was given."
        raise _fail(msg)
    return result


def _indices(name: str, value: ArrayLike, n: int, upper: int, upper_name: str) -> NDArray[np.intp]:
    array = np.asarray(value)
    if array.shape != (n,):
        msg = (
            f"{name} must be a 1-dimensional array of length n_rounds = {n}, "
            f"but an array of shape {array.shape} was given."
        )
        raise _fail(msg)
    if not np.issubdtype(array.dtype, np.integer):
        msg = f"{name} must hold integers, but an array of dtype {array.dtype} was given."
        raise _fail(msg)
    bad = array[(array < 0) | (array >= upper)]
    if bad.size:
        msg = (
            f"{name} must hold integers in [0, {upper_name}) = [0, {upper}), "
            f"but {int(bad[0])} was given."
        )
        raise _fail(msg)
    return array.astype(np.intp)


def _policy(
    action_dist: ArrayLike, position: ArrayLike | None
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Validated ``action_dist``, shape ``(n, n_actions, len_list)``, and ``position``, ``(n,)``."""
    dist = np.asarray(action_dist)
    if dist.ndim != 3:
        msg = (
            f"action_dist must be a 3-dimensional array of shape (n_rounds, n_actions, len_list), "
            f"but an array of shape {dist.shape} was given."
        )
        raise _fail(msg)
    n, n_actions, len_list = dist.shape
    if n == 0 or n_actions == 0 or len_list == 0:
        msg = (
            f"action_dist must have at least one round, action and position, "
            f"but its shape is {dist.shape}."
        )
        raise _fail(msg)
    dist = _floats("action_dist", dist.reshape(-1), dist.size).reshape(dist.shape)
    if np.any(dist < 0):
        msg = f"action_dist must be non-negative, but {float(dist[dist < 0][0])!r} was given."
        raise _fail(msg)
    sums = dist.sum(axis=1)
    off = ~np.isclose(sums, 1.0, rtol=_SUM_RTOL, atol=_SUM_ATOL)
    if np.any(off):
        msg = (
            f"action_dist must sum to 1 over actions (axis 1) for every round and position, "
            f"but one sum is {float(sums[off][0])!r}."
        )
        raise _fail(msg)
    if position is None:
        return dist, np.zeros(n, dtype=np.intp)
    return dist, _indices("position", position, n, len_list, "len_list")


def _log(
    reward: ArrayLike, action: ArrayLike, pscore: ArrayLike, dist: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.intp], NDArray[np.float64]]:
    """Validated ``reward``, ``action`` and ``pscore``, each of shape ``(n,)``."""
    n, n_actions, _ = dist.shape
    r = _floats("reward", reward, n)
    a = _indices("action", action, n, n_actions, "n_actions")
    ps = _floats("pscore", pscore, n)
    bad = ps[(ps <= 0) | (ps > 1)]
    if bad.size:
        msg = f"pscore must be in (0, 1], but {float(bad[0])!r} was given."
        raise _fail(msg)
    return r, a, ps


def _model(estimated_rewards: ArrayLike, dist: NDArray[np.float64]) -> NDArray[np.float64]:
    q = np.asarray(estimated_rewards)
    if q.shape != dist.shape:
        msg = (
            f"estimated_rewards must have the shape of action_dist, {dist.shape}, "
            f"but {q.shape} was given."
        )
        raise _fail(msg)
    return _floats("estimated_rewards", q.reshape(-1), q.size).reshape(q.shape)


def _weights(
    dist: NDArray[np.float64],
    action: NDArray[np.intp],
    position: NDArray[np.intp],
    pscore: NDArray[np.float64],
) -> NDArray[np.float64]:
    w: NDArray[np.float64] = dist[np.arange(action.size), action, position] / pscore
    return w


def _dm_rounds(
    dist: NDArray[np.float64], q: NDArray[np.float64], position: NDArray[np.intp]
) -> NDArray[np.float64]:
    rounds = np.arange(position.size)
    # np.average divides by the weights' sum (1 up to rounding), exactly as OBP does.
    values: NDArray[np.float64] = np.average(
        q[rounds, :, position], weights=dist[rounds, :, position], axis=1
    )
    return values


def _residuals(
    reward: NDArray[np.float64],
    q: NDArray[np.float64],
    action: NDArray[np.intp],
    position: NDArray[np.intp],
) -> NDArray[np.float64]:
    resid: NDArray[np.float64] = reward - q[np.arange(action.size), action, position]
    return resid


def ipw(
    *,
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    action_dist: ArrayLike,
    position: ArrayLike | None = None,
) -> float:
    """Inverse probability weighting, :math:`\\hat V = \\frac1n \\sum_i w_i r_i`.

    Parameters
    ----------
    reward : array-like, shape ``(n_rounds,)``
    action : array-like of int, shape ``(n_rounds,)``
    pscore : array-like, shape ``(n_rounds,)``, values in ``(0, 1]``
    action_dist : array-like, shape ``(n_rounds, n_actions, len_list)``
    position : array-like of int, shape ``(n_rounds,)``, optional; zeros when omitted
    """
    dist, pos = _policy(action_dist, position)
    r, a, ps = _log(reward, action, pscore, dist)
    return float(np.mean(r * _weights(dist, a, pos, ps)))


def snipw(
    *,
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    action_dist: ArrayLike,
    position: ArrayLike | None = None,
) -> float:
    """Self-normalized IPW, :math:`\\hat V = \\sum_i w_i r_i / \\sum_i w_i`; 0.0 if every w is 0.

    Shapes as :func:`ipw`.
    """
    dist, pos = _policy(action_dist, position)
    r, a, ps = _log(reward, action, pscore, dist)
    w = _weights(dist, a, pos, ps)
    mean_w = float(np.mean(w))
    if mean_w == 0.0:
        return 0.0
    return float(np.mean(r * w / mean_w))


def dm(
    *,
    action_dist: ArrayLike,
    estimated_rewards: ArrayLike,
    position: ArrayLike | None = None,
    reward: ArrayLike | None = None,
    action: ArrayLike | None = None,
    pscore: ArrayLike | None = None,
) -> float:
    """Direct method.

    :math:`\\hat V = \\frac1n \\sum_i \\sum_a \\pi_e(a \\mid x_i, k_i)\\, \\hat q_i(a)`.

    ``reward``, ``action`` and ``pscore`` are accepted (and validated) so that
    every estimator takes the same keyword arguments; the value ignores them.

    Parameters
    ----------
    action_dist : array-like, shape ``(n_rounds, n_actions, len_list)``
    estimated_rewards : array-like, shape ``(n_rounds, n_actions, len_list)``
    position : array-like of int, shape ``(n_rounds,)``, optional; zeros when omitted
    """
    dist, pos = _policy(action_dist, position)
    q = _model(estimated_rewards, dist)
    if reward is not None or action is not None or pscore is not None:
        if reward is None or action is None or pscore is None:
            msg = "dm takes reward, action and pscore all together or none of them."
            raise _fail(msg)
        _log(reward, action, pscore, dist)
    return float(np.mean(_dm_rounds(dist, q, pos)))


def dr(
    *,
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    action_dist: ArrayLike,
    estimated_rewards: ArrayLike,
    position: ArrayLike | None = None,
) -> float:
    """Doubly robust.

    :math:`\\hat V = \\frac1n \\sum_i [\\hat q_i(\\pi_e) + w_i (r_i - \\hat q_i(a_i))]`.

    Shapes as :func:`ipw` and :func:`dm`.
    """
    dist, pos = _policy(action_dist, position)
    r, a, ps = _log(reward, action, pscore, dist)
    q = _model(estimated_rewards, dist)
    w = _weights(dist, a, pos, ps)
    return float(np.mean(_dm_rounds(dist, q, pos) + w * _residuals(r, q, a, pos)))


def sndr(
    *,
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    action_dist: ArrayLike,
    estimated_rewards: ArrayLike,
    position: ArrayLike | None = None,
) -> float:
    """Self-normalized doubly robust.

    :math:`\\hat V = \\frac1n \\sum_i [\\hat q_i(\\pi_e) + w_i (r_i - \\hat q_i(a_i)) / \\bar w]`;
    the correction is dropped when every weight is 0. Shapes as :func:`ipw` and :func:`dm`.
    """
    dist, pos = _policy(action_dist, position)
    r, a, ps = _log(reward, action, pscore, dist)
    q = _model(estimated_rewards, dist)
    w = _weights(dist, a, pos, ps)
    mean_w = float(np.mean(w))
    correction = w * _residuals(r, q, a, pos) / mean_w if mean_w > 0 else np.zeros(a.size)
    return float(np.mean(_dm_rounds(dist, q, pos) + correction))
