"""The in-memory view of the experiments that the request path reads.

A :class:`Runtime` is an immutable snapshot, built from the SQL store by
:mod:`api.serving.snapshot`. The request path only reads the current one: no I/O, and
choosing a variant is a bisect over cumulative weights.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from dataclasses import dataclass

from api.serving.redaction import RedactionPlan

__all__ = ["ExperimentRuntime", "Runtime", "VariantRuntime", "sticky_point"]


@dataclass(frozen=True, slots=True)
class VariantRuntime:
    name: str
    sha256: str
    input_dim: int
    feature_names: tuple[str, ...]


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
    feature_names: tuple[str, ...]
    """The union of the active variants' feature names, in first-seen order."""
    positional_dim: int | None
    """The list length every variant accepts, or ``None`` when they differ."""
    feature_set: frozenset[str]
    """``feature_names`` as a set: membership per request key is O(1), not O(d)."""
    feature_limit: float | None
    """The largest magnitude every variant's input dtype holds (float32's), or ``None``."""
    redaction: RedactionPlan | None = None
    """What of the features the lake row drops or hashes; ``None``: the row has them all."""

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
