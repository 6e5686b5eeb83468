"""The service's view of the lake's sufficient statistics, shared by the reallocator and
the report. One :class:`lake.aggregates.LakeAggregator` per process, advanced under a lock.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.store.models import Experiment
from bandit.ipw import IpwStats
from bandit.stats import ArmStats
from lake.aggregates import LATENCY_EDGES_MS, LakeAggregator, Totals, latency_quantile
from lake.rewards import RewardRule

__all__ = ["LakeStats", "VariantView", "bandit_kind", "reward_rule"]


def reward_rule(experiment: Experiment) -> RewardRule:
    return RewardRule(experiment.reward_kind, experiment.reward_metric)  # type: ignore[arg-type]


def bandit_kind(experiment: Experiment) -> Literal["binary", "continuous"]:
    """Accuracy is a 0/1 reward; label errors and continuous rewards are real numbers."""
    if experiment.reward_kind == "binary":
        return "binary"
    if experiment.reward_kind == "label" and experiment.reward_metric in (None, "accuracy"):
        return "binary"
    return "continuous"


@dataclass(frozen=True)
class VariantView:
    """One variant's counts over every allocation version, and per version."""

    name: str
    role: str
    served: int
    errors: int
    latency: NDArray[np.int64]
    rewards: ArmStats
    by_version: dict[int, Totals]

    @property
    def error_rate(self) -> float:
        return self.errors / self.served if self.served else 0.0

    def p(self, q: float) -> float | None:
        return latency_quantile(self.latency, q)

    def ipw(self, n_total: int) -> IpwStats:
        """The arm's IPW sums among ``n_total`` rewarded requests of the experiment.

        The bandit type adds the versions' sums; each part counts its own rows as its
        total until the experiment's ``n_total`` replaces it. (Shadows have no propensity
        and so no IPW estimate.)
        """
        parts = (t.ipw(t.n) for t in self.by_version.values())
        return dataclasses.replace(sum(parts, IpwStats()), n_total=n_total)

    def buckets(self) -> list[ArmStats]:
        """Rewards per allocation version, oldest first (for discounting and windows)."""
        return [self.by_version[v].rewards() for v in sorted(self.by_version)]


class LakeStats:
    def __init__(self, engine: Engine, root: Path, *, lookback: timedelta) -> None:
        self._aggregator = LakeAggregator(engine, root, lookback=lookback)
        self._lock = threading.Lock()

    def refresh(self, session: Session) -> int:
        """Fold in the files written since the last refresh (cost: the new files only)."""
        rules = {e.name: reward_rule(e) for e in session.scalars(select(Experiment))}
        with self._lock:
            return self._aggregator.update(rules)

    @property
    def watermarks(self) -> dict[str, int]:
        return self._aggregator.watermarks

    def variants(self, experiment: str, names: Sequence[tuple[str, str]]) -> list[VariantView]:
        """Views of ``names`` ((variant, role) pairs), in that order; empty when unseen."""
        with self._lock:
            totals = self._aggregator.totals(experiment)
        views = []
        for name, role in names:
            mine = {k.version: t for k, t in totals.items() if k.variant == name and k.role == role}
            parts = list(mine.values())
            views.append(
                VariantView(
                    name=name,
                    role=role,
                    served=sum(t.served for t in parts),
                    errors=sum(t.errors for t in parts),
                    latency=sum(
                        (t.latency for t in parts), np.zeros_like(LATENCY_EDGES_MS, dtype=np.int64)
                    ),
                    rewards=sum((t.rewards() for t in parts), ArmStats()),
                    by_version=mine,
                )
            )
        return views

    def served_by_version(self, experiment: str) -> dict[int, dict[str, int]]:
        """Arm requests per allocation version and variant (for the sample-ratio test)."""
        with self._lock:
            totals = self._aggregator.totals(experiment)
        out: dict[int, dict[str, int]] = {}
        for key, t in totals.items():
            if key.role == "arm":
                out.setdefault(key.version, {})[key.variant] = t.served
        return out
