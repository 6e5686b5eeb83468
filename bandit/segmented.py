"""Segmented Thompson sampling: one posterior per value of a categorical context field.

Each request carries a segment, the value of one categorical field (a country,
a device). Every segment with at least ``min_count`` rewarded requests (summed
over the arms) gets its own posteriors, from its own statistics
(:func:`bandit.posterior.posteriors`: Beta-Bernoulli for binary rewards, the
normal model for continuous ones); a smaller segment, and a segment never seen
when the model was fitted, falls back to the *pooled* posteriors, those of the
statistics summed over every segment, so a new or rare segment is served as
plain Thompson sampling would serve it.

The statistics are :class:`bandit.stats.ArmStats` per segment and arm, additive
as everywhere else. A :class:`SegmentedModel` is the immutable model version;
:meth:`SegmentedModel.to_dict` makes it plain JSON.

A segment's posteriors do not depend on the request, so its Thompson
probabilities are computed once, when the model version is fitted:
:math:`P_k = \\Pr(\\theta_k = \\max_j \\theta_j)` from ``draws`` = :math:`M`
joint posterior draws (:func:`bandit.bayesian.prob_best`), an estimate of the
exact probability with standard error :math:`\\sqrt{P_k(1-P_k)/M}` (at most
0.005 at the default 10,000), mixed with a floor :math:`f` (``min_weight``) as
the allocations are: :math:`w_k = f + (1 - K f) P_k`. A decision then draws the
arm from :math:`w` (one uniform number), and :math:`w` of the chosen arm is the
*exact* probability with which it was chosen, which keeps inverse-propensity
weighting unbiased; the floor (0.02 by default, as the allocations' default)
keeps every arm's propensity positive, so other policies can be evaluated on
the logs without bias. Serving each request from these weights
is per-request Thompson sampling on the posteriors frozen at the fit, as for
:mod:`bandit.thompson`; with one segment every request shares, it is exactly
the non-contextual policy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from bandit.bayesian import prob_best
from bandit.errors import InvalidInputError, InvalidPolicyError
from bandit.policy import DEFAULT_MIN_WEIGHT
from bandit.posterior import BetaPosterior, Posterior, RewardKind, posteriors
from bandit.stats import ArmStats

__all__ = [
    "SegmentPosterior",
    "SegmentedConfig",
    "SegmentedModel",
    "decide_segment",
    "decide_segments",
    "fit_segmented",
]

UnknownSegment = Literal["pooled", "error"]


@dataclass(frozen=True, kw_only=True)
class SegmentedConfig:
    """How a segmented Thompson model is fitted and decides.

    Parameters
    ----------
    field : str
        The categorical context field whose value is the segment.
    reward : {"binary", "continuous"}
    min_count : int
        Rewarded requests a segment needs (over all arms) for its own posteriors.
    draws : int
        Joint posterior draws per segment at fit time, :math:`M \\ge 1`.
    min_weight : float
        Floor :math:`f` on every arm's probability in every segment (0.02 by
        default; a floor above :math:`1/K` acts as :math:`1/K`, equal weights).
    unknown : {"pooled", "error"}
        A segment the model has no posteriors for: serve it the pooled
        posteriors, or raise InvalidInputError naming it.
    """

    field: str
    reward: RewardKind = "binary"
    min_count: int = 100
    draws: int = 10_000
    min_weight: float = DEFAULT_MIN_WEIGHT
    unknown: UnknownSegment = "pooled"

    def __post_init__(self) -> None:
        if not isinstance(self.field, str) or not self.field:
            msg = f"The segment field must be a non-empty string, but {self.field!r} was given."
            raise InvalidPolicyError(msg)
        if self.reward not in ("binary", "continuous"):
            msg = (
                f"The reward kind must be 'binary' or 'continuous', but {self.reward!r} was given."
            )
            raise InvalidPolicyError(msg)
        for name, low, high in (("min_count", 0, None), ("draws", 1, 1_000_000)):
            value = getattr(self, name)
            whole = isinstance(value, int) and not isinstance(value, bool)
            if not whole or value < low or (high is not None and value > high):
                bound = f"at least {low}" if high is None else f"from {low} to {high:,}"
                msg = f"{name} must be a whole number {bound}, but {value!r} was given."
                raise InvalidPolicyError(msg)
        if not (0.0 <= self.min_weight <= 1.0):
            msg = f"min_weight must be in [0, 1], but {self.min_weight!r} was given."
            raise InvalidPolicyError(msg)
        if self.unknown not in ("pooled", "error"):
            msg = f"unknown must be 'pooled' or 'error', but {self.unknown!r} was given."
            raise InvalidPolicyError(msg)

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "reward": self.reward,
            "min_count": self.min_count,
            "draws": self.draws,
            "min_weight": self.min_weight,
            "unknown": self.unknown,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentedConfig:
        known = {"field", "reward", "min_count", "draws", "min_weight", "unknown"}
        unknown = sorted(set(data) - known)
        if unknown:
            msg = (
                f"Unknown segmented policy parameter {unknown[0]!r}; "
                f"expected some of {sorted(known)}."
            )
            raise InvalidPolicyError(msg)
        try:
            return cls(**dict(data))
        except TypeError as exc:
            msg = f"A segmented policy parameter is missing or has the wrong type: {exc}."
            raise InvalidPolicyError(msg) from exc


def _params(posts: Sequence[Posterior]) -> NDArray[np.float64]:
    """Shape ``(2, K)``: (alpha, beta) of Beta posteriors or (mean, sd) of normal ones."""
    out = np.empty((2, len(posts)))
    for k, post in enumerate(posts):
        if isinstance(post, BetaPosterior):
            out[:, k] = (post.alpha, post.beta)
        else:
            out[:, k] = (post.mean, post.sd)
    return out


@dataclass(frozen=True, eq=False)
class SegmentPosterior:
    """One segment's (or the pooled) posteriors and the arm probabilities they give.

    Attributes
    ----------
    params : ndarray, shape ``(2, K)``
        (alpha, beta) of Beta posteriors for binary rewards, (mean, sd) of
        normal ones for continuous rewards.
    weights : ndarray, shape ``(K,)``
        :math:`w_k = f + (1 - K f) P_k`, summing to 1: each arm's probability.
    """

    params: NDArray[np.float64]
    weights: NDArray[np.float64]
    cumulative: tuple[float, ...] = field(init=False, repr=False)
    """The weights' running sums, precomputed: a decision is one uniform draw and a search."""

    def __post_init__(self) -> None:
        params = np.array(self.params, dtype=np.float64)
        weights = np.array(self.weights, dtype=np.float64)
        k = weights.shape[0] if weights.ndim == 1 else -1
        if params.shape != (2, k) or not (np.isfinite(params).all() and np.isfinite(weights).all()):
            msg = (
                f"A segment's posterior needs finite parameters of shape (2, K) and weights of "
                f"shape (K,), but shapes {params.shape} and {weights.shape} were given."
            )
            raise InvalidInputError(msg)
        if np.any(weights < 0) or abs(float(weights.sum()) - 1.0) > 1e-9:
            msg = (
                f"A segment's weights must be non-negative and sum to 1, not {weights.tolist()!r}."
            )
            raise InvalidInputError(msg)
        params.flags.writeable = False
        weights.flags.writeable = False
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "cumulative", tuple(np.cumsum(weights).tolist()))

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params.tolist(), "weights": self.weights.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentPosterior:
        return cls(
            np.asarray(data["params"], dtype=np.float64),
            np.asarray(data["weights"], dtype=np.float64),
        )


@dataclass(frozen=True, eq=False)
class SegmentedModel:
    """An immutable segmented-Thompson model version.

    Attributes
    ----------
    arms : tuple of str, length ``K``
    config : SegmentedConfig
    pooled : SegmentPosterior
        From the statistics summed over every segment.
    segments : mapping of str to SegmentPosterior
        The segments with their own posteriors.
    fallback : tuple of str
        The segments seen when fitting that had fewer than ``min_count``
        rewarded requests and are served the pooled posteriors.
    """

    arms: tuple[str, ...]
    config: SegmentedConfig
    pooled: SegmentPosterior
    segments: Mapping[str, SegmentPosterior] = field(default_factory=dict)
    fallback: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        k = len(self.arms)
        if k < 1 or len(set(self.arms)) != k:
            msg = (
                f"A segmented model needs one or more distinct arm names, "
                f"but {list(self.arms)!r} was given."
            )
            raise InvalidInputError(msg)
        named = [("the pooled posterior", self.pooled)]
        named += [(f"segment {name!r}", post) for name, post in self.segments.items()]
        for what, post in named:
            if post.weights.shape != (k,):
                msg = f"The weights of {what} must have shape ({k},), not {post.weights.shape}."
                raise InvalidInputError(msg)
            params = post.params
            in_range = (
                (params > 0).all() if self.config.reward == "binary" else (params[1] >= 0).all()
            )
            if not in_range:
                msg = f"The parameters of {what} are out of range: {params.tolist()!r}."
                raise InvalidInputError(msg)
        object.__setattr__(self, "arms", tuple(self.arms))
        object.__setattr__(self, "segments", dict(self.segments))
        object.__setattr__(self, "fallback", tuple(self.fallback))

    def posterior_for(self, segment: object) -> SegmentPosterior:
        """The posterior serving ``segment``: its own, or the pooled one."""
        if not isinstance(segment, str):
            msg = (
                f"The segment field {self.config.field!r} must hold a string, "
                f"but {segment!r} was given."
            )
            raise InvalidInputError(msg)
        own = self.segments.get(segment)
        if own is not None:
            return own
        if self.config.unknown == "error" and segment not in self.fallback:
            msg = (
                f"Segment {segment!r} of field {self.config.field!r} is unknown to this model "
                f"version, and unknown segments are refused."
            )
            raise InvalidInputError(msg)
        return self.pooled

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; :meth:`from_dict` restores the model exactly."""
        return {
            "arms": list(self.arms),
            "config": self.config.to_dict(),
            "pooled": self.pooled.to_dict(),
            "segments": {name: post.to_dict() for name, post in self.segments.items()},
            "fallback": list(self.fallback),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentedModel:
        try:
            return cls(
                tuple(data["arms"]),
                SegmentedConfig.from_dict(data["config"]),
                SegmentPosterior.from_dict(data["pooled"]),
                {str(k): SegmentPosterior.from_dict(v) for k, v in dict(data["segments"]).items()},
                tuple(data["fallback"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidInputError):
                raise
            msg = f"A segmented model version is malformed: {exc} ({type(exc).__name__})."
            raise InvalidInputError(msg) from exc


def _posterior(
    arms: Sequence[ArmStats], config: SegmentedConfig, rng: np.random.Generator
) -> SegmentPosterior:
    k = len(arms)
    best = prob_best(arms, kind=config.reward, rng=rng, draws=config.draws)
    floor = min(config.min_weight, 1.0 / k)
    weights = floor + (1.0 - k * floor) * best
    return SegmentPosterior(_params(posteriors(arms, kind=config.reward)), weights / weights.sum())


def fit_segmented(
    stats: Mapping[str, Sequence[ArmStats]],
    *,
    arms: Sequence[str],
    config: SegmentedConfig,
    rng: np.random.Generator,
) -> SegmentedModel:
    """The model version of per-segment statistics.

    Parameters
    ----------
    stats : mapping of segment value to a sequence of ArmStats of length ``K``
    arms : sequence of str, length ``K``
    config : SegmentedConfig
    rng : numpy.random.Generator
        For the Thompson probabilities' posterior draws.
    """
    names = tuple(arms)
    if not names:
        msg = "A segmented model needs at least one arm, but none was given."
        raise InvalidInputError(msg)
    pooled = [ArmStats() for _ in names]
    for segment, arm_stats in stats.items():
        if len(arm_stats) != len(names):
            msg = (
                f"Segment {segment!r} needs one ArmStats per arm ({len(names)}), "
                f"but {len(arm_stats)} were given."
            )
            raise InvalidInputError(msg)
        pooled = [total + s for total, s in zip(pooled, arm_stats, strict=True)]
    own: dict[str, SegmentPosterior] = {}
    fallback: list[str] = []
    for segment, arm_stats in stats.items():
        if math.fsum(s.n for s in arm_stats) >= config.min_count:
            own[segment] = _posterior(arm_stats, config, rng)
        else:
            fallback.append(segment)
    return SegmentedModel(names, config, _posterior(pooled, config, rng), own, tuple(fallback))


def decide_segments(
    model: SegmentedModel, segments: Sequence[object], rng: np.random.Generator
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Choose an arm for each request's segment: indices and propensities, each shape ``(n,)``.

    The propensity is the chosen arm's weight in its segment (exact; see the module docstring).
    """
    # Resolve every segment first, so a refused one raises before any draw.
    resolved = [model.posterior_for(segment) for segment in segments]
    n, k = len(resolved), len(model.arms)
    cumulative = np.array([post.cumulative for post in resolved]).reshape(n, k)
    weights = np.array([post.weights for post in resolved]).reshape(n, k)
    u = rng.random((n, 1)) * cumulative[:, -1:]
    chosen = np.minimum((u >= cumulative).sum(axis=1), k - 1).astype(np.intp)
    # Rounding at the top end can land on a zero-weight arm: step down to the last positive one.
    for i in np.flatnonzero(weights[np.arange(n), chosen] == 0.0):
        chosen[i] = int(np.flatnonzero(weights[i] > 0)[-1])
    return chosen, weights[np.arange(n), chosen]


def decide_segment(
    model: SegmentedModel, segment: object, rng: np.random.Generator
) -> tuple[int, float]:
    """Choose an arm for one request in ``segment``: its index and its propensity."""
    post = model.posterior_for(segment)
    point = float(rng.random()) * post.cumulative[-1]
    # A linear scan, not bisect (not among the modules bandit may import): K is small.
    i, last = 0, len(model.arms) - 1
    while i < last and post.cumulative[i] <= point:
        i += 1
    while post.weights[i] == 0.0:  # only reachable through float rounding at the top end
        i -= 1
    return i, float(post.weights[i])
