"""The service's view of the lake's sufficient statistics, shared by the reallocator and
the report: the glue between the SQL store's experiments and one
:class:`lake.aggregates.LakeAggregator` per process, advanced under a lock.

The statistics themselves (:class:`lake.variants.VariantView` and the per-version parts
it sums) are the lake's; this module only reads the reward rules from ``Experiment`` rows.

The first refresh starts from the stored checkpoint (:mod:`lake.checkpoints`) when there
is a usable one, so a process that takes the reallocation lease folds only the files
registered after it; the lease holder writes one after each pass that moved the
watermarks (:meth:`LakeStats.checkpoint`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Literal

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from api.store.models import Experiment
from lake.aggregates import LakeAggregator
from lake.checkpoints import CheckpointInfo, resume, save_checkpoint
from lake.rewards import RewardRule
from lake.storage import LakeStorage, open_storage
from lake.variants import VariantView

__all__ = ["CHECKPOINT", "LakeStats", "VariantView", "bandit_kind", "reward_rule"]

log = logging.getLogger(__name__)

# The reallocator's checkpoint (one per store: every replica folds the same lake).
CHECKPOINT = "reallocator"


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

    def __init__(
        self,
        engine: Engine,
        root: LakeStorage | Path | str,
        *,
        lookback: timedelta,
        checkpoint: str | None = CHECKPOINT,
    ) -> None:
        self._engine = engine
        self._root = open_storage(root)
        self._lookback = lookback
        self._aggregator = LakeAggregator(engine, self._root, lookback=lookback)
        # One fold at a time, and no read of the totals in the middle of one.
        self._lock = threading.Lock()
        self._checkpoint = checkpoint
        self._resumed = checkpoint is None
        # The watermarks of the checkpoint last read or written by this process.
        self._saved: dict[str, int] | None = None

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def storage(self) -> LakeStorage:
        return self._root

    def refresh(self, session: Session, *, progress: Callable[[], None] | None = None) -> int:
        """Fold in the files written since the last refresh (cost: the new files only).

        The first refresh starts from the stored checkpoint, if usable. ``progress`` is
        called between the steps of a long refresh (the lease holder renews there).
        """
        experiments = list(session.scalars(select(Experiment)))
        rules = {e.name: reward_rule(e) for e in experiments}
        # Batch-scored rows count only for the experiments that opted in.
        learning = [e.name for e in experiments if e.learn_from_batch]
        with self._lock:
            self._resume(progress)
            return self._aggregator.update(rules, progress=progress, learn_from_batch=learning)

    def _resume(self, progress: Callable[[], None] | None) -> None:
        if self._resumed or self._checkpoint is None:
            return
        if any(self._aggregator.watermarks.values()):
            self._resumed = True  # already folding on its own: nothing to gain
            return
        try:
            aggregator = resume(
                self._engine,
                self._root,
                self._checkpoint,
                lookback=self._lookback,
                progress=progress,
            )
        except SQLAlchemyError:
            log.warning(
                "checkpoint %r unreadable; folding the lake from the start",
                self._checkpoint,
                exc_info=True,
            )
            self._resumed = True
            return
        self._resumed = True
        if any(aggregator.watermarks.values()):
            self._aggregator = aggregator
            self._saved = aggregator.watermarks
            log.info(
                "statistics resumed from checkpoint %r at watermarks %s (%d rows folded)",
                self._checkpoint,
                aggregator.watermarks,
                aggregator.rows,
            )

    def checkpoint(
        self,
        holder: str,
        *,
        fence: Callable[[Connection], bool] | None = None,
        progress: Callable[[], None] | None = None,
    ) -> CheckpointInfo | None:
        """Store the state as the checkpoint when the watermarks moved since the last one.

        The state is copied under the lock and encoded outside it. ``fence`` runs in the
        writing transaction (the lease check); ``None`` when nothing was written.
        """
        if self._checkpoint is None:
            return None
        with self._lock:
            marks = self._aggregator.watermarks
            if marks == self._saved or not any(marks.values()):
                return None
            state = self._aggregator.state()
        info = save_checkpoint(
            self._engine, self._checkpoint, state, holder=holder, fence=fence, progress=progress
        )
        if info is not None:
            self._saved = marks
        return info

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
