"""Linear contextual bandits: linear Thompson sampling (LinTS) and LinUCB, one ridge model per arm.

A request's context is a vector of named numeric features :math:`x \\in \\mathbb R^d`.
A fixed :class:`Standardizer` (means and scales given, or estimated once from a
first batch with :meth:`Standardizer.fit`, then kept: the statistics below are
sums over standardised rows, so changing it later would need them recomputed)
turns it into the design row :math:`z = (1, (x - m)/s) \\in \\mathbb R^D`,
:math:`D = d + 1`; the leading 1 is the intercept.

Model
    Arm :math:`k`'s expected reward is :math:`z^\\top \\theta_k`. With ridge
    :math:`\\lambda` (the prior precision, on every coefficient, intercept
    included), the arm's rows :math:`Z_k` and rewards :math:`y_k`,

    .. math::

        A_k = \\lambda I_D + Z_k^\\top Z_k, \\qquad
        \\hat\\theta_k = A_k^{-1} Z_k^\\top y_k ,

    the closed-form ridge solution; :math:`\\hat\\theta_k = 0` without data.
    Read as Bayesian linear regression with noise sd :math:`v` and prior
    :math:`\\theta_k \\sim N(0, v^2/\\lambda\\, I)`, the posterior is
    :math:`N(\\hat\\theta_k, v^2 A_k^{-1})`.

Sufficient statistics (:class:`LinearStats`, per arm, additive)

    ========== =========================== =======
    field      per-row contribution        combine
    ========== =========================== =======
    ``xtx``    :math:`z z^\\top` (D by D)   ``+``
    ``xty``    :math:`z\\, y` (D)           ``+``
    ``n``      1                           ``+``
    ``sum_sq`` :math:`y^2`                 ``+``
    ========== =========================== =======

    A reallocator folds only new data in (``total = total + new``) and fits a
    :class:`LinearModel`, the immutable model version: per arm
    :math:`\\hat\\theta_k` and the factor :math:`F_k` with :math:`F_k F_k^\\top =
    A_k^{-1}` (precomputed, so a decision costs :math:`O(K D^2)`), plain-JSON
    serialisable with :meth:`LinearModel.to_dict`.

Decisions (:func:`decide`, :func:`decide_batch`)
    ``lints`` (Agrawal & Goyal 2013, "Thompson sampling for contextual bandits
    with linear payoffs", ICML): draw :math:`\\tilde\\theta_k \\sim
    N(\\hat\\theta_k, v^2 A_k^{-1})` and choose :math:`\\arg\\max_k z^\\top
    \\tilde\\theta_k`. For a fixed context only the scores matter, and arm
    :math:`k`'s score is exactly :math:`N(z^\\top\\hat\\theta_k,\\; v^2
    \\lVert F_k^\\top z\\rVert^2)`, independent across arms, so drawing them
    costs :math:`K` normals instead of :math:`K D`. ``draws`` = :math:`M`
    independent score vectors are drawn; the chosen arm is the winner of the
    first and its propensity is the share :math:`\\hat p` of the :math:`M`
    draws it wins. :math:`\\hat p` estimates Thompson sampling's probability
    :math:`p` of that arm with standard error :math:`\\sqrt{p(1-p)/M}`; it is
    never below :math:`1/M` (the chosen arm won at least its own draw), and it
    is the *exact* probability of the arm given the :math:`M` draws (the draws
    are exchangeable, so the first one's winner is the winner of a uniformly
    chosen one), which is what inverse-propensity weighting needs: the
    off-policy estimators stay unbiased although :math:`\\hat p \\ne p`,
    provided every arm the evaluated policy may choose had a positive
    probability. An arm that won none of the :math:`M` draws had probability 0
    in that round, so LinTS mixes in a little uniform exploration too
    (below); with ``epsilon = 0`` only the logging policy's own value, or that
    of a policy choosing among arms that won draws, is estimated without bias.

    ``linucb`` (Li, Chu, Langford & Schapire 2010, "A contextual-bandit
    approach to personalized news article recommendation", WWW): the score is
    :math:`z^\\top\\hat\\theta_k + \\alpha \\sqrt{z^\\top A_k^{-1} z}` and the
    arm its argmax, ties split evenly. A deterministic argmax gives the other
    arms propensity 0, which no off-policy estimator can use, so LinUCB mixes
    in uniform exploration: arm :math:`k`'s probability is
    :math:`\\varepsilon/K + (1 - \\varepsilon)[k \\in \\text{argmax}]/|\\text{argmax}|`
    with :math:`\\varepsilon` = ``epsilon`` (0.05 by default), and that exact
    probability is logged.

    LinTS takes the same ``epsilon`` (0.02 by default); its propensity is then
    :math:`\\varepsilon/K + (1 - \\varepsilon)\\hat p_k \\ge \\varepsilon/K`, also
    exact given the draws, so every arm keeps probability at least
    :math:`\\varepsilon/K` in every round and inverse-propensity weights stay
    below :math:`K/\\varepsilon`.

No I/O, no clock: randomness comes only from the ``numpy.random.Generator``
argument. Contextual policies are not entries of :mod:`bandit.registry`: a
registered policy maps arm statistics to *one* weight vector
(:class:`bandit.policy.Proposal`), while these decide per request from its
context, with statistics (:class:`LinearStats`) the registry's
:class:`bandit.policy.Evidence` does not carry.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bandit.errors import (
    InvalidArrayError,
    InvalidInputError,
    InvalidPolicyError,
    InvalidStatsError,
)

__all__ = [
    "LinearConfig",
    "LinearKind",
    "LinearModel",
    "LinearStats",
    "Standardizer",
    "arm_probabilities",
    "context_matrix",
    "decide",
    "decide_batch",
    "fit_linear",
]

LinearKind = Literal["lints", "linucb"]

# Work arrays of one chunk of a batch hold at most this many score draws (16 MiB of float32).
_CHUNK_DRAWS = 1 << 22
# One context's draws must fit in a chunk; beyond this the propensity's error is below 0.0016.
MAX_DRAWS = 100_000


def _finite_matrix(x: ArrayLike, *, what: str) -> NDArray[np.float64]:
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        msg = f"The {what} must be numeric, but {x!r} cannot be read as numbers."
        raise InvalidArrayError(msg) from None
    return array


# -- standardisation -------------------------------------------------------------------------


@dataclass(frozen=True)
class Standardizer:
    """Fixed feature names, means and scales: the design row is :math:`(1, (x - m)/s)`.

    Parameters
    ----------
    features : tuple of str, length ``d``
    means, scales : tuple of float, length ``d``
        Scales are positive; :meth:`identity` is means 0 and scales 1.
    """

    features: tuple[str, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    _shift: NDArray[np.float64] = field(init=False, repr=False, compare=False)
    _scale: NDArray[np.float64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "means", tuple(float(m) for m in self.means))
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if not self.features:
            msg = "A contextual model needs at least one context feature, but none was given."
            raise InvalidInputError(msg)
        for name in self.features:
            if not isinstance(name, str) or not name:
                msg = f"Context feature names must be non-empty strings, but {name!r} was given."
                raise InvalidInputError(msg)
        if len(set(self.features)) != len(self.features):
            msg = f"Context feature names must be unique, but {list(self.features)!r} repeats one."
            raise InvalidInputError(msg)
        d = len(self.features)
        if len(self.means) != d or len(self.scales) != d:
            msg = (
                f"The standardisation needs one mean and one scale per feature ({d}), "
                f"but {len(self.means)} means and {len(self.scales)} scales were given."
            )
            raise InvalidInputError(msg)
        for name, mean, scale in zip(self.features, self.means, self.scales, strict=True):
            if not math.isfinite(mean):
                msg = f"The mean of feature {name!r} must be finite, but {mean!r} was given."
                raise InvalidInputError(msg)
            if not (math.isfinite(scale) and scale > 0):
                msg = f"The scale of feature {name!r} must be positive, but {scale!r} was given."
                raise InvalidInputError(msg)
        # Arrays kept beside the tuples: design() runs on the request path.
        object.__setattr__(self, "_shift", np.asarray(self.means))
        object.__setattr__(self, "_scale", np.asarray(self.scales))

    @classmethod
    def identity(cls, features: Sequence[str]) -> Standardizer:
        """No standardisation: means 0, scales 1."""
        return cls(tuple(features), (0.0,) * len(features), (1.0,) * len(features))

    @classmethod
    def fit(cls, features: Sequence[str], x: ArrayLike) -> Standardizer:
        """Means and standard deviations of a first batch ``x``, shape ``(n, d)``, kept after.

        A feature constant in the batch gets scale 1: it carries no information
        there, and a tiny scale would blow up its later values.
        """
        names = tuple(features)
        array = _check_contexts(x, names)
        if array.shape[0] == 0:
            msg = "Standardisation needs a first batch of at least one context, but it is empty."
            raise InvalidInputError(msg)
        std = array.std(axis=0)
        scales = np.where(std > 1e-12 * np.maximum(np.abs(array.mean(axis=0)), 1.0), std, 1.0)
        return cls(names, tuple(array.mean(axis=0).tolist()), tuple(scales.tolist()))

    @property
    def dim(self) -> int:
        """Length ``D = d + 1`` of a design row (intercept first)."""
        return len(self.features) + 1

    def design(self, x: ArrayLike) -> NDArray[np.float64]:
        """Design rows :math:`(1, (x - m)/s)`, shape ``(n, D)``, from contexts, shape ``(n, d)``."""
        array = _check_contexts(x, self.features)
        z = np.empty((array.shape[0], self.dim))
        z[:, 0] = 1.0
        np.subtract(array, self._shift, out=z[:, 1:])
        z[:, 1:] /= self._scale
        return z

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "means": list(self.means),
            "scales": list(self.scales),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Standardizer:
        try:
            return cls(tuple(data["features"]), tuple(data["means"]), tuple(data["scales"]))
        except (KeyError, TypeError) as exc:
            msg = (
                f"A standardisation needs features, means and scales, but {dict(data)!r} was given."
            )
            raise InvalidInputError(msg) from exc


def _check_contexts(x: ArrayLike, features: tuple[str, ...]) -> NDArray[np.float64]:
    array = _finite_matrix(x, what="context")
    d = len(features)
    if array.ndim != 2 or array.shape[1] != d:
        got = array.shape[-1] if array.ndim >= 1 else 0
        msg = (
            f"Contexts must have shape (n, {d}), one column per feature "
            f"({', '.join(features)}), but shape {array.shape} ({got} features) was given."
        )
        raise InvalidArrayError(msg)
    finite = np.isfinite(array)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        msg = (
            f"Context feature {features[col]!r} must be finite, but row {row} holds "
            f"{float(array[row, col])!r}."
        )
        raise InvalidArrayError(msg)
    return array


def context_matrix(
    features: Sequence[str], rows: Sequence[Mapping[str, object]]
) -> NDArray[np.float64]:
    """Contexts, shape ``(n, d)``, from ``n`` mappings of feature name to number.

    Raises InvalidInputError naming the first missing feature, or value that is
    not a finite real number (booleans and strings included), and its row.
    """
    names = tuple(features)
    out = np.empty((len(rows), len(names)))
    for i, row in enumerate(rows):
        for j, name in enumerate(names):
            if name not in row:
                msg = f"Context row {i} lacks the feature {name!r}."
                raise InvalidInputError(msg)
            value = row[name]
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                msg = f"Context feature {name!r} must be a number, but row {i} holds {value!r}."
                raise InvalidInputError(msg)
            if not math.isfinite(value):
                msg = f"Context feature {name!r} must be finite, but row {i} holds {value!r}."
                raise InvalidInputError(msg)
            out[i, j] = float(value)
    return out


# -- sufficient statistics -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LinearStats:
    """Additive ridge statistics of one arm (see the module docstring).

    Parameters
    ----------
    xtx : ndarray, shape ``(D, D)``
        :math:`Z^\\top Z` over the arm's design rows; symmetric.
    xty : ndarray, shape ``(D,)``
        :math:`Z^\\top y`.
    n : float
        Number of rows.
    sum_sq : float
        :math:`\\sum y^2`, for a noise estimate.
    """

    xtx: NDArray[np.float64]
    xty: NDArray[np.float64]
    n: float = 0.0
    sum_sq: float = 0.0

    def __post_init__(self) -> None:
        xtx = np.array(self.xtx, dtype=np.float64)
        xty = np.array(self.xty, dtype=np.float64)
        if xtx.ndim != 2 or xtx.shape[0] != xtx.shape[1] or xtx.shape[0] < 1:
            msg = f"LinearStats.xtx must be a square matrix, but shape {xtx.shape} was given."
            raise InvalidStatsError(msg)
        if xty.shape != (xtx.shape[0],):
            msg = (
                f"LinearStats.xty must have shape ({xtx.shape[0]},) to match xtx, "
                f"but shape {xty.shape} was given."
            )
            raise InvalidStatsError(msg)
        for name, value in (("n", self.n), ("sum_sq", self.sum_sq)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                msg = f"LinearStats.{name} must be a number, but {value!r} was given."
                raise InvalidStatsError(msg)
            if not (math.isfinite(value) and value >= 0):
                msg = (
                    f"LinearStats.{name} must be finite and non-negative, but {value!r} was given."
                )
                raise InvalidStatsError(msg)
        if not (np.isfinite(xtx).all() and np.isfinite(xty).all()):
            msg = "LinearStats.xtx and xty must be finite, but they hold a non-finite value."
            raise InvalidStatsError(msg)
        if np.any(np.diag(xtx) < 0):
            msg = "LinearStats.xtx must have a non-negative diagonal (it is a sum of z zᵀ)."
            raise InvalidStatsError(msg)
        xtx.flags.writeable = False
        xty.flags.writeable = False
        object.__setattr__(self, "xtx", xtx)
        object.__setattr__(self, "xty", xty)
        object.__setattr__(self, "n", float(self.n))
        object.__setattr__(self, "sum_sq", float(self.sum_sq))

    @classmethod
    def zeros(cls, dim: int) -> LinearStats:
        """No data, for design rows of length ``dim``."""
        return cls(np.zeros((dim, dim)), np.zeros(dim))

    @classmethod
    def from_rows(cls, z: ArrayLike, y: ArrayLike) -> LinearStats:
        """Statistics of design rows ``z``, shape ``(n, D)``, and rewards ``y``, shape ``(n,)``.

        The rows come from :meth:`Standardizer.design`.
        """
        zz = _finite_matrix(z, what="design matrix")
        yy = _finite_matrix(y, what="reward vector")
        if zz.ndim != 2 or yy.shape != (zz.shape[0],):
            msg = (
                f"Design rows must have shape (n, D) and rewards shape (n,), "
                f"but shapes {zz.shape} and {yy.shape} were given."
            )
            raise InvalidArrayError(msg)
        if not (np.isfinite(zz).all() and np.isfinite(yy).all()):
            msg = "Design rows and rewards must be finite, but they hold a non-finite value."
            raise InvalidArrayError(msg)
        return cls(zz.T @ zz, zz.T @ yy, n=float(zz.shape[0]), sum_sq=float(yy @ yy))

    @property
    def dim(self) -> int:
        return int(self.xtx.shape[0])

    def __add__(self, other: LinearStats) -> LinearStats:
        if not isinstance(other, LinearStats):
            return NotImplemented
        if other.dim != self.dim:
            msg = f"Cannot add LinearStats of dimension {self.dim} and {other.dim}."
            raise InvalidStatsError(msg)
        return LinearStats(
            self.xtx + other.xtx, self.xty + other.xty, self.n + other.n, self.sum_sq + other.sum_sq
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "xtx": self.xtx.tolist(),
            "xty": self.xty.tolist(),
            "n": self.n,
            "sum_sq": self.sum_sq,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LinearStats:
        try:
            return cls(
                np.asarray(data["xtx"], dtype=np.float64),
                np.asarray(data["xty"], dtype=np.float64),
                data["n"],
                data["sum_sq"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidInputError):
                raise
            msg = (
                f"LinearStats need numeric xtx, xty, n and sum_sq, "
                f"but {exc} ({type(exc).__name__})."
            )
            raise InvalidStatsError(msg) from exc


# -- configuration and model version ---------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LinearConfig:
    """How a linear contextual model is fitted and decides.

    Parameters
    ----------
    kind : {"lints", "linucb"}
    ridge : float
        :math:`\\lambda > 0`, the prior precision (in units of the noise variance).
    exploration : float
        :math:`v` for LinTS (the posterior scale: the reward noise sd in the
        Bayesian reading, e.g. at most 0.5 for 0/1 rewards), :math:`\\alpha`
        for LinUCB; non-negative, and positive for LinTS.
    draws : int
        LinTS's Monte-Carlo draws per decision, :math:`M \\ge 1`; the
        propensity's standard error is :math:`\\sqrt{p(1-p)/M}` (at most
        :math:`0.5/\\sqrt M`: 0.022 at the default 500); at most 100,000.
    epsilon : float or None
        Uniform exploration mixed into every decision, so no arm has
        propensity 0; ``None`` means 0.05 for LinUCB and 0.02 for LinTS.
    """

    kind: LinearKind = "lints"
    ridge: float = 1.0
    exploration: float = 1.0
    draws: int = 500
    epsilon: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("lints", "linucb"):
            msg = (
                f"The contextual policy kind must be 'lints' or 'linucb', "
                f"but {self.kind!r} was given."
            )
            raise InvalidPolicyError(msg)
        if not (math.isfinite(self.ridge) and self.ridge > 0):
            msg = f"ridge must be positive, but {self.ridge!r} was given."
            raise InvalidPolicyError(msg)
        low_ok = self.exploration > 0 if self.kind == "lints" else self.exploration >= 0
        if not (math.isfinite(self.exploration) and low_ok):
            sign = "positive" if self.kind == "lints" else "non-negative"
            msg = f"exploration must be {sign} for {self.kind}, but {self.exploration!r} was given."
            raise InvalidPolicyError(msg)
        draws_ok = isinstance(self.draws, int) and not isinstance(self.draws, bool)
        if not draws_ok or not (1 <= self.draws <= MAX_DRAWS):
            msg = (
                f"draws must be a whole number from 1 to {MAX_DRAWS:,}, "
                f"but {self.draws!r} was given."
            )
            raise InvalidPolicyError(msg)
        if self.epsilon is not None and not (0.0 <= self.epsilon <= 1.0):
            msg = f"epsilon must be in [0, 1], but {self.epsilon!r} was given."
            raise InvalidPolicyError(msg)

    @property
    def mixing(self) -> float:
        """The uniform-exploration share in force (``epsilon`` with its default resolved)."""
        if self.epsilon is not None:
            return self.epsilon
        return 0.05 if self.kind == "linucb" else 0.02

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ridge": self.ridge,
            "exploration": self.exploration,
            "draws": self.draws,
            "epsilon": self.epsilon,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LinearConfig:
        known = {"kind", "ridge", "exploration", "draws", "epsilon"}
        unknown = sorted(set(data) - known)
        if unknown:
            msg = (
                f"Unknown contextual policy parameter {unknown[0]!r}; "
                f"expected some of {sorted(known)}."
            )
            raise InvalidPolicyError(msg)
        try:
            return cls(**dict(data))
        except TypeError as exc:
            msg = f"A contextual policy parameter has the wrong type: {exc}."
            raise InvalidPolicyError(msg) from exc


@dataclass(frozen=True, eq=False)
class LinearModel:
    """An immutable model version: each arm's ridge posterior, ready to decide.

    Attributes
    ----------
    arms : tuple of str, length ``K``
    standardizer : Standardizer
    config : LinearConfig
    theta : ndarray, shape ``(K, D)``
        Posterior means :math:`\\hat\\theta_k`.
    factor : ndarray, shape ``(K, D, D)``
        :math:`F_k` with :math:`F_k F_k^\\top = A_k^{-1}` (upper triangular,
        :math:`F_k = C_k^{-\\top}` for the Cholesky factor :math:`C_k` of
        :math:`A_k`); LinTS's posterior covariance is :math:`v^2 F_k F_k^\\top`.
    counts : ndarray, shape ``(K,)``
        Rows each arm was fitted on.
    """

    arms: tuple[str, ...]
    standardizer: Standardizer
    config: LinearConfig
    theta: NDArray[np.float64]
    factor: NDArray[np.float64]
    counts: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        k, dim = len(self.arms), self.standardizer.dim
        if k < 1 or len(set(self.arms)) != k:
            msg = (
                f"A contextual model needs one or more distinct arm names, "
                f"but {list(self.arms)!r} was given."
            )
            raise InvalidInputError(msg)
        theta = np.array(self.theta, dtype=np.float64)
        factor = np.array(self.factor, dtype=np.float64)
        counts = np.array(self.counts, dtype=np.float64) if np.size(self.counts) else np.zeros(k)
        if theta.shape != (k, dim) or factor.shape != (k, dim, dim) or counts.shape != (k,):
            msg = (
                f"A model of {k} arms over {dim - 1} features needs theta of shape ({k}, {dim}), "
                f"factor of shape ({k}, {dim}, {dim}) and counts of shape ({k},), but shapes "
                f"{theta.shape}, {factor.shape} and {counts.shape} were given."
            )
            raise InvalidInputError(msg)
        if not (
            np.isfinite(theta).all() and np.isfinite(factor).all() and np.isfinite(counts).all()
        ):
            msg = "A contextual model's theta, factor and counts must be finite."
            raise InvalidInputError(msg)
        for array in (theta, factor, counts):
            array.flags.writeable = False
        object.__setattr__(self, "arms", tuple(self.arms))
        object.__setattr__(self, "theta", theta)
        object.__setattr__(self, "factor", factor)
        object.__setattr__(self, "counts", counts)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; :meth:`from_dict` restores the model exactly."""
        return {
            "arms": list(self.arms),
            "standardizer": self.standardizer.to_dict(),
            "config": self.config.to_dict(),
            "theta": self.theta.tolist(),
            "factor": self.factor.tolist(),
            "counts": self.counts.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LinearModel:
        try:
            return cls(
                tuple(data["arms"]),
                Standardizer.from_dict(data["standardizer"]),
                LinearConfig.from_dict(data["config"]),
                np.asarray(data["theta"], dtype=np.float64),
                np.asarray(data["factor"], dtype=np.float64),
                np.asarray(data["counts"], dtype=np.float64),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidInputError):
                raise
            msg = f"A contextual model version is malformed: {exc} ({type(exc).__name__})."
            raise InvalidInputError(msg) from exc


def fit_linear(
    stats: Sequence[LinearStats],
    *,
    arms: Sequence[str],
    standardizer: Standardizer,
    config: LinearConfig,
) -> LinearModel:
    """The model version of each arm's statistics: the closed-form ridge fit.

    Parameters
    ----------
    stats : sequence of LinearStats, length ``K``, each of dimension ``D``
    arms : sequence of str, length ``K``
    standardizer : Standardizer
        The one the statistics' design rows were built with.
    config : LinearConfig

    Returns
    -------
    LinearModel
        :math:`\\hat\\theta_k = A_k^{-1} Z_k^\\top y_k` and :math:`F_k = C_k^{-\\top}`
        with :math:`A_k = \\lambda I + Z_k^\\top Z_k = C_k C_k^\\top`.
    """
    names = tuple(arms)
    if len(stats) != len(names):
        msg = f"One LinearStats per arm is needed ({len(names)} arms), but {len(stats)} were given."
        raise InvalidInputError(msg)
    dim = standardizer.dim
    for name, arm in zip(names, stats, strict=True):
        if not isinstance(arm, LinearStats) or arm.dim != dim:
            got = arm.dim if isinstance(arm, LinearStats) else type(arm).__name__
            msg = f"Arm {name!r} needs LinearStats of dimension {dim}, but {got} was given."
            raise InvalidStatsError(msg)
    eye = np.eye(dim)
    precision = np.stack([config.ridge * eye + arm.xtx for arm in stats])
    # A sum of z zᵀ is symmetric in exact arithmetic; averaging with its transpose
    # removes the rounding asymmetry that Cholesky would otherwise read from one triangle.
    precision = 0.5 * (precision + np.swapaxes(precision, 1, 2))
    try:
        chol = np.linalg.cholesky(precision)
    except np.linalg.LinAlgError:
        msg = (
            "The statistics make a ridge matrix that is not positive definite; "
            "they cannot come from data."
        )
        raise InvalidStatsError(msg) from None
    rhs = np.stack([arm.xty for arm in stats])[..., None]
    theta = np.asarray(np.linalg.solve(precision, rhs)[..., 0], dtype=np.float64)
    factor = np.swapaxes(np.linalg.inv(chol), 1, 2)
    counts = np.array([arm.n for arm in stats])
    return LinearModel(names, standardizer, config, theta, factor, counts)


# -- decisions -------------------------------------------------------------------------------


def _score_moments(
    model: LinearModel, z: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Score means :math:`z^\\top\\hat\\theta_k` and widths :math:`\\lVert F_k^\\top z\\rVert`.

    Each of shape ``(n, K)``.
    """
    mean = z @ model.theta.T
    projected = z @ model.factor  # (K, n, D): F_kᵀ z for every arm and row, as rows
    width = np.sqrt(np.square(projected).sum(axis=2)).T
    return mean, width


def arm_probabilities(
    model: LinearModel, x: ArrayLike, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Each arm's probability for each context, shape ``(n, K)``, rows summing to 1.

    For LinUCB the exact probabilities; for LinTS the Monte-Carlo shares of
    ``config.draws`` fresh draws (see the module docstring), with
    ``epsilon`` mixed in. An evaluation-mode candidate reads the logged arm's
    column as its probability of that arm.
    """
    z = model.standardizer.design(x)
    _, probs = _decide_design(model, z, rng)
    return probs


def _decide_design(
    model: LinearModel, z: NDArray[np.float64], rng: np.random.Generator
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    n, k = z.shape[0], len(model.arms)
    config = model.config
    eps = config.mixing
    mean, width = _score_moments(model, z)
    if config.kind == "linucb":
        score = mean + config.exploration * width
        # Ties (every arm before any data) split evenly, so no arm order leaks in.
        top = score.max(axis=1, keepdims=True)
        best = score >= top - 1e-12 * np.abs(score).max(axis=1, keepdims=True)
        greedy = best / best.sum(axis=1, keepdims=True)
        probs: NDArray[np.float64] = eps / k + (1.0 - eps) * greedy
        cumulative = np.cumsum(probs, axis=1)
        u = rng.random((n, 1)) * cumulative[:, -1:]
        chosen = np.minimum((u >= cumulative).sum(axis=1), k - 1).astype(np.intp)
        return chosen, probs
    draws = config.draws
    spread = config.exploration * width
    # Centred on each row's best mean, so single precision keeps the differences that matter.
    mean = mean - mean.max(axis=1, keepdims=True)
    chosen = np.empty(n, dtype=np.intp)
    shares = np.empty((n, k))
    rows = max(1, _CHUNK_DRAWS // (draws * k))
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        # Single precision halves the cost of the draws; only their argmax is used.
        noise = rng.standard_normal((stop - start, draws, k), dtype=np.float32)
        noise *= spread[start:stop, None, :].astype(np.float32)
        noise += mean[start:stop, None, :].astype(np.float32)
        scores = noise
        winners = scores.argmax(axis=2)
        chosen[start:stop] = winners[:, 0]
        offsets = (np.arange(stop - start) * k)[:, None]
        counts = np.bincount((winners + offsets).ravel(), minlength=(stop - start) * k)
        shares[start:stop] = counts.reshape(stop - start, k) / draws
    probs = shares
    if eps > 0:
        probs = eps / k + (1.0 - eps) * shares
        # One uniform u per row: u < eps explores, and then u / eps is uniform on [0, 1).
        draw = rng.random((n,))
        uniform_arm = np.minimum((draw / eps * k).astype(np.intp), k - 1)
        chosen = np.where(draw < eps, uniform_arm, chosen)
    return chosen, probs


def decide_batch(
    model: LinearModel, x: ArrayLike, rng: np.random.Generator
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Choose an arm for each context: indices and their propensities, each shape ``(n,)``.

    Parameters
    ----------
    model : LinearModel
    x : array_like, shape ``(n, d)``
        Raw contexts, columns in the order of ``model.standardizer.features``.
    rng : numpy.random.Generator

    Returns
    -------
    arms : ndarray of intp, shape ``(n,)``
    propensities : ndarray of float, shape ``(n,)``
        The probability the policy gave the chosen arm (see the module
        docstring): at least :math:`\\varepsilon/K`; for LinTS at least
        :math:`(1 - \\varepsilon)/M` too, exact for LinUCB.
    """
    z = model.standardizer.design(x)
    chosen, probs = _decide_design(model, z, rng)
    return chosen, probs[np.arange(z.shape[0]), chosen]


def decide(model: LinearModel, x: ArrayLike, rng: np.random.Generator) -> tuple[int, float]:
    """Choose an arm for one context ``x``, shape ``(d,)``: its index and its propensity."""
    array = _finite_matrix(x, what="context")
    if array.ndim != 1:
        d = len(model.standardizer.features)
        msg = f"One context must have shape ({d},), but shape {array.shape} was given."
        raise InvalidArrayError(msg)
    arms, propensities = decide_batch(model, array[None, :], rng)
    return int(arms[0]), float(propensities[0])
