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

Decisions draw ``draws`` = :math:`M` values from each arm's posterior; the
chosen arm is the winner of the first draw and its propensity the share of the
:math:`M` draws it wins: an estimate of Thompson sampling's probability
:math:`p` with standard error :math:`\\sqrt{p(1-p)/M}`, at least :math:`1/M`,
and the exact probability of the arm given the draws (as in
:mod:`bandit.contextual`), so inverse-propensity weighting stays unbiased.
With no segments at all (or one segment every request shares) this is plain,
non-contextual Thompson sampling per request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from bandit.errors import InvalidInputError, InvalidPolicyError
from bandit.posterior import BetaPosterior, Posterior, RewardKind, posteriors
from bandit.stats import ArmStats

__all__ = [
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
        Monte-Carlo draws per decision, :math:`M \\ge 1`.
    unknown : {"pooled", "error"}
        A segment the model has no posteriors for: serve it the pooled
        posteriors, or raise InvalidInputError naming it.
    """

    field: str
    reward: RewardKind = "binary"
    min_count: int = 100
    draws: int = 500
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
        for name in ("min_count", "draws"):
            value = getattr(self, name)
            low = 0 if name == "min_count" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                msg = f"{name} must be a whole number of at least {low}, but {value!r} was given."
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
            "unknown": self.unknown,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentedConfig:
        known = {"field", "reward", "min_count", "draws", "unknown"}
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
class SegmentedModel:
    """An immutable segmented-Thompson model version.

    Attributes
    ----------
    arms : tuple of str, length ``K``
    config : SegmentedConfig
    pooled : ndarray, shape ``(2, K)``
        The pooled posteriors' parameters: (alpha, beta) for binary rewards,
        (mean, sd) for continuous ones.
    segments : mapping of str to ndarray of shape ``(2, K)``
        The segments with their own posteriors.
    fallback : tuple of str
        The segments seen when fitting that had fewer than ``min_count``
        rewarded requests and are served the pooled posteriors.
    """

    arms: tuple[str, ...]
    config: SegmentedConfig
    pooled: NDArray[np.float64]
    segments: Mapping[str, NDArray[np.float64]] = field(default_factory=dict)
    fallback: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        k = len(self.arms)
        if k < 1 or len(set(self.arms)) != k:
            msg = (
                f"A segmented model needs one or more distinct arm names, "
                f"but {list(self.arms)!r} was given."
            )
            raise InvalidInputError(msg)
        pooled = self._checked("the pooled posterior", self.pooled)
        checked = {
            name: self._checked(f"segment {name!r}", params)
            for name, params in self.segments.items()
        }
        object.__setattr__(self, "arms", tuple(self.arms))
        object.__setattr__(self, "pooled", pooled)
        object.__setattr__(self, "segments", checked)
        object.__setattr__(self, "fallback", tuple(self.fallback))

    def _checked(self, what: str, params: NDArray[np.float64]) -> NDArray[np.float64]:
        k = len(self.arms)
        array = np.array(params, dtype=np.float64)
        if array.shape != (2, k) or not np.isfinite(array).all():
            msg = (
                f"The parameters of {what} must be finite with shape (2, {k}), "
                f"but shape {array.shape} was given."
            )
            raise InvalidInputError(msg)
        in_range = (array > 0).all() if self.config.reward == "binary" else (array[1] >= 0).all()
        if not in_range:
            msg = f"The parameters of {what} are out of range: {array.tolist()!r}."
            raise InvalidInputError(msg)
        array.flags.writeable = False
        return array

    def params_for(self, segment: object) -> NDArray[np.float64]:
        """The posterior parameters serving ``segment``, shape ``(2, K)``."""
        if not isinstance(segment, str):
            msg = (
                f"The segment field {self.config.field!r} must hold a string, "
                f"but {segment!r} was given."
            )
            raise InvalidInputError(msg)
        params = self.segments.get(segment)
        if params is not None:
            return params
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
            "pooled": self.pooled.tolist(),
            "segments": {name: params.tolist() for name, params in self.segments.items()},
            "fallback": list(self.fallback),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentedModel:
        try:
            return cls(
                tuple(data["arms"]),
                SegmentedConfig.from_dict(data["config"]),
                np.asarray(data["pooled"], dtype=np.float64),
                {
                    str(k): np.asarray(v, dtype=np.float64)
                    for k, v in dict(data["segments"]).items()
                },
                tuple(data["fallback"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidInputError):
                raise
            msg = f"A segmented model version is malformed: {exc} ({type(exc).__name__})."
            raise InvalidInputError(msg) from exc


def fit_segmented(
    stats: Mapping[str, Sequence[ArmStats]],
    *,
    arms: Sequence[str],
    config: SegmentedConfig,
) -> SegmentedModel:
    """The model version of per-segment statistics.

    Parameters
    ----------
    stats : mapping of segment value to a sequence of ArmStats of length ``K``
    arms : sequence of str, length ``K``
    config : SegmentedConfig
    """
    names = tuple(arms)
    pooled = [ArmStats() for _ in names]
    for segment, arm_stats in stats.items():
        if len(arm_stats) != len(names):
            msg = (
                f"Segment {segment!r} needs one ArmStats per arm ({len(names)}), "
                f"but {len(arm_stats)} were given."
            )
            raise InvalidInputError(msg)
        pooled = [total + s for total, s in zip(pooled, arm_stats, strict=True)]
    own: dict[str, NDArray[np.float64]] = {}
    fallback: list[str] = []
    for segment, arm_stats in stats.items():
        if math.fsum(s.n for s in arm_stats) >= config.min_count:
            own[segment] = _params(posteriors(arm_stats, kind=config.reward))
        else:
            fallback.append(segment)
    pooled_params = _params(posteriors(pooled, kind=config.reward))
    return SegmentedModel(names, config, pooled_params, own, tuple(fallback))


def _draw(
    params: NDArray[np.float64],
    reward: RewardKind,
    shape: tuple[int, int],
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    if reward == "binary":
        drawn: NDArray[np.float64] = rng.beta(params[0], params[1], size=(*shape, params.shape[1]))
        return drawn
    noise = rng.standard_normal((*shape, params.shape[1]))
    scores: NDArray[np.float64] = params[0] + params[1] * noise
    return scores


def decide_segments(
    model: SegmentedModel, segments: Sequence[object], rng: np.random.Generator
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Choose an arm for each request's segment: indices and propensities, each shape ``(n,)``."""
    n, draws = len(segments), model.config.draws
    # Resolve every segment first, so a refused one raises before any draw.
    resolved = [model.params_for(segment) for segment in segments]
    chosen = np.empty(n, dtype=np.intp)
    propensity = np.empty(n)
    groups: dict[int, list[int]] = {}
    for i, params in enumerate(resolved):
        groups.setdefault(id(params), []).append(i)
    for rows in groups.values():
        params = resolved[rows[0]]
        scores = _draw(params, model.config.reward, (len(rows), draws), rng)
        winners = scores.argmax(axis=2)
        first = winners[:, 0]
        chosen[rows] = first
        propensity[rows] = (winners == first[:, None]).mean(axis=1)
    return chosen, propensity


def decide_segment(
    model: SegmentedModel, segment: object, rng: np.random.Generator
) -> tuple[int, float]:
    """Choose an arm for one request in ``segment``: its index and its propensity."""
    arms, propensities = decide_segments(model, [segment], rng)
    return int(arms[0]), float(propensities[0])
