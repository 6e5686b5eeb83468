"""The in-memory view of running experiments that the request path reads.

A :class:`Runtime` is an immutable snapshot rebuilt from the SQL store by a background
task (and right after a policy change in this process). The request path only reads
the current snapshot: no I/O, and choosing a variant is a bisect over cumulative weights.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from api.control.allocation_versions import current_allocation
from api.store.models import Experiment

__all__ = ["ExperimentRuntime", "Runtime", "VariantRuntime", "build_runtime", "sticky_point"]


@dataclass(frozen=True, slots=True)
class VariantRuntime:
    name: str
    role: str
    sha256: str
    input_dim: int
    feature_names: tuple[str, ...]
    feature_index: dict[str, int]


@dataclass(frozen=True, slots=True)
class ExperimentRuntime:
    id: int
    name: str
    status: str
    reward_kind: str
    reward_metric: str | None
    sticky: bool
    version: int
    arms: tuple[VariantRuntime, ...]
    weights: tuple[float, ...]
    cumulative: tuple[float, ...]
    shadows: tuple[VariantRuntime, ...]
    feature_names: tuple[str, ...] = field(default=())
    """The union of the active variants' feature names, in first-seen order."""
    positional_dim: int | None = None
    """The list length every variant accepts, or ``None`` when they differ."""
    feature_set: frozenset[str] = frozenset()
    """``feature_names`` as a set: membership per request key is O(1), not O(d)."""
    feature_limit: float | None = None
    """The largest magnitude every variant's input dtype holds (float32's), or ``None``."""

    def choose(self, unit_id: str | None, rng: random.Random) -> tuple[VariantRuntime, float]:
        """Return the variant and its propensity (its weight in this allocation)."""
        point = sticky_point(self.name, unit_id) if self.sticky and unit_id else rng.random()
        # bisect_right on the cumulative weights skips zero-weight arms by construction.
        i = min(
            bisect.bisect_right(self.cumulative, point * self.cumulative[-1]), len(self.arms) - 1
        )
        while self.weights[i] == 0.0:  # only reachable through float rounding at the top end
            i -= 1
        return self.arms[i], self.weights[i]


def sticky_point(experiment: str, unit_id: str) -> float:
    """A stable point in [0, 1) for (experiment, unit): the same in every process and restart."""
    digest = hashlib.blake2b(f"{experiment}\x00{unit_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True, slots=True)
class Runtime:
    experiments: dict[str, ExperimentRuntime]
    by_id: dict[int, ExperimentRuntime]

    @staticmethod
    def empty() -> Runtime:
        return Runtime({}, {})


def _variant(v: Any) -> VariantRuntime:
    names = tuple(v.feature_names)
    return VariantRuntime(
        name=v.name,
        role=v.role,
        sha256=v.model_sha256,
        input_dim=v.input_dim,
        feature_names=names,
        feature_index={n: i for i, n in enumerate(names)},
    )


def build_runtime(session: Session, loaded: Mapping[tuple[str, str], np.dtype[Any]]) -> Runtime:
    """Snapshot every experiment; stopped ones too, so late feedback can still be checked.

    ``loaded`` maps the (experiment, variant) pairs with a live model session to their
    input dtype; a variant without one (failed to load) gets no traffic even if the stored
    allocation names it.
    """
    stmt = select(Experiment).options(selectinload(Experiment.variants))
    experiments: dict[str, ExperimentRuntime] = {}
    for exp in session.scalars(stmt):
        active = [v for v in exp.variants if v.status == "active" and (exp.name, v.name) in loaded]
        allocation = current_allocation(session, exp) if exp.status != "stopped" else None
        weights_by_name = dict(allocation.weights) if allocation else {}
        arms = [
            _variant(v) for v in active if v.role == "arm" and weights_by_name.get(v.name, 0) > 0
        ]
        weights = [float(weights_by_name[a.name]) for a in arms]
        total = sum(weights)
        weights = [w / total for w in weights] if total > 0 else []
        cumulative: list[float] = []
        running = 0.0
        for w in weights:
            running += w
            cumulative.append(running)
        shadows = tuple(_variant(v) for v in active if v.role == "shadow")
        everyone = [*arms, *shadows]
        names: dict[str, None] = {}
        for v in everyone:
            names.update(dict.fromkeys(v.feature_names))
        dims = {v.input_dim for v in everyone}
        limits = [
            float(np.finfo(loaded[(exp.name, v.name)]).max)
            for v in everyone
            if loaded[(exp.name, v.name)] != np.float64
        ]
        runtime = ExperimentRuntime(
            id=exp.id,
            name=exp.name,
            status=exp.status,
            reward_kind=exp.reward_kind,
            reward_metric=exp.reward_metric,
            sticky=exp.sticky,
            version=allocation.version if allocation else 0,
            arms=tuple(arms),
            weights=tuple(weights),
            cumulative=tuple(cumulative),
            shadows=shadows,
            feature_names=tuple(names),
            feature_set=frozenset(names),
            positional_dim=dims.pop() if len(dims) == 1 else None,
            feature_limit=min(limits) if limits else None,
        )
        experiments[exp.name] = runtime
    return Runtime(experiments, {e.id: e for e in experiments.values()})
