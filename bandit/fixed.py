"""A fixed split: the operator's shares, unchanged by rewards."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from bandit.errors import InvalidPolicyError
from bandit.policy import Evidence, Policy, PolicyConfig, Proposal, require

__all__ = ["POLICY", "FixedConfig", "fixed_decide"]


@dataclass(frozen=True)
class FixedConfig(PolicyConfig):
    """A fixed split: ``weights`` maps every arm name to its share (summing to 1)."""

    kind: ClassVar[str] = "fixed"
    adaptive: ClassVar[bool] = False
    default_min_weight: ClassVar[float] = 0.0

    weights: Mapping[str, float]

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.weights), "weights must name at least one arm.")
        for name, weight in self.weights.items():
            require(
                math.isfinite(weight) and weight >= 0.0,
                f"The fixed weight of arm {name!r} must be finite and non-negative, "
                f"but {weight!r} was given.",
            )
        total = math.fsum(self.weights.values())
        require(
            abs(total - 1.0) <= 1e-6,
            f"Fixed weights must sum to 1, but they sum to {total!r}.",
        )


def fixed_decide(config: FixedConfig, evidence: Evidence) -> Proposal:
    """The configured shares, which must name exactly the active arms."""
    names = evidence.names
    if set(config.weights) != set(names):
        msg = (
            f"Fixed weights must name exactly the active arms {sorted(names)!r}, "
            f"but they name {sorted(config.weights)!r}."
        )
        raise InvalidPolicyError(msg)
    fixed = np.array([config.weights[name] for name in names], dtype=np.float64)
    return Proposal(fixed, "Fixed split as configured.", "fixed")


POLICY = Policy(FixedConfig, fixed_decide)
