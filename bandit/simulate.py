"""Plan an experiment by simulation: the pseudo-regret of a policy on known arms.

Production reallocates from the statistics collected so far every so often;
the simulation does the same every ``batch`` requests through
:func:`bandit.allocation.allocate`, draws the batch's arm choices from the
weights with one multinomial draw and the batch's rewards as sufficient
statistics (binomial successes; for Gaussian rewards the exact joint law of
the sum and the sum of squares), so a run costs one allocation per batch, not
per request.

With ``batch=1`` Thompson sampling runs fully online: every request draws one
value from each arm's posterior and takes the arg-max, which picks arms with
exactly the probabilities of the P(best) weights. That path runs all seeds in
lockstep on one generator seeded with the whole seed list, so its per-seed
results are reproducible from the seed list rather than from each seed alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from bandit.allocation import ArmInput, allocate
from bandit.errors import InvalidInputError
from bandit.policy import PolicyConfig
from bandit.stats import ArmStats
from bandit.thompson import ThompsonConfig

__all__ = ["SimulationResult", "arm_names", "simulate"]

RewardModel = Literal["bernoulli", "gaussian"]

# Steps of the online loop whose uniforms are drawn at once; bounds memory at horizon 1e6.
_CHUNK = 8_192


@dataclass(frozen=True)
class SimulationResult:
    """Pseudo-regret of one policy over several seeds.

    Attributes
    ----------
    policy : str
        The policy kind.
    arms : tuple of float
        True mean reward of each arm.
    horizon, batch : int
    seeds : tuple of int
    regret : ndarray, shape ``(n_seeds,)``
        :math:`\\sum_{t=1}^{T} (\\mu^* - \\mu_{a_t})` for each seed.
    pulls : ndarray, shape ``(n_seeds, K)``
        Requests routed to each arm.
    mean, p5, p50, p95 : float
        Mean and percentiles of ``regret`` over the seeds.
    """

    policy: str
    arms: tuple[float, ...]
    horizon: int
    batch: int
    seeds: tuple[int, ...]
    regret: NDArray[np.float64]
    pulls: NDArray[np.int64]
    mean: float
    p5: float
    p50: float
    p95: float

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of ``banditlake simulate --json``."""
        return {
            "policy": self.policy,
            "arms": list(self.arms),
            "horizon": self.horizon,
            "batch": self.batch,
            "seeds": len(self.seeds),
            "regret": {"mean": self.mean, "p5": self.p5, "p50": self.p50, "p95": self.p95},
        }


def arm_names(k: int) -> list[str]:
    """Names the simulation gives its ``k`` arms (for FixedConfig and CanaryConfig)."""
    return [f"arm{i}" for i in range(k)]


def _validate(
    arms: Sequence[float],
    reward: str,
    horizon: int,
    batch: int,
    seeds: int | Sequence[int],
    sigma: float,
) -> tuple[NDArray[np.float64], tuple[int, ...]]:
    mu = np.asarray(arms, dtype=np.float64)
    if mu.ndim != 1 or mu.size == 0 or not np.all(np.isfinite(mu)):
        msg = f"arms must be a non-empty list of finite mean rewards, but {list(arms)!r} was given."
        raise InvalidInputError(msg)
    if reward == "bernoulli" and not np.all((mu >= 0) & (mu <= 1)):
        msg = f"Bernoulli arms need means in [0, 1], but {list(arms)!r} was given."
        raise InvalidInputError(msg)
    if reward not in ("bernoulli", "gaussian"):
        msg = f"reward must be 'bernoulli' or 'gaussian', but {reward!r} was given."
        raise InvalidInputError(msg)
    if horizon < 1 or batch < 1:
        msg = f"horizon and batch must be positive, but {horizon!r} and {batch!r} were given."
        raise InvalidInputError(msg)
    if not (math.isfinite(sigma) and sigma > 0):
        msg = f"sigma must be positive and finite, but {sigma!r} was given."
        raise InvalidInputError(msg)
    seed_list = tuple(range(seeds)) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    if not seed_list:
        msg = f"At least one seed is needed, but {seeds!r} was given."
        raise InvalidInputError(msg)
    return mu, seed_list


def simulate(
    arms: Sequence[float],
    *,
    reward: RewardModel,
    policy: PolicyConfig,
    horizon: int,
    batch: int,
    seeds: int | Sequence[int],
    sigma: float = 1.0,
) -> SimulationResult:
    """Simulate ``policy`` on arms with known means and report its pseudo-regret.

    Parameters
    ----------
    arms : sequence of float, length ``K``
        True mean reward :math:`\\mu_k` of each arm, named ``arm0``, ``arm1``, ...
    reward : {"bernoulli", "gaussian"}
        Reward law: Bernoulli(:math:`\\mu_k`) or Normal(:math:`\\mu_k`, ``sigma``²).
    policy : PolicyConfig
    horizon : int
        Requests per run, :math:`T`.
    batch : int
        Requests between reallocations; 1 with Thompson sampling runs online.
    seeds : int or sequence of int
        A count ``n`` (seeds ``0 .. n-1``) or the seeds themselves.
    sigma : float
        Reward standard deviation of Gaussian arms.

    Returns
    -------
    SimulationResult
        With the pseudo-regret :math:`\\sum_{t=1}^{T} (\\mu^* - \\mu_{a_t})` per seed.
    """
    mu, seed_list = _validate(arms, reward, horizon, batch, seeds, sigma)
    if batch == 1 and isinstance(policy, ThompsonConfig) and policy.window is None:
        pulls = _online_thompson(mu, reward, policy, horizon, seed_list, sigma)
    else:
        pulls = np.stack(
            [_batched(mu, reward, policy, horizon, batch, seed, sigma) for seed in seed_list]
        )
    regret = pulls @ (mu.max() - mu)
    p5, p50, p95 = np.percentile(regret, [5, 50, 95])
    return SimulationResult(
        policy=policy.kind,
        arms=tuple(float(m) for m in mu),
        horizon=horizon,
        batch=batch,
        seeds=seed_list,
        regret=regret,
        pulls=pulls,
        mean=float(regret.mean()),
        p5=float(p5),
        p50=float(p50),
        p95=float(p95),
    )


def _batch_rewards(
    counts: NDArray[np.int64],
    mu: NDArray[np.float64],
    reward: RewardModel,
    sigma: float,
    rng: np.random.Generator,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Sum and sum of squares of each arm's rewards in one batch, each of shape ``(K,)``."""
    if reward == "bernoulli":
        successes = rng.binomial(counts, mu).astype(np.float64)
        return successes, successes
    # With z_i ~ N(0, 1): sum z ~ N(0, c) and sum z^2 - (sum z)^2 / c ~ chi^2(c - 1), independent.
    c = counts.astype(np.float64)
    z_sum = rng.normal(0.0, np.sqrt(c))
    chi = np.where(counts >= 2, rng.chisquare(np.maximum(c - 1, 1.0)), 0.0)
    z_sq = np.divide(z_sum**2, c, out=np.zeros_like(c), where=counts > 0) + chi
    total = c * mu + sigma * z_sum
    total_sq = c * mu**2 + 2 * mu * sigma * z_sum + sigma**2 * z_sq
    return total, total_sq


def _batched(
    mu: NDArray[np.float64],
    reward: RewardModel,
    policy: PolicyConfig,
    horizon: int,
    batch: int,
    seed: int,
    sigma: float,
) -> NDArray[np.int64]:
    rng = np.random.default_rng(seed)
    k = mu.size
    names = arm_names(k)
    kind: Literal["binary", "continuous"] = "binary" if reward == "bernoulli" else "continuous"
    bucketed = policy.discount < 1.0 or policy.window is not None
    buckets: list[list[ArmStats]] = [[] for _ in range(k)]
    n, total, total_sq = np.zeros(k), np.zeros(k), np.zeros(k)
    pulls = np.zeros(k, dtype=np.int64)
    previous: dict[str, float] | None = None
    done = 0
    while done < horizon:
        size = min(batch, horizon - done)
        inputs: list[tuple[str, ArmInput]] = [
            (names[i], buckets[i] if bucketed else ArmStats(n[i], total[i], total_sq[i]))
            for i in range(k)
        ]
        allocation = allocate(inputs, policy, kind=kind, rng=rng, previous=previous)
        weights = np.array([allocation.weights[name] for name in names])
        counts = rng.multinomial(size, weights)
        sums, sums_sq = _batch_rewards(counts, mu, reward, sigma, rng)
        n += counts
        total += sums
        total_sq += sums_sq
        if bucketed:
            for i in range(k):
                buckets[i].append(ArmStats(float(counts[i]), float(sums[i]), float(sums_sq[i])))
        pulls += counts
        previous = allocation.weights
        done += size
    return pulls


def _online_thompson(
    mu: NDArray[np.float64],
    reward: RewardModel,
    policy: ThompsonConfig,
    horizon: int,
    seeds: tuple[int, ...],
    sigma: float,
) -> NDArray[np.int64]:
    rng = np.random.default_rng(list(seeds))
    s, k = len(seeds), mu.size
    rows = np.arange(s)
    # Bernoulli state: Beta parameters side by side, [1 + successes | 1 + failures],
    # so one gamma call per step draws every arm of every seed.
    beta_params = np.ones((s, 2 * k))
    n, total, total_sq = np.zeros((s, k)), np.zeros((s, k)), np.zeros((s, k))
    pulls = np.zeros((s, k), dtype=np.int64)
    explore_p = k * policy.min_weight
    for start in range(0, horizon, _CHUNK):
        steps = min(_CHUNK, horizon - start)
        u_reward = rng.random((steps, s))
        u_explore = rng.random((steps, s))
        uniform_arm = rng.integers(0, k, size=(steps, s))
        noise = rng.standard_normal((steps, s)) if reward == "gaussian" else None
        chosen = np.empty((steps, s), dtype=np.intp)
        for t in range(steps):
            if noise is None:
                g = rng.standard_gamma(beta_params)
                draws = g[:, :k] / (g[:, :k] + g[:, k:])
                undecided = None
            else:
                draws, undecided = _normal_draws(n, total, total_sq, rng)
            choice = draws.argmax(axis=1)
            uniform = u_explore[t] < explore_p
            if undecided is not None:
                uniform |= undecided
            if policy.burn_in > 0:
                uniform |= n.min(axis=1) < policy.burn_in
            choice = np.where(uniform, uniform_arm[t], choice)
            chosen[t] = choice
            if policy.discount < 1.0:
                n *= policy.discount
                beta_params = 1.0 + policy.discount * (beta_params - 1.0)
                total *= policy.discount
                total_sq *= policy.discount
            n[rows, choice] += 1.0
            if noise is None:
                success = u_reward[t] < mu[choice]
                beta_params[rows, np.where(success, choice, choice + k)] += 1.0
            else:
                r = mu[choice] + sigma * noise[t]
                total[rows, choice] += r
                total_sq[rows, choice] += r * r
        for row in range(s):
            pulls[row] += np.bincount(chosen[:, row], minlength=k)
    return pulls


def _normal_draws(
    n: NDArray[np.float64],
    total: NDArray[np.float64],
    total_sq: NDArray[np.float64],
    rng: np.random.Generator,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """One draw per arm from the unit-information normal posterior of :mod:`bandit.posterior`.

    Vectorised over seeds (rows); also returns the rows whose posteriors are
    all point masses, where the arg-max must be a uniform choice instead.
    """
    big_n = n.sum(axis=1, keepdims=True)
    big_s = total.sum(axis=1, keepdims=True)
    big_ss = total_sq.sum(axis=1, keepdims=True)
    safe_n = np.maximum(big_n, 1.0)
    m0 = big_s / safe_n
    v0 = np.where(
        big_n >= 2, np.maximum((big_ss - big_s**2 / safe_n) / np.maximum(big_n - 1, 1.0), 0.0), 0.0
    )
    undecided = (v0 == 0.0).ravel()
    v0 = np.where(v0 > 0, v0, 1.0)
    safe_arm_n = np.maximum(n, 1.0)
    arm_var = np.where(
        n >= 2, np.maximum((total_sq - total**2 / safe_arm_n) / np.maximum(n - 1, 1.0), 0.0), 0.0
    )
    sigma2 = np.where(arm_var > 0, arm_var, v0)
    precision = 1.0 / v0 + n / sigma2
    mean = (m0 / v0 + total / sigma2) / precision
    draws: NDArray[np.float64] = mean + rng.standard_normal(n.shape) / np.sqrt(precision)
    return draws, undecided
