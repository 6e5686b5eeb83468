"""Held-out digits replayed as traffic, with labels that arrive late.

A real labelling pipeline is slower than serving: here the true classes of the requests
are held back and released in batches every ``feedback_every`` requests, and the policy
is rerun every ``reallocate_every`` requests on whatever feedback the lake holds by then.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from api.demo._client import ServiceClient
from api.demo._digits import Holdout
from api.demo._progress import ProgressBar

__all__ = ["ReplayPlan", "ReplayTally", "replay"]


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """How many requests, in what batches, with which delays."""

    experiment: str
    rows: int
    batch: int = 10
    feedback_every: int = 100
    reallocate_every: int = 250


@dataclass(slots=True)
class ReplayTally:
    """What the client saw: requests per variant and the reallocations it asked for."""

    served: Counter[str] = field(default_factory=Counter)
    reallocations: int = 0


def replay_order(n_rows: int, total: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Indices of ``total`` requests: a fresh shuffle of the ``n_rows`` rows per pass."""
    passes = -(-total // n_rows)
    order = np.concatenate([rng.permutation(n_rows) for _ in range(passes)])
    return order[:total].astype(np.int64)


class _Replayer:
    def __init__(self, client: ServiceClient, holdout: Holdout, plan: ReplayPlan) -> None:
        self.client = client
        self.holdout = holdout
        self.plan = plan
        self.tally = ReplayTally()
        self.waiting: list[tuple[str, int]] = []
        self.version = 0
        self.leader = ""

    def send(self, indices: npt.NDArray[np.int64]) -> None:
        rows = self.holdout.features[indices].tolist()
        results = self.client.predict_batch(self.plan.experiment, rows)
        for index, result in zip(indices.tolist(), results, strict=True):
            label = int(self.holdout.labels[index])
            self.waiting.append((result.request_id, label))
            self.tally.served[result.variant] += 1
            self.version = result.allocation_version

    def release_labels(self) -> None:
        if self.waiting:
            self.client.send_labels(self.waiting)
            self.waiting = []

    def reallocate(self) -> None:
        self.client.wait_for_lake()
        allocation = self.client.reallocate(self.plan.experiment)
        self.tally.reallocations += 1
        self.version = allocation.version
        name, weight = max(allocation.weights.items(), key=lambda item: item[1])
        self.leader = f"{name} {weight:.2f}"

    def note(self) -> str:
        return f"allocation v{self.version}" + (f", {self.leader}" if self.leader else "")


def replay(
    client: ServiceClient,
    holdout: Holdout,
    plan: ReplayPlan,
    *,
    rng: np.random.Generator,
    progress: ProgressBar,
) -> ReplayTally:
    """Send ``plan.rows`` requests, label them late, reallocate as it goes and at the end."""
    replayer = _Replayer(client, holdout, plan)
    order = replay_order(len(holdout), plan.rows, rng)
    next_labels, next_reallocation = plan.feedback_every, plan.reallocate_every
    for start in range(0, plan.rows, plan.batch):
        replayer.send(order[start : start + plan.batch])
        sent = min(start + plan.batch, plan.rows)
        if sent >= next_labels:
            replayer.release_labels()
            next_labels = sent - sent % plan.feedback_every + plan.feedback_every
        if sent >= next_reallocation and sent < plan.rows:
            replayer.reallocate()
            next_reallocation = sent - sent % plan.reallocate_every + plan.reallocate_every
        progress.update(sent, replayer.note())
    # The labels still held back arrive at last, and the policy sees all of them.
    replayer.release_labels()
    replayer.reallocate()
    progress.update(plan.rows, replayer.note())
    progress.close()
    return replayer.tally
