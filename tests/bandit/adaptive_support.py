"""Batched Thompson sampling simulated many experiments at once, as per-batch sums.

Each batch of ``batch_size`` requests is allocated by the P(best) of the posteriors over
the earlier batches (Monte Carlo, ``draws`` per experiment), mixed with the floor
:math:`w_k = f + (1 - K f) p_k` as :func:`bandit.allocation.apply_floor` does; the
batch's routing is one multinomial draw and its rewards are drawn as sufficient
statistics (binomial successes; for normal rewards the exact law of the sum and of the
sum of squares). Arrays have shape ``(experiments, batches, arms)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from bandit.adaptive import BatchStats

_F = NDArray[np.float64]


@dataclass(frozen=True)
class Simulated:
    stats: BatchStats
    truth: _F


def simulate_batched_thompson(
    rng: np.random.Generator,
    means: list[float],
    *,
    kind: Literal["bernoulli", "normal"],
    experiments: int,
    batches: int = 20,
    batch_size: int = 1000,
    floor: float = 0.02,
    sd: float = 1.0,
    draws: int = 400,
) -> Simulated:
    k = len(means)
    mu = np.asarray(means, dtype=np.float64)
    shape = (experiments, batches, k)
    n = np.zeros(shape)
    s = np.zeros(shape)
    ss = np.zeros(shape)
    e = np.zeros(shape)
    cum_n = np.zeros((experiments, k))
    cum_s = np.zeros((experiments, k))
    for b in range(batches):
        if b == 0:
            p_best = np.full((experiments, k), 1.0 / k)
        else:
            if kind == "bernoulli":
                a = 1.0 + cum_s[:, None, :]
                c = 1.0 + cum_n[:, None, :] - cum_s[:, None, :]
                theta = rng.beta(a, c, size=(experiments, draws, k))
            else:
                safe = np.maximum(cum_n, 1.0)
                mean = np.where(cum_n > 0, cum_s / safe, 0.0)
                scale = np.where(cum_n > 0, sd / np.sqrt(safe), 1e3)
                theta = rng.normal(mean[:, None, :], scale[:, None, :], (experiments, draws, k))
            best = theta.argmax(axis=2)
            p_best = np.stack([(best == j).mean(axis=1) for j in range(k)], axis=1)
        w = floor + (1.0 - k * floor) * p_best
        w /= w.sum(axis=1, keepdims=True)
        counts = rng.multinomial(batch_size, w).astype(np.float64)
        if kind == "bernoulli":
            succ = rng.binomial(counts.astype(np.int64), mu).astype(np.float64)
            sums, squares = succ, succ
        else:
            sums = rng.normal(counts * mu, sd * np.sqrt(counts))
            dev = sd**2 * rng.chisquare(np.maximum(counts - 1, 1)) * (counts > 1)
            squares = dev + np.where(counts > 0, sums**2 / np.maximum(counts, 1), 0.0)
        n[:, b], s[:, b], ss[:, b], e[:, b] = counts, sums, squares, w
        cum_n += counts
        cum_s += sums
    total = n.sum(axis=2)
    stats = BatchStats(total, n, s, ss, e)
    return Simulated(stats, mu)


def classical(stats: BatchStats, z: float) -> dict[str, tuple[_F, _F]]:
    """The classical intervals per arm: the pooled sample mean's Wald and the IPW one."""
    n = stats.n.sum(axis=1)
    s = stats.sum_r.sum(axis=1)
    ss = stats.sum_r2.sum(axis=1)
    mean = s / np.maximum(n, 1)
    var = np.maximum(ss / np.maximum(n, 1) - mean**2, 0.0) * n / np.maximum(n - 1, 1)
    half = z * np.sqrt(var / np.maximum(n, 1))
    big_n = stats.n_total.sum(axis=1)[:, None]
    w = 1.0 / stats.propensity
    value = (w * stats.sum_r).sum(axis=1) / big_n
    sq = (w * w * stats.sum_r2).sum(axis=1)
    se = np.sqrt(np.maximum(sq - big_n * value**2, 0.0) / (big_n - 1) / big_n)
    return {"naive": (mean - half, mean + half), "ipw": (value - z * se, value + z * se)}
