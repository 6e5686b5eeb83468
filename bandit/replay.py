"""Contextual policies replayed on a full-information problem, in batches as production reallocates.

The problem is a context matrix ``x`` of shape ``(T, d)`` and a reward matrix of
shape ``(T, K)``: the reward each arm *would* have earned at round :math:`t`
(a supervised data set becomes one with arms = classes and reward
:math:`[k = \\text{label}_t]`, :func:`classification_rewards`). Each round the
policy chooses an arm and learns only that arm's reward; the model is refitted
every ``batch`` rounds from additive statistics, so decisions inside a batch use
the model version of its start. Regret is measured against the expected rewards
``means`` (the rewards themselves when not given):

.. math::

    R_{\\text{context}} = \\sum_t \\max_k \\mu_{t,k} - \\mu_{t,a_t}, \\qquad
    R_{\\text{fixed}} = \\max_k \\sum_t \\mu_{t,k} - \\sum_t \\mu_{t,a_t},

against the best per-context choice and the best fixed arm in hindsight.

Policies: ``lints`` and ``linucb`` (:mod:`bandit.contextual`, standardisation
estimated once from the first batch's contexts), ``thompson`` (non-contextual,
per request, :mod:`bandit.segmented` with one segment) and ``random`` (uniform).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bandit.contextual import (
    LinearConfig,
    LinearKind,
    LinearStats,
    Standardizer,
    decide_batch,
    fit_linear,
)
from bandit.errors import InvalidArrayError, InvalidInputError
from bandit.posterior import RewardKind
from bandit.segmented import SegmentedConfig, decide_segments, fit_segmented
from bandit.stats import ArmStats

__all__ = ["REPLAY_POLICIES", "ReplayPolicy", "ReplayResult", "classification_rewards", "replay"]

ReplayPolicy = Literal["lints", "linucb", "thompson", "random"]
REPLAY_POLICIES: tuple[ReplayPolicy, ...] = ("lints", "linucb", "thompson", "random")


@dataclass(frozen=True, eq=False)
class ReplayResult:
    """One replay: the arm chosen and the reward revealed at every round, and the regrets.

    Attributes
    ----------
    policy : str
    chosen : ndarray of intp, shape ``(T,)``
    reward : ndarray, shape ``(T,)``
        The revealed reward of the chosen arm.
    regret_context, regret_fixed : float
        Pseudo-regret against the best per-context choice and the best fixed arm.
    """

    policy: str
    chosen: NDArray[np.intp]
    reward: NDArray[np.float64]
    regret_context: float
    regret_fixed: float

    @property
    def cumulative_reward(self) -> float:
        return float(self.reward.sum())

    @property
    def average_reward(self) -> float:
        return float(self.reward.mean()) if self.reward.size else 0.0


def classification_rewards(labels: ArrayLike, classes: ArrayLike) -> NDArray[np.float64]:
    """Reward matrix ``(T, K)``: 1 where the arm (class ``classes[k]``) is the row's label."""
    lab = np.asarray(labels)
    cls = np.asarray(classes)
    matrix: NDArray[np.float64] = (lab[:, None] == cls[None, :]).astype(np.float64)
    return matrix


def replay(
    x: ArrayLike,
    rewards: ArrayLike,
    *,
    policy: ReplayPolicy,
    rng: np.random.Generator,
    batch: int = 500,
    means: ArrayLike | None = None,
    linear: LinearConfig | None = None,
    reward_kind: RewardKind = "binary",
) -> ReplayResult:
    """Replay ``policy`` over contexts ``x``, shape ``(T, d)``, and ``rewards``, shape ``(T, K)``.

    Parameters
    ----------
    x, rewards : array_like
    policy : {"lints", "linucb", "thompson", "random"}
    rng : numpy.random.Generator
    batch : int
        Rounds between refits.
    means : array_like, shape ``(T, K)``, optional
        Expected rewards for the regret; ``rewards`` when not given.
    linear : LinearConfig, optional
        For ``lints``/``linucb`` (its ``kind`` is replaced by ``policy``).
    reward_kind : {"binary", "continuous"}
        The posterior ``thompson`` uses.
    """
    xs = np.asarray(x, dtype=np.float64)
    rw = np.asarray(rewards, dtype=np.float64)
    mu = rw if means is None else np.asarray(means, dtype=np.float64)
    if xs.ndim != 2 or rw.ndim != 2 or rw.shape[0] != xs.shape[0] or mu.shape != rw.shape:
        msg = (
            f"Contexts must have shape (T, d) and rewards and means shape (T, K), but shapes "
            f"{xs.shape}, {rw.shape} and {mu.shape} were given."
        )
        raise InvalidArrayError(msg)
    if not (np.isfinite(rw).all() and np.isfinite(mu).all()):
        msg = "Rewards and expected rewards must be finite."
        raise InvalidArrayError(msg)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        msg = f"The batch must be a whole number of rounds of at least 1, but {batch!r} was given."
        raise InvalidInputError(msg)
    if policy not in REPLAY_POLICIES:
        msg = f"Unknown replay policy {policy!r}; expected one of {', '.join(REPLAY_POLICIES)}."
        raise InvalidInputError(msg)
    t_rounds, k = rw.shape
    arms = tuple(str(i) for i in range(k))
    chosen = np.empty(t_rounds, dtype=np.intp)
    features = tuple(f"x{j}" for j in range(xs.shape[1]))
    standardizer: Standardizer | None = None
    linear_stats: list[LinearStats] = []
    arm_stats = [ArmStats() for _ in arms]
    kind: LinearKind = "linucb" if policy == "linucb" else "lints"
    config = LinearConfig(kind=kind) if linear is None else replace(linear, kind=kind)
    thompson = SegmentedConfig(field="all", reward=reward_kind, draws=2000)
    for start in range(0, t_rounds, batch):
        stop = min(t_rounds, start + batch)
        rows = np.arange(start, stop)
        if policy == "random":
            picks = rng.integers(0, k, size=stop - start).astype(np.intp)
        elif policy == "thompson":
            model_t = fit_segmented({"all": arm_stats}, arms=arms, config=thompson, rng=rng)
            picks, _ = decide_segments(model_t, ["all"] * (stop - start), rng)
        else:
            if standardizer is None:
                standardizer = Standardizer.fit(features, xs[start:stop])
                linear_stats = [LinearStats.zeros(standardizer.dim) for _ in arms]
            model_l = fit_linear(linear_stats, arms=arms, standardizer=standardizer, config=config)
            picks, _ = decide_batch(model_l, xs[start:stop], rng)
        chosen[start:stop] = picks
        revealed = rw[rows, picks]
        if policy == "thompson":
            for arm in range(k):
                mask = picks == arm
                arm_stats[arm] = arm_stats[arm] + ArmStats.from_rewards(revealed[mask].tolist())
        elif policy != "random" and standardizer is not None:
            z = standardizer.design(xs[start:stop])
            for arm in range(k):
                mask = picks == arm
                linear_stats[arm] = linear_stats[arm] + LinearStats.from_rows(
                    z[mask], revealed[mask]
                )
    got = mu[np.arange(t_rounds), chosen]
    return ReplayResult(
        policy=policy,
        chosen=chosen,
        reward=rw[np.arange(t_rounds), chosen],
        regret_context=float(mu.max(axis=1).sum() - got.sum()),
        regret_fixed=float(mu.sum(axis=0).max() - got.sum()),
    )
