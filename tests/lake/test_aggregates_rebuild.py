"""Statistics rebuilt after compaction deleted the replaced flush files.

A consumer that starts from nothing (a replica without a checkpoint, a notebook, a
corrupt checkpoint) or from a checkpoint older than the deletions folds the lake as it is
(the files live at one manifest id, compacted ones included) and must get exactly the
statistics of a consumer that read the original flush files as they came: feedback in a
later file than its prediction, before its prediction's file, twice, for no prediction
and after the lookback included. Rewards are halves and the propensity 1/4, so every sum
is exact and the totals are compared with ``==``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine, select

import lake.aggregates
from lake.aggregates import LakeAggregator
from lake.checkpoints import resume, save_checkpoint
from lake.compaction import compact
from lake.errors import LakeReadError
from lake.manifest import (
    COMPACTION_WRITER_ID,
    files_as_of,
    files_since,
    lake_files,
    last_file_ids,
    live_files,
)
from lake.rewards import RewardRule
from lake.storage import LakeStorage
from lake.writer import LakeWriter
from tests.lake.compaction_support import engine_fixture, storage_fixture  # noqa: F401
from tests.lake.lake_support import feedback, prediction
from tests.s3_server import s3_server  # noqa: F401

RULES = {"exp": RewardRule("continuous")}
LOOKBACK = timedelta(minutes=30)
NAME = "reallocator"
# 23:00 UTC: the traffic runs past midnight, so compaction writes a file per date.
START = datetime(2025, 3, 1, 23, 0, tzinfo=UTC)
FLUSH_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class _Row:
    at: datetime  # when its writer flushes it
    table: str
    row: object


def _traffic(rng: np.random.Generator, first: int, count: int, base: datetime) -> list[_Row]:
    """Requests every 20 s from ``base`` with every kind of feedback the lake sees."""
    rows: list[_Row] = []
    for i in range(first, first + count):
        rid = f"r{i}"
        ts = base + timedelta(seconds=20 * (i - first))
        status = "error" if rng.random() < 0.05 else "ok"
        # A prediction flushed late (its feedback's file comes first: an orphan) or on time.
        late = timedelta(minutes=6) if rng.random() < 0.1 else timedelta(0)
        variant = "ab"[int(rng.random() < 0.5)]
        rows.append(
            _Row(ts + late, "predictions", prediction(rid, ts=ts, variant=variant, status=status))
        )
        if rng.random() < 0.2:  # a shadow, flushed with its arm row
            shadow = prediction(rid, ts=ts, variant="s", role="shadow", prediction=None)
            rows.append(_Row(ts + late, "predictions", shadow))
        kind = rng.random()
        if kind < 0.75:
            # Within a minute (same file), 10 to 25 min (a later file), 45 min (past the
            # lookback: never counted), or 1 min before the prediction (clock skew).
            delay = timedelta(minutes=float(rng.choice([0.5, 10, 18, 25, 45, -1])))
            reward = float(rng.integers(-4, 9)) / 2
            rows.append(_Row(ts + delay, "feedback", feedback(rid, ts=ts + delay, reward=reward)))
            if rng.random() < 0.15:  # delivered again later, with another reward
                again = ts + delay + timedelta(minutes=float(rng.choice([1, 8])))
                rows.append(_Row(again, "feedback", feedback(rid, ts=again, reward=100.0)))
        if rng.random() < 0.03:  # feedback for a request the lake never sees
            rows.append(_Row(ts, "feedback", feedback(f"ghost{i}", ts=ts, reward=7.0)))
    return rows


class _Lake:
    """Real writers; :meth:`play` flushes the rows in batches of ``FLUSH_EVERY`` and lets
    ``after_flush`` (the consumers) update after each batch."""

    def __init__(self, engine: Engine, storage: LakeStorage) -> None:
        kwargs = {"flush_rows": 100_000, "flush_interval_s": 3600.0}
        self.preds = LakeWriter(storage, engine, table="predictions", **kwargs)  # type: ignore[arg-type]
        self.fbs = LakeWriter(storage, engine, table="feedback", **kwargs)  # type: ignore[arg-type]

    def play(
        self, rows: list[_Row], rng: np.random.Generator, after_flush: list[LakeAggregator]
    ) -> None:
        rows = sorted(rows, key=lambda r: r.at)
        batch_end = rows[0].at + FLUSH_EVERY
        for row in [*rows, None]:
            if row is None or row.at >= batch_end:
                # Either table first: feedback lands before, with or after its prediction.
                for writer in (
                    (self.fbs, self.preds) if rng.random() < 0.5 else (self.preds, self.fbs)
                ):
                    writer.flush()
                for aggregator in after_flush:
                    aggregator.update(RULES)
                if row is None:
                    return
                while row.at >= batch_end:
                    batch_end += FLUSH_EVERY
            writer = self.preds if row.table == "predictions" else self.fbs
            writer.append(row.row)  # type: ignore[arg-type]

    def close(self) -> None:
        self.preds.close()
        self.fbs.close()


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Many folds per update, so expiry runs between them as in a large lake.
    monkeypatch.setattr(lake.aggregates, "_CHUNK_ROWS", 60)


@pytest.fixture
def lake_(engine: Engine, storage: LakeStorage) -> Iterator[_Lake]:
    lk = _Lake(engine, storage)
    yield lk
    lk.close()


def _same(one: LakeAggregator, other: LakeAggregator) -> None:
    assert one.totals("exp") == other.totals("exp")
    assert (one.rows, one.watermarks) == (other.rows, other.watermarks)
    mine, theirs = one.state(), other.state()
    assert mine.latest == theirs.latest
    assert set(mine.pending) == set(theirs.pending)


def _replaced_on_disk(engine: Engine, storage: LakeStorage) -> list[str]:
    with engine.connect() as conn:
        paths = conn.execute(select(lake_files.c.path).where(lake_files.c.status == "replaced"))
        return [p for (p,) in paths if storage.exists(p)]


def _compact_and_delete(engine: Engine, storage: LakeStorage, **kwargs: object) -> None:
    summary = compact(engine, storage, min_age=timedelta(0), grace=timedelta(0), **kwargs)  # type: ignore[arg-type]
    assert summary.compactions >= 2 and summary.replaced_deleted == summary.files_in
    assert _replaced_on_disk(engine, storage) == []


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("seed", [0, 1])
def test_rebuilt_after_compaction_equals_what_read_the_flush_files(
    engine: Engine,
    storage: LakeStorage,
    lake_: _Lake,
    seed: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rng = np.random.default_rng(seed)
    steady = LakeAggregator(engine, storage, lookback=LOOKBACK)  # (a) reads every flush
    behind = LakeAggregator(engine, storage, lookback=LOOKBACK)  # stops updating halfway
    cut = START + timedelta(seconds=20 * 300)
    ordered = sorted(_traffic(rng, 0, 300, START), key=lambda r: r.at)  # 23:00 to 00:40
    rows = [r for r in ordered if r.at < cut]
    held = [r for r in ordered if r.at >= cut]  # feedback after the compaction
    assert any(r.table == "feedback" for r in held)
    half = len(rows) // 2
    lake_.play(rows[:half], rng, [steady, behind])
    early = steady.state()  # (c) a checkpoint from before the compaction
    lake_.play(rows[half:], rng, [steady])
    # What the feedback kinds did, as read from the flush files.
    served = sum(t.health.served for t in steady.totals("exp").values())
    rewarded = sum(t.rewards.n for t in steady.totals("exp").values())
    assert served == sum(r.table == "predictions" for r in rows) and 0 < rewarded < 300
    assert steady.rows == len(rows)

    _compact_and_delete(engine, storage, max_file_rows=150)
    assert steady.update(RULES) == 0  # compaction outputs: nothing to fold
    assert all(
        e.writer_id == COMPACTION_WRITER_ID
        for t in ("predictions", "feedback")
        for e in live_files(engine, t)
    )
    # (b) From nothing: no file it needs is gone.
    fresh = LakeAggregator(engine, storage, lookback=LOOKBACK)
    assert fresh.update(RULES) == len(rows)
    _same(fresh, steady)
    # (c) The checkpoint points before deleted files: a rebuild, with a warning.
    save_checkpoint(engine, NAME, early, holder="old")
    resumed = resume(engine, storage, NAME, lookback=LOOKBACK)
    assert resumed.watermarks == early.watermarks
    with caplog.at_level(logging.WARNING, logger="lake.aggregates"):
        assert resumed.update(RULES) == len(rows)
        behind.update(RULES)  # an in-memory consumer left behind longer than the grace
    assert caplog.text.count("rebuilt from the lake as it is") == 2
    _same(resumed, steady)
    _same(behind, steady)

    # Traffic goes on: more flush files (feedback for the requests before compaction
    # among them), folded file by file by all of them, then compacted again.
    more = [*_traffic(rng, 300, 120, cut), *held]
    consumers = [steady, fresh, resumed, behind]
    lake_.play(more, rng, consumers)
    for aggregator in consumers[1:]:
        _same(aggregator, steady)
    # The holder's new checkpoint lets the compactor delete everything it replaces.
    save_checkpoint(engine, NAME, resumed.state(), holder="new")
    _compact_and_delete(engine, storage)
    for aggregator in consumers:
        assert aggregator.update(RULES) == 0  # new compaction outputs: nothing to fold
        _same(aggregator, steady)
    last = LakeAggregator(engine, storage, lookback=LOOKBACK)
    last.update(RULES)
    _same(last, steady)


@pytest.mark.usefixtures("small_chunks")
def test_a_checkpoint_after_the_flushes_goes_on_without_a_rebuild(
    engine: Engine, storage: LakeStorage, lake_: _Lake, caplog: pytest.LogCaptureFixture
) -> None:
    """Only compaction outputs after its watermarks: nothing to read, nothing rebuilt."""
    rng = np.random.default_rng(7)
    steady = LakeAggregator(engine, storage, lookback=LOOKBACK)
    lake_.play(_traffic(rng, 0, 150, START), rng, [steady])
    save_checkpoint(engine, NAME, steady.state(), holder="old")
    summary = compact(engine, storage, min_age=timedelta(0), grace=timedelta(0))
    assert summary.compactions >= 2 and summary.replaced_deleted == summary.files_in
    assert steady.update(RULES) == 0
    resumed = resume(engine, storage, NAME, lookback=LOOKBACK)
    with caplog.at_level(logging.WARNING, logger="lake.aggregates"):
        assert resumed.update(RULES) == 0
    assert "rebuilt" not in caplog.text
    assert resumed.state() == steady.state()


def test_files_as_of_is_the_lake_at_that_id(engine: Engine, storage: LakeStorage) -> None:
    rng = np.random.default_rng(3)
    lk = _Lake(engine, storage)
    try:
        lk.play(_traffic(rng, 0, 60, START), rng, [])
    finally:
        lk.close()
    before = last_file_ids(engine)
    top = max(before.values())
    flushed = {
        t: [int(e.id or 0) for e in files_since(engine, t, 0)] for t in ("predictions", "feedback")
    }
    assert before == {t: max(ids) for t, ids in flushed.items() if ids}
    summary = compact(engine, storage, min_age=timedelta(0), grace=timedelta(0))
    assert summary.replaced_deleted == summary.files_in > 0
    for table, ids in flushed.items():
        # As of before the compaction: the flush files, replaced (and deleted) since.
        assert [e.id for e in files_as_of(engine, table, top)] == ids
        # As of now: the compacted files only, holding every row once.
        now = files_as_of(engine, table, max(last_file_ids(engine).values()))
        assert now == live_files(engine, table)
        assert {e.writer_id for e in now} == {COMPACTION_WRITER_ID}
        flush_rows = sum(e.rows for e in files_since(engine, table, 0) if e.id in ids)
        assert sum(e.rows for e in now) == flush_rows
    assert files_as_of(engine, "predictions", 0) == []


def test_a_start_retries_when_its_snapshot_loses_a_file_to_compaction(
    engine: Engine, storage: LakeStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compactor replaces and deletes a file between the start's manifest snapshot and
    its read: the start takes a newer snapshot (the compacted file) and succeeds."""
    rng = np.random.default_rng(4)
    lk = _Lake(engine, storage)
    try:
        lk.play(_traffic(rng, 0, 60, START), rng, [])
    finally:
        lk.close()
    expected = LakeAggregator(engine, storage, lookback=LOOKBACK)
    expected.update(RULES)
    real = files_as_of
    calls = 0

    def racing(engine_: Engine, table: str, as_of: int) -> list[object]:
        nonlocal calls
        calls += 1
        found = real(engine_, table, as_of)
        if calls == 1:  # right after the first snapshot: compaction with grace 0
            compact(engine, storage, min_age=timedelta(0), grace=timedelta(0))
            assert _replaced_on_disk(engine, storage) == []
        return found  # type: ignore[return-value]

    monkeypatch.setattr(lake.aggregates, "files_as_of", racing)
    fresh = LakeAggregator(engine, storage, lookback=LOOKBACK)
    assert fresh.update(RULES) == expected.rows
    assert calls == 4  # two tables, two snapshots
    assert fresh.totals("exp") == expected.totals("exp")
    assert fresh.watermarks == {t: m for t, m in last_file_ids(engine).items()}


def test_a_start_missing_a_compacted_file_raises_and_keeps_the_state(
    engine: Engine, storage: LakeStorage, caplog: pytest.LogCaptureFixture
) -> None:
    """A rebuild that cannot read the lake (a live compacted file lost) leaves a resumed
    aggregator at its checkpoint, and a fresh one at watermark 0."""
    rng = np.random.default_rng(5)
    lk = _Lake(engine, storage)
    holder = LakeAggregator(engine, storage, lookback=LOOKBACK)
    try:
        rows = sorted(_traffic(rng, 0, 90, START), key=lambda r: r.at)
        lk.play(rows[:100], rng, [holder])
        state = holder.state()
        lk.play(rows[100:], rng, [])
    finally:
        lk.close()
    compact(engine, storage, min_age=timedelta(0), grace=timedelta(0))
    lost = live_files(engine, "feedback")[0]
    kept = storage.read_bytes(lost.path)
    assert storage.delete(lost.path)
    save_checkpoint(engine, NAME, state, holder="old")
    resumed = resume(engine, storage, NAME, lookback=LOOKBACK)
    fresh = LakeAggregator(engine, storage, lookback=LOOKBACK)
    for aggregator in (resumed, fresh):
        with pytest.raises(LakeReadError, match=f"{lost.path!r} \\(manifest id {lost.id}\\)"):
            aggregator.update(RULES)
    assert resumed.state() == state
    assert fresh.watermarks == {"predictions": 0, "feedback": 0} and fresh.rows == 0
    assert fresh.totals("exp") == {}
    storage.write_bytes(lost.path, kept)
    resumed.update(RULES)
    fresh.update(RULES)
    assert resumed.totals("exp") == fresh.totals("exp") != {}
    assert resumed.rows == fresh.rows == len(rows)
    # The warnings named the gone flush file the resumed statistics could not go on from.
    assert "cannot go on; they are rebuilt from the lake as it is" in caplog.text
