"""Incremental sufficient statistics for the bandit, maintained from the files added since
the last watermark, so the cost of an update does not grow with the lake's history.

State kept between updates, all bounded by the feedback lookback rather than history:

- *pending*: successful predictions without feedback yet (the join waits for it);
- *orphans*: feedback whose prediction has not been flushed yet;
- *rewarded*: request ids already counted, so a duplicate never counts twice.

Which files are folded is the manifest's contract (:mod:`lake.manifest`): every file
registered since the watermark, whatever its status, except compaction outputs, so each
row is counted once from the flush file that first held it, before or after compaction.
A listed file missing on disk stops the update there with :class:`LakeReadError`: the
files before it are folded, the watermark stays before it, and a later update resumes
from it once it is back (or after the statistics are rebuilt).

A request's first feedback counts (first processed; within one file, first by time).
Failed predictions count as served and as errors, never as rewarded. A shadow row is
scored with its request's feedback when it is flushed no later than that feedback is
processed (normally it shares the arm row's flush).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray
from sqlalchemy import Engine

from bandit.ipw import IpwStats
from bandit.stats import ArmStats
from lake.errors import LakeReadError
from lake.manifest import FileEntry, files_since, is_compaction_output
from lake.rewards import RewardRule, reward_of

__all__ = [
    "LATENCY_EDGES_MS",
    "ArmKey",
    "LakeAggregator",
    "Totals",
    "latency_quantile",
]

# Log-spaced latency buckets, 10 µs to about 70 s, 10% apart: quantiles within 10%.
_LATENCY_BASE_MS = 0.01
_LATENCY_RATIO = 1.1
_LATENCY_BUCKETS = 166
LATENCY_EDGES_MS: NDArray[np.float64] = np.asarray(
    _LATENCY_BASE_MS * _LATENCY_RATIO ** np.arange(1, _LATENCY_BUCKETS + 1), dtype=np.float64
)


@dataclass(frozen=True, slots=True)
class ArmKey:
    experiment: str
    variant: str
    role: str
    version: int


@dataclass(slots=True)
class Totals:
    """Everything counted for one (experiment, variant, role, allocation version)."""

    served: int = 0
    errors: int = 0
    latency: NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(_LATENCY_BUCKETS, dtype=np.int64)
    )
    n: int = 0
    sum: float = 0.0
    sum_sq: float = 0.0
    sum_w: float = 0.0
    sum_wr: float = 0.0
    sum_w2: float = 0.0
    sum_w2r: float = 0.0
    sum_w2r2: float = 0.0
    max_w: float = 0.0

    def add_reward(self, reward: float, propensity: float) -> None:
        self.n += 1
        self.sum += reward
        self.sum_sq += reward * reward
        if propensity > 0:
            w = 1.0 / propensity
            self.sum_w += w
            self.sum_wr += w * reward
            self.sum_w2 += w * w
            self.sum_w2r += w * w * reward
            self.sum_w2r2 += (w * reward) ** 2
            self.max_w = max(self.max_w, w)

    def rewards(self) -> ArmStats:
        return ArmStats(n=self.n, sum=self.sum, sum_sq=self.sum_sq)

    def ipw(self, n_total: int) -> IpwStats:
        return IpwStats(
            n_total=n_total,
            n=self.n,
            sum_w=self.sum_w,
            sum_wr=self.sum_wr,
            sum_w2=self.sum_w2,
            sum_w2r=self.sum_w2r,
            sum_w2r2=self.sum_w2r2,
            max_w=self.max_w,
        )


def latency_quantile(histogram: NDArray[np.int64], q: float) -> float | None:
    """The ``q`` quantile in milliseconds (the upper edge of its bucket), or ``None``."""
    total = int(histogram.sum())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    index = int(np.searchsorted(np.cumsum(histogram), rank))
    return float(LATENCY_EDGES_MS[min(index, _LATENCY_BUCKETS - 1)])


# (experiment, variant, role, version, propensity, prediction, ts in µs) of a prediction.
_Entry = tuple[str, str, str, int, float, float | None, int]
# Rows folded per step: memory stays bounded by the lookback during a long catch-up.
_CHUNK_ROWS = 1_000_000

_COLUMNS: dict[str, list[str]] = {
    "predictions": [
        "request_id", "ts", "experiment", "variant", "role", "allocation_version",
        "propensity", "prediction", "latency_ms", "status",
    ],
    "feedback": ["request_id", "ts", "reward", "label", "idempotency_key"],
}  # fmt: skip


def _rows(frame: pl.DataFrame) -> Iterator[tuple[Any, ...]]:
    # Column lists zipped: several times faster than DataFrame.iter_rows.
    return zip(*(frame.get_column(name).to_list() for name in frame.columns), strict=True)


class LakeAggregator:
    """Sufficient statistics per :class:`ArmKey`, advanced file by file.

    Parameters
    ----------
    engine
        The SQL store with the lake's manifest.
    root
        Lake root directory.
    lookback
        How long after a prediction its feedback still counts (and how long pending
        predictions, orphan feedback and counted ids are remembered).
    """

    def __init__(self, engine: Engine, root: Path | str, *, lookback: timedelta) -> None:
        self._engine = engine
        self._root = Path(root)
        self._lookback_us = lookback // timedelta(microseconds=1)
        self._watermark = {"predictions": 0, "feedback": 0}
        self._totals: dict[ArmKey, Totals] = {}
        self._by_tuple: dict[tuple[str, str, str, int], Totals] = {}
        self._pending: dict[str, list[_Entry]] = {}
        self._pending_order: deque[tuple[int, str]] = deque()
        self._orphans: dict[str, tuple[int, float | None, str | None]] = {}
        self._orphan_order: deque[tuple[int, str]] = deque()
        self._rewarded: dict[str, int] = {}
        self._rewarded_order: deque[tuple[int, str]] = deque()
        self._latest = 0

    @property
    def watermarks(self) -> dict[str, int]:
        return dict(self._watermark)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def totals(self, experiment: str) -> dict[ArmKey, Totals]:
        """Copies of the experiment's totals, safe to keep while updates go on."""
        return {
            k: replace(v, latency=v.latency.copy())
            for k, v in self._totals.items()
            if k.experiment == experiment
        }

    def update(self, rules: Mapping[str, RewardRule]) -> int:
        """Fold in every file registered since the last update; return the rows read.

        Files are folded in manifest order, a chunk at a time; each table's watermark
        advances after every chunk, so an interrupted catch-up resumes where it stopped.

        Raises
        ------
        LakeReadError
            When a file to fold is missing on disk or unreadable. The files before it
            are folded and the watermark stops before it; nothing of it is counted.
        """
        new = files_since(self._engine, "predictions", self._watermark["predictions"])
        new += files_since(self._engine, "feedback", self._watermark["feedback"])
        new.sort(key=lambda e: int(e.id or 0))
        missing = next(
            (i for i, e in enumerate(new) if self._reads(e) and not (self._root / e.path).exists()),
            None,
        )
        if missing is not None:
            # Fold up to the gap, never past it: rows not read must not be skipped for good.
            new, gone = new[:missing], new[missing]
        rows = 0
        chunk: list[FileEntry] = []
        size = 0
        for entry in new:
            chunk.append(entry)
            size += entry.rows
            if size >= _CHUNK_ROWS:
                rows += self._fold(chunk, rules)
                chunk, size = [], 0
        if chunk:
            rows += self._fold(chunk, rules)
        if missing is not None:
            raise LakeReadError(self._missing_message(gone))
        return rows

    # -- internals ------------------------------------------------------------------

    @staticmethod
    def _reads(entry: FileEntry) -> bool:
        # Replaced files are read too; compaction outputs repeat rows of earlier files.
        return entry.table in _COLUMNS and not is_compaction_output(entry)

    def _missing_message(self, entry: FileEntry) -> str:
        return (
            f"The {entry.table} file {entry.path!r} (manifest id {entry.id}) is listed in the "
            f"manifest but missing under {str(self._root)!r}; the statistics stop before it, "
            f"at watermark {self._watermark[entry.table]}."
        )

    def _fold(self, chunk: list[FileEntry], rules: Mapping[str, RewardRule]) -> int:
        # Every file is read before any is counted, so a file that vanishes or is corrupt
        # leaves the statistics and the watermarks as they were.
        frames: dict[str, pl.DataFrame | None] = {}
        for table, columns in _COLUMNS.items():
            entries = [e for e in chunk if e.table == table and self._reads(e)]
            frames[table] = self._read(entries, columns) if entries else None
        rows = self._fold_predictions(frames["predictions"], rules)
        rows += self._fold_feedback(frames["feedback"], rules)
        for entry in chunk:
            table = entry.table
            self._watermark[table] = max(self._watermark[table], int(entry.id or 0))
        self._expire()
        return rows

    def _read(self, entries: list[FileEntry], columns: list[str]) -> pl.DataFrame:
        # Small new files: pyarrow reads them in well under a millisecond each, where a
        # SQL engine would spend longer planning the query than reading.
        tables = []
        for entry in entries:
            try:
                tables.append(pq.read_table(self._root / entry.path, columns=columns))
            except FileNotFoundError as exc:
                raise LakeReadError(self._missing_message(entry)) from exc
            except (OSError, pa.ArrowException) as exc:
                msg = (
                    f"The {entry.table} file {entry.path!r} (manifest id {entry.id}) cannot be "
                    f"read ({exc}); the statistics stop before it, at watermark "
                    f"{self._watermark[entry.table]}."
                )
                raise LakeReadError(msg) from exc
        return pl.from_arrow(pa.concat_tables(tables))  # type: ignore[return-value]

    def _total(self, key: ArmKey) -> Totals:
        found = self._totals.get(key)
        if found is None:
            found = self._totals[key] = Totals()
        return found

    def _total_of(self, experiment: str, variant: str, role: str, version: int) -> Totals:
        # Hot in the join loop: a plain-tuple cache in front of the ArmKey dictionary.
        key = (experiment, variant, role, version)
        found = self._by_tuple.get(key)
        if found is None:
            found = self._by_tuple[key] = self._total(ArmKey(*key))
        return found

    def _fold_predictions(self, frame: pl.DataFrame | None, rules: Mapping[str, RewardRule]) -> int:
        if frame is None:
            return 0
        bucket = (
            (
                (pl.col("latency_ms").clip(lower_bound=1e-9) / _LATENCY_BASE_MS).log()
                / math.log(_LATENCY_RATIO)
            )
            .ceil()
            .sub(1)
            .clip(0, _LATENCY_BUCKETS - 1)
            .cast(pl.Int64)
            .alias("bucket")
        )
        grouped = (
            frame.with_columns(bucket)
            .group_by("experiment", "variant", "role", "allocation_version", "bucket")
            .agg(pl.len().alias("served"), (pl.col("status") == "error").sum().alias("errors"))
        )
        for experiment, variant, role, version, b, served, errors in _rows(grouped):
            totals = self._total(ArmKey(experiment, variant, role, int(version)))
            totals.served += int(served)
            totals.errors += int(errors)
            totals.latency[int(b)] += int(served)
        ok = (
            frame.filter(pl.col("status") == "ok")
            .sort("ts")
            .select(
                "request_id",
                "experiment",
                "variant",
                "role",
                "allocation_version",
                "propensity",
                "prediction",
                pl.col("ts").dt.epoch("us"),
            )
        )
        rewarded, pending, orphans = self._rewarded, self._pending, self._orphans
        for rid, experiment, variant, role, version, propensity, prediction, ts in _rows(ok):
            if ts > self._latest:
                self._latest = ts
            if rid in rewarded:
                continue
            entry: _Entry = (experiment, variant, role, version, propensity, prediction, ts)
            found = pending.get(rid)
            if found is None:
                pending[rid] = [entry]
                self._pending_order.append((ts, rid))
            else:
                found.append(entry)
            if rid in orphans:
                fts, reward, label = orphans.pop(rid)
                self._match(rid, fts, reward, label, rules)
        return frame.height

    def _fold_feedback(self, frame: pl.DataFrame | None, rules: Mapping[str, RewardRule]) -> int:
        if frame is None:
            return 0
        frame = frame.sort("ts", "idempotency_key").select(
            "request_id", pl.col("ts").dt.epoch("us"), "reward", "label"
        )
        for rid, ts, reward, label in _rows(frame):
            if ts > self._latest:
                self._latest = ts
            if rid in self._rewarded or rid in self._orphans:
                continue
            if rid in self._pending:
                self._match(rid, ts, reward, label, rules)
            else:
                self._orphans[rid] = (ts, reward, label)
                self._orphan_order.append((ts, rid))
        return frame.height

    def _match(
        self,
        rid: str,
        ts: int,
        reward: float | None,
        label: str | None,
        rules: Mapping[str, RewardRule],
    ) -> None:
        for entry in self._pending.pop(rid, []):
            experiment, variant, role, version, propensity, prediction, pts = entry
            if pts + self._lookback_us < ts:
                continue  # feedback after the lookback does not count
            rule = rules.get(experiment)
            if rule is None:
                continue
            value = reward_of(rule, reward=reward, label=label, prediction=prediction)
            if value is None or not math.isfinite(value):
                continue
            self._total_of(experiment, variant, role, version).add_reward(value, propensity)
        self._rewarded[rid] = ts
        self._rewarded_order.append((ts, rid))

    def _expire(self) -> None:
        cutoff = self._latest - self._lookback_us
        for order, store in (
            (self._pending_order, self._pending),
            (self._orphan_order, self._orphans),
            (self._rewarded_order, self._rewarded),
        ):
            while order and order[0][0] < cutoff:
                _, rid = order.popleft()
                store.pop(rid, None)
