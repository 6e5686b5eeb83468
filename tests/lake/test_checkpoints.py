"""Checkpoints of the aggregator's state: exact round trips, resuming equals reading
everything, and a checkpoint that cannot be used is ignored (the lake is folded again)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, select, update

from lake.aggregates import AggregatorState, LakeAggregator
from lake.checkpoints import (
    FORMAT_VERSION,
    CheckpointError,
    decode,
    encode,
    load_checkpoint,
    oldest_watermarks,
    resume,
    save_checkpoint,
)
from lake.errors import LakeReadError
from lake.manifest import files_since, lake_checkpoints, metadata
from lake.rewards import RewardRule
from lake.storage import LakeStorage
from lake.variants import ArmKey, VariantVersionStats
from lake.writer import LakeWriter
from tests.lake.lake_support import T0, feedback, prediction

RULES = {"exp": RewardRule("continuous")}
LOOKBACK = timedelta(minutes=30)
NAME = "reallocator"


@pytest.fixture
def store(engine: Engine) -> Engine:
    metadata.create_all(engine, tables=[lake_checkpoints])
    return engine


@pytest.fixture
def writers(store: Engine, root: Path) -> Iterator[tuple[LakeWriter, LakeWriter]]:
    kwargs = {"flush_rows": 100_000, "flush_interval_s": 3600}
    preds = LakeWriter(root, store, table="predictions", **kwargs)  # type: ignore[arg-type]
    fbs = LakeWriter(root, store, table="feedback", **kwargs)  # type: ignore[arg-type]
    yield preds, fbs
    preds.close()
    fbs.close()


def _write_batch(
    preds: LakeWriter, fbs: LakeWriter, rng: np.random.Generator, ids: range, base: int
) -> None:
    """Predictions (some failed, some with a shadow) and feedback for ``ids``: some before
    their prediction, some late, some delivered twice."""
    for i in ids:
        rid = f"r{i}"
        at = T0 + timedelta(seconds=5 * (base + i))
        status = "error" if rng.random() < 0.05 else "ok"
        preds.append(prediction(rid, ts=at, variant="ab"[int(rng.random() < 0.5)], status=status))
        if rng.random() < 0.2:
            preds.append(prediction(rid, ts=at, variant="s", role="shadow", prediction=None))
        if rng.random() < 0.6:
            delay = timedelta(minutes=float(rng.choice([-1, 1, 10, 45])))
            fbs.append(feedback(rid, ts=at + delay, reward=float(rng.normal()), label="x"))
        if rng.random() < 0.1:
            fbs.append(feedback(rid, ts=at + timedelta(minutes=2), reward=None))


def _flush(preds: LakeWriter, fbs: LakeWriter, rng: np.random.Generator) -> None:
    # Either table first: feedback lands before, with or after its prediction's file.
    for writer in (fbs, preds) if rng.random() < 0.5 else (preds, fbs):
        writer.flush()


def _assert_same_totals(
    mine: dict[ArmKey, VariantVersionStats], other: dict[ArmKey, VariantVersionStats]
) -> None:
    assert mine.keys() == other.keys()
    for key, a in mine.items():
        b = other[key]
        assert a.health == b.health, key
        assert (a.rewards.n, a.ipw.n, a.ipw.max_w) == (b.rewards.n, b.ipw.n, b.ipw.max_w), key
        # Sums are added in another order by an aggregator that folded other chunks.
        assert a.rewards.sum == pytest.approx(b.rewards.sum, rel=1e-12, abs=1e-9), key
        assert a.rewards.sum_sq == pytest.approx(b.rewards.sum_sq, rel=1e-12, abs=1e-9), key
        assert a.ipw.sum_wr == pytest.approx(b.ipw.sum_wr, rel=1e-12, abs=1e-9), key


def test_a_round_trip_keeps_the_whole_state(
    store: Engine, root: Path, writers: tuple[LakeWriter, LakeWriter]
) -> None:
    preds, fbs = writers
    rng = np.random.default_rng(11)
    aggregator = LakeAggregator(store, root, lookback=LOOKBACK)
    for batch in range(4):
        _write_batch(preds, fbs, rng, range(batch * 100, (batch + 1) * 100), base=0)
        _flush(preds, fbs, rng)
        aggregator.update(RULES)
    # Later requests still waiting (some with a shadow row), and feedback for requests
    # never predicted (orphans), all within the lookback of the latest row.
    late = T0 + timedelta(hours=3)
    for i in range(20):
        preds.append(prediction(f"late{i}", ts=late + timedelta(seconds=i)))
        if i % 3 == 0:
            preds.append(prediction(f"late{i}", ts=late, variant="s", role="shadow"))
        fbs.append(feedback(f"ghost{i}", ts=late + timedelta(seconds=i), reward=1.0, label=None))
    fbs.append(feedback("late0", ts=late + timedelta(minutes=1), reward=2.0))
    preds.flush()
    fbs.flush()
    aggregator.update(RULES)
    state = aggregator.state()
    # Every part of the state is non-trivial, so equality below says something.
    assert state.pending and state.orphans and state.rewarded and state.totals
    assert any(len(entries) > 1 for entries in state.pending.values())
    assert state.rows == preds.stats().rows_written + fbs.stats().rows_written

    data = encode(state)
    assert decode(data) == state
    info = save_checkpoint(store, NAME, state, holder="replica-1")
    assert info is not None
    assert info.watermarks == state.watermarks and info.bytes == len(data)
    loaded = load_checkpoint(store, NAME, lookback_us=state.lookback_us)
    assert loaded == state
    assert loaded is not None
    restored = LakeAggregator.from_state(store, root, loaded)
    assert restored.state() == state
    assert restored.totals("exp") == aggregator.totals("exp")
    assert restored.watermarks == aggregator.watermarks
    # The stored row says what it holds.
    with store.connect() as conn:
        row = conn.execute(select(lake_checkpoints)).one()._mapping
    assert (row["name"], row["holder"], row["rows"]) == (NAME, "replica-1", state.rows)
    assert row["watermarks"] == state.watermarks


def test_an_empty_state_round_trips(store: Engine, root: Path) -> None:
    state = LakeAggregator(store, root, lookback=LOOKBACK).state()
    assert decode(encode(state)) == state


def test_feedback_after_the_checkpoint_matches_a_prediction_before_it(
    store: Engine, root: Path, writers: tuple[LakeWriter, LakeWriter]
) -> None:
    preds, fbs = writers
    holder = LakeAggregator(store, root, lookback=LOOKBACK)
    for i in range(10):
        preds.append(prediction(f"p{i}", ts=T0 + timedelta(seconds=i), variant="ab"[i % 2]))
    fbs.append(feedback("early", ts=T0, reward=7.0))  # before its prediction
    preds.flush()
    fbs.flush()
    holder.update(RULES)
    assert holder.pending == 10
    save_checkpoint(store, NAME, holder.state(), holder="old")
    # The holder dies; a new one resumes from the checkpoint.
    resumed = resume(store, root, NAME, lookback=LOOKBACK)
    assert resumed.watermarks == holder.watermarks and resumed.pending == 10
    for i in range(10):
        fbs.append(feedback(f"p{i}", ts=T0 + timedelta(minutes=1), reward=float(i)))
    fbs.append(feedback("p3", ts=T0 + timedelta(minutes=2), reward=100.0))  # a duplicate
    preds.append(prediction("early", ts=T0 + timedelta(seconds=30), variant="a"))
    fbs.flush()
    preds.flush()
    assert resumed.update(RULES) == 12
    (a,) = [t for k, t in resumed.totals("exp").items() if k.variant == "a"]
    (b,) = [t for k, t in resumed.totals("exp").items() if k.variant == "b"]
    assert (a.rewards.n, a.rewards.sum) == (6, 0 + 2 + 4 + 6 + 8 + 7.0)
    assert (b.rewards.n, b.rewards.sum) == (5, 1 + 3 + 5 + 7 + 9)
    assert resumed.pending == 0
    fresh = LakeAggregator(store, root, lookback=LOOKBACK)
    fresh.update(RULES)
    assert fresh.totals("exp") == resumed.totals("exp")


@pytest.mark.parametrize("seed", [0, 1])
def test_resuming_after_more_files_equals_reading_everything(
    store: Engine, root: Path, writers: tuple[LakeWriter, LakeWriter], seed: int
) -> None:
    preds, fbs = writers
    rng = np.random.default_rng(seed)
    steady = LakeAggregator(store, root, lookback=LOOKBACK)
    resumed: LakeAggregator | None = None
    for batch in range(8):
        # Batches far enough apart that requests expire from the lookback on the way.
        ids = range(batch * 80, (batch + 1) * 80)
        _write_batch(preds, fbs, rng, ids, base=batch * 200)
        _flush(preds, fbs, rng)
        steady.update(RULES)
        if resumed is not None:
            resumed.update(RULES)
        if batch in (2, 5):
            # A takeover: the checkpoint of the holder, through the store, resumed.
            save_checkpoint(store, NAME, steady.state(), holder=f"h{batch}")
            resumed = resume(store, root, NAME, lookback=LOOKBACK)
            assert resumed.watermarks == steady.watermarks
    assert resumed is not None
    # Resumed twice on the way, it holds exactly what the uninterrupted holder holds.
    assert resumed.state() == steady.state()
    fresh = LakeAggregator(store, root, lookback=LOOKBACK)
    fresh.update(RULES)
    assert fresh.watermarks == resumed.watermarks
    _assert_same_totals(resumed.totals("exp"), fresh.totals("exp"))
    assert sum(t.health.served for t in fresh.totals("exp").values()) > 640


def _stored(store: Engine) -> bytes:
    with store.connect() as conn:
        return bytes(conn.execute(select(lake_checkpoints.c.state)).scalar_one())


def _store_raw(store: Engine, data: bytes, *, fix_sha: bool) -> None:
    import hashlib

    values: dict[str, object] = {"state": data}
    if fix_sha:
        values["state_sha256"] = hashlib.sha256(data).hexdigest()
    with store.begin() as conn:
        conn.execute(update(lake_checkpoints).values(values))


@pytest.mark.parametrize("damage", ["flipped byte", "consistent garbage", "other version"])
def test_a_bad_checkpoint_is_ignored_and_the_lake_folded_again(
    store: Engine,
    root: Path,
    writers: tuple[LakeWriter, LakeWriter],
    damage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    preds, fbs = writers
    _write_batch(preds, fbs, np.random.default_rng(5), range(200), base=0)
    _flush(preds, fbs, np.random.default_rng(5))
    holder = LakeAggregator(store, root, lookback=LOOKBACK)
    holder.update(RULES)
    save_checkpoint(store, NAME, holder.state(), holder="old")
    data = bytearray(_stored(store))
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0xFF  # the stored SHA-256 no longer matches
        _store_raw(store, bytes(data), fix_sha=False)
    elif damage == "consistent garbage":
        # Truncated but with a matching digest: only decoding can tell.
        _store_raw(store, bytes(data[: len(data) // 2]), fix_sha=True)
    else:
        data[8:12] = (FORMAT_VERSION + 1).to_bytes(4, "little")
        _store_raw(store, bytes(data), fix_sha=True)
    with pytest.raises(CheckpointError):
        decode(_stored(store))
    with caplog.at_level(logging.WARNING, logger="lake.checkpoints"):
        assert load_checkpoint(store, NAME) is None
        rebuilt = resume(store, root, NAME, lookback=LOOKBACK)
    assert f"checkpoint {NAME!r} ignored" in caplog.text
    assert rebuilt.watermarks == {"predictions": 0, "feedback": 0}
    rebuilt.update(RULES)
    assert rebuilt.state() == holder.state()


def test_a_checkpoint_of_another_lookback_is_ignored(
    store: Engine, root: Path, writers: tuple[LakeWriter, LakeWriter]
) -> None:
    preds, _ = writers
    preds.append(prediction("r0"))
    preds.flush()
    holder = LakeAggregator(store, root, lookback=LOOKBACK)
    holder.update(RULES)
    save_checkpoint(store, NAME, holder.state(), holder="old")
    assert resume(store, root, NAME, lookback=LOOKBACK).watermarks == holder.watermarks
    other = resume(store, root, NAME, lookback=LOOKBACK * 2)
    assert other.watermarks == {"predictions": 0, "feedback": 0}
    assert other.lookback == LOOKBACK * 2


def test_a_fence_that_fails_writes_nothing(store: Engine, root: Path) -> None:
    state = LakeAggregator(store, root, lookback=LOOKBACK).state()
    assert save_checkpoint(store, NAME, state, holder="zombie", fence=lambda _: False) is None
    assert load_checkpoint(store, NAME) is None
    assert save_checkpoint(store, NAME, state, holder="holder", fence=lambda _: True) is not None
    assert load_checkpoint(store, NAME) == state


def test_a_file_deleted_after_the_checkpoint_stops_the_resumed_statistics(
    store: Engine, root: Path, storage: LakeStorage, writers: tuple[LakeWriter, LakeWriter]
) -> None:
    """A live file after the checkpoint's watermark gone from disk (lost, not replaced: a
    replaced one makes the aggregator rebuild, tests/lake/test_aggregates_rebuild.py) stops
    the resumed aggregator there, its state kept, as any incremental consumer; once the
    file is back it goes on and agrees with a fresh one."""
    preds, fbs = writers
    rng = np.random.default_rng(3)
    holder = LakeAggregator(store, root, lookback=LOOKBACK)
    _write_batch(preds, fbs, rng, range(100), base=0)
    _flush(preds, fbs, rng)
    holder.update(RULES)
    save_checkpoint(store, NAME, holder.state(), holder="old")
    assert oldest_watermarks(store) == holder.watermarks
    for batch in (1, 2):
        # Later in time than the lookback, as traffic goes (the fresh aggregator folds all
        # at once, the resumed one file by file: expiry agrees when rows come in order).
        _write_batch(preds, fbs, rng, range(batch * 100, (batch + 1) * 100), base=batch * 300)
        _flush(preds, fbs, rng)
    # The first file after the checkpoint (either table) is gone.
    marks = holder.watermarks
    gone = min(
        (e for table in marks for e in files_since(store, table, marks[table])),
        key=lambda e: int(e.id or 0),
    )
    kept = storage.read_bytes(gone.path)
    assert storage.delete(gone.path)
    resumed = resume(store, root, NAME, lookback=LOOKBACK)
    with pytest.raises(LakeReadError):
        resumed.update(RULES)
    # Nothing past the gap is folded or skipped: the state is still the checkpoint's.
    assert resumed.state() == holder.state()
    storage.write_bytes(gone.path, kept)
    resumed.update(RULES)
    fresh = LakeAggregator(store, root, lookback=LOOKBACK)
    fresh.update(RULES)
    assert resumed.watermarks == fresh.watermarks
    _assert_same_totals(resumed.totals("exp"), fresh.totals("exp"))


def test_the_state_is_a_snapshot(store: Engine, root: Path) -> None:
    aggregator = LakeAggregator(store, root, lookback=LOOKBACK)
    with LakeWriter(root, store, table="predictions") as writer:
        writer.append(prediction("r0"))
        writer.flush()
        aggregator.update(RULES)
        state = aggregator.state()
        writer.append(prediction("r1"))
        writer.flush()
        aggregator.update(RULES)
    assert isinstance(state, AggregatorState)
    assert set(state.pending) == {"r0"} and aggregator.pending == 2
