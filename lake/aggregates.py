"""Incremental sufficient statistics for the bandit, maintained from the files added since
the last watermark, so the cost of an update does not grow with the lake's history.

State kept between updates, all bounded by the feedback lookback rather than history:

- *pending*: successful predictions without feedback yet (the join waits for it);
- *orphans*: feedback whose prediction has not been flushed yet;
- *rewarded*: request ids already counted, so a duplicate never counts twice.

Which files are folded is the manifest's contract (:mod:`lake.manifest`). An aggregator
that has folded nothing yet starts from the lake as it is: the files live at the
manifest's highest id ``M`` (:func:`lake.manifest.files_as_of`, compacted files included,
never a replaced one), folded in order of their rows' earliest time; its watermarks are
then each table's highest id at ``M``. From there each update folds every file registered
since the watermark, whatever its status, except compaction outputs, so each row is
counted once, from the flush file that first held it or from the compacted file that held
it at ``M``.

That start is all or nothing: a file of it missing on disk (or unreadable) raises
:class:`LakeReadError` and leaves the aggregator as it was, watermarks 0, and the next
update starts again. Past the start, a listed file missing on disk stops the update there
with :class:`LakeReadError`: the files before it are folded, the watermark stays before
it, and a later update resumes from it once it is back; but when the missing file is
``replaced`` (a compactor deleted it: the aggregator comes from a checkpoint older than
that, or fell behind for longer than the grace period), its rows are in a live file, so
the aggregator starts again from the lake as it is (a warning says so), and keeps its
state if that fails.

Folding compacted files (sorted by experiment and time, cut anywhere) instead of the flush
files gives the same statistics: files are folded by their earliest row; feedback folded
before its prediction waits as an orphan and is matched with every row of the request
folded with the first one (arm and shadows); and expiry is held back to the earliest row
of the files not folded yet, so nothing that could still match expires early. Limits: of
two feedbacks of one request, the first processed counts, which after compaction means
the first by time (the flush order is lost); a prediction flushed more than a lookback
after its feedback is matched by a start though it was not as it came; and sums may
differ in their last bits, being added in another order.

The whole state (:class:`AggregatorState`: watermarks, totals, and the pending, orphan
and counted requests with their expiry order) is taken with :meth:`LakeAggregator.state`
and restored with :meth:`LakeAggregator.from_state`; :mod:`lake.checkpoints` stores it in
the SQL store, so a new lease holder resumes from the last checkpoint's watermarks
instead of folding the lake's whole history again.

Each fold adds one :class:`lake.variants.VariantVersionStats` per (experiment, variant,
role, allocation version) to the totals with ``+``: its health from a group-by of the
fold's predictions, its rewards and IPW sums from a group-by of the requests the fold
matched with their feedback, scored by :meth:`lake.rewards.RewardRule.expr`.

A request's first feedback counts (first processed; within one file, first by time).
Failed predictions count as served and as errors, never as rewarded. A shadow row is
scored with its request's feedback when it is folded no later than the request is matched
(normally it shares the arm row's flush): with the feedback, or with the first of the
request's rows when its feedback came first.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import polars as pl
import pyarrow as pa
from sqlalchemy import Engine, select

from bandit.ipw import IpwStats
from bandit.stats import ArmStats
from lake.errors import LakeReadError
from lake.health import Health, health_by_key
from lake.manifest import (
    FileEntry,
    files_as_of,
    files_since,
    is_compaction_output,
    lake_files,
    last_file_ids,
)
from lake.modes import counted_online, read_predictions
from lake.rewards import RewardRule
from lake.storage import LakeStorage, open_storage
from lake.variants import ArmKey, VariantVersionStats, VariantView

__all__ = ["AggregatorState", "Entry", "LakeAggregator"]

logger = logging.getLogger(__name__)

# (experiment, variant, role, version, propensity, prediction, ts in µs) of a prediction.
Entry = tuple[str, str, str, int, float, float | None, int]
# Rows folded per step: memory stays bounded by the lookback during a long catch-up.
_CHUNK_ROWS = 1_000_000
_KEY: Final = ("experiment", "variant", "role", "allocation_version")
_ZERO: Final = VariantVersionStats()
# Starts from the lake as it is, in one update, when a file of the start is replaced and
# deleted meanwhile (a newer manifest snapshot holds its replacement instead).
_START_ATTEMPTS: Final = 3
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_COLUMNS: dict[str, list[str]] = {
    "predictions": [
        "request_id", "ts", "experiment", "variant", "role", "allocation_version",
        "propensity", "prediction", "latency_ms", "status", "mode",
    ],
    "feedback": ["request_id", "ts", "reward", "label", "idempotency_key"],
}  # fmt: skip
# A request matched with its feedback: the prediction's entry, then the feedback's
# ts (µs), reward and label.
_MATCHED_SCHEMA: Final = {
    "experiment": pl.String,
    "variant": pl.String,
    "role": pl.String,
    "allocation_version": pl.Int64,
    "propensity": pl.Float64,
    "prediction": pl.Float64,
    "ts": pl.Int64,
    "feedback_ts": pl.Int64,
    "reward": pl.Float64,
    "label": pl.String,
}


@dataclass(frozen=True, slots=True, eq=True)
class AggregatorState:
    """Everything a :class:`LakeAggregator` carries from one update to the next.

    A snapshot: the containers are copies (their entries are immutable), so it stays valid
    while the aggregator goes on. ``*_order`` are the expiry queues, ``(ts in µs, request
    id)`` oldest first, exactly as the aggregator holds them (an id may appear there after
    it left its dictionary: it is then skipped on expiry).

    Attributes
    ----------
    lookback_us
        The feedback lookback the state was built with, in microseconds.
    watermarks
        Highest manifest id folded, per table.
    rows
        Rows folded since the statistics started (all updates together).
    latest
        Latest row time seen, in µs since the epoch (the expiry clock).
    totals
        Statistics per key.
    pending
        Request id -> its successful predictions' entries, waiting for feedback.
    orphans
        Request id -> (ts µs, reward, label) of feedback whose prediction is not folded yet.
    rewarded
        Request id -> feedback ts (µs) of the requests already counted.
    """

    lookback_us: int
    watermarks: dict[str, int]
    rows: int
    latest: int
    totals: dict[ArmKey, VariantVersionStats]
    pending: dict[str, tuple[Entry, ...]]
    pending_order: deque[tuple[int, str]]
    orphans: dict[str, tuple[int, float | None, str | None]]
    orphan_order: deque[tuple[int, str]]
    rewarded: dict[str, int]
    rewarded_order: deque[tuple[int, str]]


class _MissingFileError(LakeReadError):
    """A listed file is not on disk (``entry`` says which)."""

    def __init__(self, message: str, entry: FileEntry) -> None:
        super().__init__(message)
        self.entry = entry


def _epoch_us(value: datetime | None) -> int:
    # An empty file (no time) sorts first.
    if value is None:
        return -(2**62)
    return (value - _EPOCH) // timedelta(microseconds=1)


def _start_order(entries: list[FileEntry]) -> list[FileEntry]:
    """The files of a start in the order they are folded: by their earliest row, as the
    flush files came in (a compacted file spans a date at most)."""
    return sorted(entries, key=lambda e: (_epoch_us(e.min_ts), int(e.id or 0)))


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
        The lake root: a :class:`lake.storage.LakeStorage`, a directory or an
        ``s3://bucket/prefix`` URI.
    lookback
        How long after a prediction its feedback still counts (and how long pending
        predictions, orphan feedback and counted ids are remembered).
    """

    def __init__(
        self, engine: Engine, root: LakeStorage | Path | str, *, lookback: timedelta
    ) -> None:
        self._engine = engine
        self._storage = open_storage(root)
        self._lookback_us = lookback // timedelta(microseconds=1)
        self._watermark = {"predictions": 0, "feedback": 0}
        self._totals: dict[ArmKey, VariantVersionStats] = {}
        # Requests matched with their feedback in the current fold, scored at its end.
        self._matched: list[tuple[Any, ...]] = []
        # Tuples of plain values, never lists: the garbage collector stops tracking them,
        # so a day of pending requests is not traversed on every collection (that
        # traversal cost more than the fold itself).
        self._pending: dict[str, tuple[Entry, ...]] = {}
        self._pending_order: deque[tuple[int, str]] = deque()
        self._orphans: dict[str, tuple[int, float | None, str | None]] = {}
        self._orphan_order: deque[tuple[int, str]] = deque()
        self._rewarded: dict[str, int] = {}
        self._rewarded_order: deque[tuple[int, str]] = deque()
        self._latest = 0
        self._rows = 0
        # While starting from the lake as it is: the manifest id it is taken at.
        self._start_at: int | None = None
        # Experiments whose batch-scored rows count (the update's ``learn_from_batch``).
        self._learn_from_batch: frozenset[str] = frozenset()

    def state(self) -> AggregatorState:
        """A snapshot of the whole state (copies of the containers: O(state), no row I/O)."""
        return AggregatorState(
            lookback_us=self._lookback_us,
            watermarks=dict(self._watermark),
            rows=self._rows,
            latest=self._latest,
            totals=dict(self._totals),
            pending=dict(self._pending),
            pending_order=deque(self._pending_order),
            orphans=dict(self._orphans),
            orphan_order=deque(self._orphan_order),
            rewarded=dict(self._rewarded),
            rewarded_order=deque(self._rewarded_order),
        )

    @classmethod
    def from_state(
        cls, engine: Engine, root: LakeStorage | Path | str, state: AggregatorState
    ) -> LakeAggregator:
        """An aggregator that goes on from ``state`` (its lookback is the state's); its next
        :meth:`update` folds the files registered after the state's watermarks."""
        aggregator = cls(engine, root, lookback=timedelta(microseconds=state.lookback_us))
        aggregator._watermark = {"predictions": 0, "feedback": 0, **state.watermarks}
        aggregator._rows = state.rows
        aggregator._latest = state.latest
        aggregator._totals = dict(state.totals)
        aggregator._pending = dict(state.pending)
        aggregator._pending_order = deque(state.pending_order)
        aggregator._orphans = dict(state.orphans)
        aggregator._orphan_order = deque(state.orphan_order)
        aggregator._rewarded = dict(state.rewarded)
        aggregator._rewarded_order = deque(state.rewarded_order)
        return aggregator

    @property
    def lookback(self) -> timedelta:
        return timedelta(microseconds=self._lookback_us)

    @property
    def rows(self) -> int:
        """Rows folded since the statistics started (a restored state's included)."""
        return self._rows

    @property
    def watermarks(self) -> dict[str, int]:
        return dict(self._watermark)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def totals(self, experiment: str) -> dict[ArmKey, VariantVersionStats]:
        """The experiment's statistics per key (immutable, safe to keep while updates go on)."""
        return {k: v for k, v in self._totals.items() if k.experiment == experiment}

    def variants(self, experiment: str, names: Sequence[tuple[str, str]]) -> list[VariantView]:
        """Views of ``names`` ((variant, role) pairs), in that order; empty when unseen."""
        totals = self.totals(experiment)
        return [
            VariantView.of(
                name,
                role,
                {k.version: t for k, t in totals.items() if k.variant == name and k.role == role},
            )
            for name, role in names
        ]

    def served_by_version(self, experiment: str) -> dict[int, dict[str, int]]:
        """Arm requests per allocation version and variant (for the sample-ratio test)."""
        out: dict[int, dict[str, int]] = {}
        for key, t in self.totals(experiment).items():
            if key.role == "arm":
                out.setdefault(key.version, {})[key.variant] = t.health.served
        return out

    def update(
        self,
        rules: Mapping[str, RewardRule],
        *,
        progress: Callable[[], None] | None = None,
        learn_from_batch: Collection[str] = (),
    ) -> int:
        """Fold in every file registered since the last update; return the rows read.

        Batch-scored rows (``mode = "batch"``) are read but left out of the statistics,
        except those of the experiments named in ``learn_from_batch`` (their opt-in as it
        is at this update: rows already folded are not revisited).

        An aggregator that has folded nothing yet (watermarks 0) starts from the lake as it
        is, all at once (see the module docstring). Otherwise files are folded in manifest
        order, a chunk at a time; each table's watermark advances after every chunk, so an
        interrupted catch-up resumes where it stopped. ``progress`` is called after each
        chunk (a lease holder renews its lease there); an exception it raises stops the
        update between chunks, the state consistent (a start is then dropped whole).

        Raises
        ------
        LakeReadError
            When a file to fold is missing on disk or unreadable. The files before it
            are folded and the watermark stops before it; nothing of it is counted. A
            start from the lake as it is folds nothing then. A missing ``replaced`` file
            does not raise: the aggregator starts again from the lake as it is instead.
        """
        self._learn_from_batch = frozenset(learn_from_batch)
        if not any(self._watermark.values()):
            return self._restart(rules, progress)
        try:
            return self._advance(rules, progress)
        except _MissingFileError as exc:
            if not self._is_replaced(exc.entry):
                raise
            logger.warning(
                "The replaced %s file %r (manifest id %d) is gone from %r, so the statistics "
                "at watermarks %s cannot go on; they are rebuilt from the lake as it is.",
                exc.entry.table,
                exc.entry.path,
                exc.entry.id,
                self._storage.uri,
                self._watermark,
            )
            return self._restart(rules, progress)

    # -- internals ------------------------------------------------------------------

    def _advance(self, rules: Mapping[str, RewardRule], progress: Callable[[], None] | None) -> int:
        """Fold the files registered after the watermarks (compaction outputs skipped)."""
        new = files_since(self._engine, "predictions", self._watermark["predictions"])
        new += files_since(self._engine, "feedback", self._watermark["feedback"])
        new.sort(key=lambda e: int(e.id or 0))
        # A local lake is checked up front (cheap); on object storage a HEAD per file
        # would double the requests, so a missing object is found by the read itself.
        missing = None
        if self._storage.is_local:
            missing = next(
                (
                    i
                    for i, e in enumerate(new)
                    if self._reads(e) and not self._storage.exists(e.path)
                ),
                None,
            )
        if missing is not None:
            gone = new[missing]
            if self._is_replaced(gone):
                # Its rows are elsewhere: the caller starts again, nothing here is folded.
                raise _MissingFileError(self._missing_message(gone), gone)
            # Fold up to the gap, never past it: rows not read must not be skipped for good.
            new = new[:missing]
        rows = 0
        chunk: list[FileEntry] = []
        size = 0
        for entry in new:
            chunk.append(entry)
            size += entry.rows
            if size >= _CHUNK_ROWS:
                rows += self._fold(chunk, rules)
                chunk, size = [], 0
                if progress is not None:
                    progress()
        if chunk:
            rows += self._fold(chunk, rules)
        if missing is not None:
            raise _MissingFileError(self._missing_message(gone), gone)
        return rows

    def _restart(self, rules: Mapping[str, RewardRule], progress: Callable[[], None] | None) -> int:
        """Start from the lake as it is, in a new aggregator taken over once it succeeded.

        A file of the start that is replaced and deleted meanwhile (a compactor with a short
        grace period) makes it start again at a newer manifest id; any other missing or
        unreadable file raises, and this aggregator is left as it was.
        """
        for attempt in range(1, _START_ATTEMPTS + 1):
            fresh = LakeAggregator(self._engine, self._storage, lookback=self.lookback)
            fresh._learn_from_batch = self._learn_from_batch
            try:
                rows = fresh._start(rules, progress)
            except _MissingFileError as exc:
                if attempt == _START_ATTEMPTS or not self._is_replaced(exc.entry):
                    raise
                continue
            self._take(fresh)
            return rows
        raise AssertionError("unreachable")  # pragma: no cover

    def _start(self, rules: Mapping[str, RewardRule], progress: Callable[[], None] | None) -> int:
        """Fold the files live at the manifest's highest id, compacted ones included.

        In :func:`_start_order`, expiry held back to the earliest row of the files still to
        fold: a request waiting for feedback (or feedback waiting for its request) within
        the lookback stays until it is matched, as in a fold of the flush files as they
        came. The watermarks are set at the end.
        """
        marks = {t: m for t, m in last_file_ids(self._engine).items() if t in _COLUMNS}
        top = max(marks.values(), default=0)
        if top == 0:
            return 0
        self._start_at = top
        entries = [e for table in _COLUMNS for e in files_as_of(self._engine, table, top)]
        entries = _start_order(entries)
        # Expiry never passes the earliest row still to fold: what it could match stays.
        horizons = [_epoch_us(e.min_ts) for e in entries]
        if self._storage.is_local:
            for entry in entries:
                if not self._storage.exists(entry.path):
                    raise _MissingFileError(self._missing_message(entry), entry)
        rows = 0
        chunk: list[FileEntry] = []
        size = 0
        for i, entry in enumerate(entries):
            chunk.append(entry)
            size += entry.rows
            last = i + 1 == len(entries)
            if size >= _CHUNK_ROWS or last:
                horizon = None if last else horizons[i + 1]
                rows += self._fold(chunk, rules, outputs=True, horizon=horizon)
                chunk, size = [], 0
                if progress is not None and not last:
                    progress()
        for table in _COLUMNS:
            folded = [int(e.id or 0) for e in entries if e.table == table]
            self._watermark[table] = max([marks.get(table, 0), *folded])
        self._start_at = None
        return rows

    def _take(self, other: LakeAggregator) -> None:
        """Take over the state of ``other`` (same store, storage and lookback)."""
        self._watermark = other._watermark
        self._totals = other._totals
        self._matched = other._matched
        self._pending = other._pending
        self._pending_order = other._pending_order
        self._orphans = other._orphans
        self._orphan_order = other._orphan_order
        self._rewarded = other._rewarded
        self._rewarded_order = other._rewarded_order
        self._latest = other._latest
        self._rows = other._rows

    def _is_replaced(self, entry: FileEntry) -> bool:
        """Whether the manifest says ``entry`` is replaced now (its rows live elsewhere)."""
        query = select(lake_files.c.status).where(lake_files.c.id == entry.id)
        with self._engine.connect() as conn:
            status = conn.execute(query).scalar_one_or_none()
        return status == "replaced"

    @staticmethod
    def _reads(entry: FileEntry) -> bool:
        # Replaced files are read too; compaction outputs repeat rows of earlier files.
        return entry.table in _COLUMNS and not is_compaction_output(entry)

    def _stop_note(self, entry: FileEntry) -> str:
        if self._start_at is not None:
            return (
                f"nothing of the lake as of manifest id {self._start_at} is counted: the "
                "statistics are left as they were"
            )
        return f"the statistics stop before it, at watermark {self._watermark[entry.table]}"

    def _missing_message(self, entry: FileEntry) -> str:
        return (
            f"The {entry.table} file {entry.path!r} (manifest id {entry.id}) is listed in the "
            f"manifest but missing under {self._storage.uri!r}; {self._stop_note(entry)}."
        )

    def _fold(
        self,
        chunk: list[FileEntry],
        rules: Mapping[str, RewardRule],
        *,
        outputs: bool = False,
        horizon: int | None = None,
    ) -> int:
        """Fold ``chunk``: compaction outputs too when ``outputs``; expiry held back to
        ``horizon`` (µs) when given."""
        # Every file is read before any is counted, so a file that vanishes or is corrupt
        # leaves the statistics and the watermarks as they were.
        frames: dict[str, pl.DataFrame | None] = {}
        for table, columns in _COLUMNS.items():
            entries = [
                e for e in chunk if e.table == table and (outputs or not is_compaction_output(e))
            ]
            frames[table] = self._read(entries, columns) if entries else None
        # Rows left out (batch rows not opted in) are read, so they count in ``rows``.
        skipped = 0
        if (read := frames["predictions"]) is not None:
            counted = counted_online(read, self._learn_from_batch)
            skipped = read.height - counted.height
            frames["predictions"] = counted
        health = self._health(frames["predictions"])
        rows = skipped + self._fold_predictions(frames["predictions"])
        rows += self._fold_feedback(frames["feedback"])
        rewards = self._score(rules)
        for key in health.keys() | rewards.keys():
            part = rewards.get(key, _ZERO) + VariantVersionStats(health=health.get(key, Health()))
            self._totals[key] = self._totals.get(key, _ZERO) + part
        for entry in chunk:
            table = entry.table
            self._watermark[table] = max(self._watermark[table], int(entry.id or 0))
        self._expire(horizon)
        self._rows += rows
        return rows

    def _read(self, entries: list[FileEntry], columns: list[str]) -> pl.DataFrame:
        # Small new files: pyarrow reads them in well under a millisecond each, where a
        # SQL engine would spend longer planning the query than reading.
        tables = []
        for entry in entries:
            try:
                if entry.table == "predictions":
                    tables.append(read_predictions(self._storage, entry.path, columns))
                else:
                    tables.append(self._storage.read_table(entry.path, columns=columns))
            except FileNotFoundError as exc:
                raise _MissingFileError(self._missing_message(entry), entry) from exc
            except (OSError, pa.ArrowException) as exc:
                msg = (
                    f"The {entry.table} file {entry.path!r} (manifest id {entry.id}) cannot be "
                    f"read ({exc}); {self._stop_note(entry)}."
                )
                raise LakeReadError(msg) from exc
        return pl.from_arrow(pa.concat_tables(tables))  # type: ignore[return-value]

    @staticmethod
    def _health(frame: pl.DataFrame | None) -> dict[ArmKey, Health]:
        if frame is None:
            return {}
        found = health_by_key(frame, _KEY)
        return {ArmKey(e, v, r, int(n)): h for (e, v, r, n), h in found.items()}

    def _fold_predictions(self, frame: pl.DataFrame | None) -> int:
        # The join with pending, orphan and counted request ids stays a loop over the new
        # rows against dictionaries: its cost is the new rows'. A polars join against the
        # lookback's state (a day of requests) costs that state's size on every refresh.
        if frame is None:
            return 0
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
        # Requests whose feedback came first: matched once all the fold's rows are pending,
        # so an arm row and its shadows are scored together, whichever sorts first.
        waiting: list[str] = []
        for rid, experiment, variant, role, version, propensity, prediction, ts in _rows(ok):
            if ts > self._latest:
                self._latest = ts
            if rid in rewarded:
                continue
            entry: Entry = (experiment, variant, role, version, propensity, prediction, ts)
            found = pending.get(rid)
            if found is None:
                pending[rid] = (entry,)
                self._pending_order.append((ts, rid))
                if rid in orphans:
                    waiting.append(rid)
            else:
                pending[rid] = (*found, entry)
        for rid in waiting:
            fts, reward, label = orphans.pop(rid)
            self._match(rid, fts, reward, label)
        return frame.height

    def _fold_feedback(self, frame: pl.DataFrame | None) -> int:
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
                self._match(rid, ts, reward, label)
            else:
                self._orphans[rid] = (ts, reward, label)
                self._orphan_order.append((ts, rid))
        return frame.height

    def _match(self, rid: str, ts: int, reward: float | None, label: str | None) -> None:
        for entry in self._pending.pop(rid, ()):
            self._matched.append((*entry, ts, reward, label))
        self._rewarded[rid] = ts
        self._rewarded_order.append((ts, rid))

    def _score(self, rules: Mapping[str, RewardRule]) -> dict[ArmKey, VariantVersionStats]:
        """The fold's matched requests scored by their experiment's rule, summed per key.

        Feedback after the lookback, an experiment without a rule and a reward that cannot
        be scored (or is not finite) count nothing; the request is still counted as
        rewarded, so a later duplicate does not count either.
        """
        matched = pl.DataFrame(self._matched, schema=_MATCHED_SCHEMA, orient="row")
        self._matched = []
        experiments = [e for e in matched["experiment"].unique().to_list() if e in rules]
        if not experiments:
            return {}
        reward: pl.Expr = pl.lit(None, dtype=pl.Float64)
        for experiment in experiments:
            rule_reward = rules[experiment].expr()
            reward = pl.when(pl.col("experiment") == experiment).then(rule_reward).otherwise(reward)
        r = pl.col("r")
        w = pl.when(pl.col("propensity") > 0).then(1.0 / pl.col("propensity"))
        sums = (
            matched.filter(pl.col("ts") + self._lookback_us >= pl.col("feedback_ts"))
            .with_columns(reward.alias("r"))
            .filter(r.is_not_null())
            .group_by(*_KEY)
            .agg(
                pl.len().alias("n"),
                r.sum().alias("sum"),
                (r * r).sum().alias("sum_sq"),
                w.count().alias("n_w"),
                w.sum().alias("sum_w"),
                (w * r).sum().alias("sum_wr"),
                (w * w).sum().alias("sum_w2"),
                (w * w * r).sum().alias("sum_w2r"),
                ((w * r) ** 2).sum().alias("sum_w2r2"),
                w.max().fill_null(0.0).alias("max_w"),
            )
        )
        out = {}
        for e, v, role, version, n, total, sq, n_w, *ipw in _rows(sums):
            out[ArmKey(e, v, role, int(version))] = VariantVersionStats(
                ArmStats(n=n, sum=total, sum_sq=sq), IpwStats(n_w, n_w, *ipw)
            )
        return out

    def _expire(self, horizon: int | None = None) -> None:
        # ``horizon``: the earliest row still to fold; nothing it could match expires.
        latest = self._latest if horizon is None else min(self._latest, horizon)
        cutoff = latest - self._lookback_us
        for order, store in (
            (self._pending_order, self._pending),
            (self._orphan_order, self._orphans),
            (self._rewarded_order, self._rewarded),
        ):
            while order and order[0][0] < cutoff:
                _, rid = order.popleft()
                store.pop(rid, None)
