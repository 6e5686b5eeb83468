"""The service's view of the lake's sufficient statistics, shared by the reallocator and
the report: the glue between the SQL store's experiments and one
:class:`lake.aggregates.LakeAggregator` per process, advanced under a lock.

The statistics themselves (:class:`lake.variants.VariantView` and the per-version parts
it sums) are the lake's; this module only reads the reward rules from ``Experiment`` rows.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.store.models import Experiment
from lake.aggregates import LakeAggregator
from lake.rewards import RewardRule
from lake.variants import VariantView

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


class LakeStats:
    """The lake's statistics for the service: refreshed from the SQL store's reward rules,
    read by the reallocator and the report from any thread."""

    def __init__(self, engine: Engine, root: Path, *, lookback: timedelta) -> None:
        self._aggregator = LakeAggregator(engine, root, lookback=lookback)
        # One fold at a time, and no read of the totals in the middle of one.
        self._lock = threading.Lock()

    def refresh(self, session: Session) -> int:
        """Fold in the files written since the last refresh (cost: the new files only)."""
        rules = {e.name: reward_rule(e) for e in session.scalars(select(Experiment))}
        with self._lock:
            return self._aggregator.update(rules)

    @property
    def watermarks(self) -> dict[str, int]:
        with self._lock:
            return self._aggregator.watermarks

    def variants(self, experiment: str, names: Sequence[tuple[str, str]]) -> list[VariantView]:
        """Views of ``names`` ((variant, role) pairs), in that order; empty when unseen."""
        with self._lock:
            return self._aggregator.variants(experiment, names)

    def served_by_version(self, experiment: str) -> dict[int, dict[str, int]]:
        """Arm requests per allocation version and variant (for the sample-ratio test)."""
        with self._lock:
            return self._aggregator.served_by_version(experiment)
