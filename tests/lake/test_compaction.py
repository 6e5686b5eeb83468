"""Compaction into Delta tables: nothing lost or doubled, through a crash at any step,
beside a concurrent compactor, on a local directory and on S3 (moto)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine, insert, select, update

from lake.aggregates import LakeAggregator
from lake.compaction import (
    CompactionSummary,
    _Output,
    _write_intents,
    compact,
    delta_storage_options,
    delta_uri,
)
from lake.manifest import (
    COMPACTION_WRITER_ID,
    lake_checkpoints,
    lake_compactions,
    lake_files,
    live_files,
)
from lake.rewards import RewardRule
from lake.schemas import SCHEMAS
from lake.storage import LakeStorage
from tests.lake.compaction_support import (  # noqa: F401
    all_ids,
    assert_delta_matches_manifest,
    compaction_statuses,
    delta_ids,
    delta_table,
    engine_fixture,
    storage_fixture,
    totals,
    write_lake,
)
from tests.s3_server import s3_server  # noqa: F401

NOW = timedelta(0)
HOUR = timedelta(hours=1)
RULES = {"exp": RewardRule("continuous")}
T0D = datetime(2025, 3, 1, tzinfo=UTC).date()


class Crash(BaseException):
    """A process dying at a step: not an Exception, so no in-process cleanup runs."""


def _flush_files(engine: Engine, table: str) -> list[Any]:
    return [e for e in live_files(engine, table) if e.writer_id != COMPACTION_WRITER_ID]


def test_compaction_keeps_every_row_once_and_publishes_them_to_delta(
    engine: Engine,
    storage: LakeStorage,
) -> None:
    written = write_lake(storage, engine)
    before = totals(engine, storage)
    flush_files = len(_flush_files(engine, "predictions"))
    feedback_files = len(_flush_files(engine, "feedback"))
    assert (flush_files, feedback_files) == (8, 4)

    seen: list[Any] = []
    summary = compact(engine, storage, min_age=NOW, grace=HOUR, progress=seen.append)

    assert totals(engine, storage) == before
    assert summary.files_in == flush_files + feedback_files
    assert _flush_files(engine, "predictions") == []
    assert _flush_files(engine, "feedback") == []
    outputs = live_files(engine, "predictions")
    # The rows span two UTC dates: one output per date, in its dt= partition.
    assert sorted(o.path.split("/")[2] for o in outputs) == ["dt=2025-03-01", "dt=2025-03-02"]
    assert sum(o.rows for o in outputs) == written
    assert summary.rows == written + sum(o.rows for o in live_files(engine, "feedback"))
    assert summary.files_out == len(outputs) + len(live_files(engine, "feedback"))
    assert summary.bytes_out > 0 and summary.bytes_in > 0
    assert summary.delta_versions == {"predictions": 1, "feedback": 1}
    assert seen and seen[-1].files_done == seen[-1].files_total

    # Sorted by (experiment, ts) inside each file, with exactly the lake's columns.
    first = storage.read_table(outputs[0].path)
    assert first.schema.names == SCHEMAS["predictions"].names
    ts = first["ts"].to_pylist()
    assert ts == sorted(ts)

    # Delta holds exactly the published rows, with dt from ts.
    assert_delta_matches_manifest(engine, storage)
    assert delta_ids(storage, "predictions") == all_ids(engine, storage, "predictions")
    delta = delta_table(storage, "predictions")
    days = {(r["dt"], r["ts"].date()) for r in delta.select(["dt", "ts"]).to_pylist()}
    assert all(dt == day for dt, day in days) and len(days) == 2
    frame = pl.scan_delta(
        delta_uri(storage, "predictions"), storage_options=delta_storage_options(storage)
    )
    # Partition pruning and the file statistics agree with the rows.
    cut = datetime(2025, 3, 2, 0, 0, tzinfo=UTC)
    late = frame.filter(pl.col("ts") >= cut).select(pl.len()).collect().item()
    assert late == sum(1 for t in delta["ts"].to_pylist() if t >= cut) > 0
    assert frame.filter(pl.col("dt") == cut.date()).select(pl.len()).collect().item() == late

    # A second run has nothing to do.
    again = compact(engine, storage, min_age=NOW, grace=HOUR)
    assert (again.files_in, again.compactions) == (0, 0)
    assert totals(engine, storage) == before


def test_min_age_leaves_young_files(engine: Engine, storage: LakeStorage) -> None:
    write_lake(storage, engine, files=3)
    summary = compact(engine, storage, min_age=HOUR, grace=HOUR)
    assert (summary.files_in, summary.files_out) == (0, 0)
    assert len(_flush_files(engine, "predictions")) == 3
    assert summary.delta_versions == {"predictions": None, "feedback": None}


def test_row_cap_splits_outputs_and_new_rows_compact_later(
    engine: Engine, storage: LakeStorage
) -> None:
    write_lake(storage, engine, files=6, rows=10)
    compact(engine, storage, min_age=NOW, grace=HOUR, max_file_rows=25)
    outputs = live_files(engine, "predictions")
    assert all(o.rows <= 25 for o in outputs) and len(outputs) >= 3
    before = totals(engine, storage)
    write_lake(storage, engine, files=2, rows=10, start=60)
    summary = compact(engine, storage, min_age=NOW, grace=HOUR, max_file_rows=25)
    assert summary.files_in >= 2
    assert _flush_files(engine, "predictions") == []
    after = totals(engine, storage)
    assert after != before
    assert sum(n for _v, n, _s, _d in after["predictions"]) == 80  # type: ignore[union-attr]
    assert_delta_matches_manifest(engine, storage)


def test_aggregates_identical_before_and_after(engine: Engine, storage: LakeStorage) -> None:
    write_lake(storage, engine)
    before = LakeAggregator(engine, storage, lookback=timedelta(days=2))
    before.update(RULES)
    compact(engine, storage, min_age=NOW, grace=HOUR)
    # The same consumer moves past the compaction outputs without counting them again...
    assert before.update(RULES) == 0
    # ...and a new one, folding the replaced flush files (still in their grace period),
    # arrives at the same statistics.
    after = LakeAggregator(engine, storage, lookback=timedelta(days=2))
    after.update(RULES)
    assert after.totals("exp") == before.totals("exp")
    assert before.totals("exp")


@pytest.mark.parametrize("step", ["intent", "files", "delta", "recorded", "switch"])
def test_crash_at_each_step_is_recovered(engine: Engine, storage: LakeStorage, step: str) -> None:
    write_lake(storage, engine, files=4)
    before = totals(engine, storage)

    def crash(name: str) -> None:
        if name == step:
            raise Crash(name)

    with pytest.raises(Crash):
        compact(engine, storage, min_age=NOW, grace=HOUR, after_step=crash)
    # Readers see every row once, whatever the step.
    assert totals(engine, storage) == before
    statuses = compaction_statuses(engine)
    assert statuses and set(statuses) == ({"committed"} if step == "switch" else {"started"})

    # A run that does not take the abandoned compaction for one (it may be running) leaves it.
    fresh = compact(engine, storage, min_age=NOW, grace=HOUR, tables=["feedback"])
    assert (fresh.recovered_committed, fresh.recovered_rolled_back) == (0, 0)

    summary = compact(engine, storage, min_age=NOW, grace=HOUR, recover_after=NOW)
    assert totals(engine, storage) == before
    assert _flush_files(engine, "predictions") == []
    assert_delta_matches_manifest(engine, storage)
    assert delta_ids(storage, "predictions") == all_ids(engine, storage, "predictions")
    assert not {"started", "rolling_back"} & set(compaction_statuses(engine))
    if step in ("delta", "recorded"):
        # The output was in Delta: the switch was completed, not redone.
        assert (summary.recovered_committed, summary.recovered_rolled_back) == (1, 0)
        assert summary.files_in == 0
    elif step in ("intent", "files"):
        # Rolled back, then the same files compacted again.
        assert (summary.recovered_committed, summary.recovered_rolled_back) == (0, 1)
        assert summary.files_in == 4
    with engine.connect() as conn:
        committed = conn.execute(
            select(lake_compactions.c.delta_version, lake_compactions.c.output_id).where(
                lake_compactions.c.status == "committed"
            )
        ).all()
    assert committed and all(v is not None and o is not None for v, o in committed)


def test_recovery_rolls_back_when_an_input_is_no_longer_live(
    engine: Engine, storage: LakeStorage
) -> None:
    write_lake(storage, engine, files=3)

    def crash(name: str) -> None:
        if name == "delta":
            raise Crash(name)

    with pytest.raises(Crash):
        compact(engine, storage, min_age=NOW, grace=HOUR, after_step=crash, tables=["predictions"])
    assert len(delta_ids(storage, "predictions")) == 60  # in Delta, not yet in the manifest
    victim = _flush_files(engine, "predictions")[0]
    with engine.begin() as conn:  # as if it had been replaced meanwhile
        conn.execute(update(lake_files).where(lake_files.c.id == victim.id).values(status="x"))
    summary = compact(
        engine, storage, min_age=HOUR, grace=HOUR, recover_after=NOW, tables=["predictions"]
    )
    assert (summary.recovered_committed, summary.recovered_rolled_back) == (0, 1)
    assert delta_ids(storage, "predictions") == []
    assert_delta_matches_manifest(engine, storage)
    assert set(compaction_statuses(engine)) == {"rolled_back"}
    assert len(_flush_files(engine, "predictions")) == 2


def test_claimed_files_are_left_to_their_compactor(engine: Engine, storage: LakeStorage) -> None:
    write_lake(storage, engine, files=4)
    claimed = _flush_files(engine, "predictions")[:2]
    empty = storage.read_table(claimed[0].path).slice(0, 0)
    ids = _write_intents(
        engine,
        "predictions",
        [int(e.id or 0) for e in claimed],
        [_Output("delta/predictions/dt=2025-03-01/part-other-001.parquet", T0D, empty)],
    )
    compact(engine, storage, min_age=NOW, grace=HOUR)
    left = {e.id for e in _flush_files(engine, "predictions")}
    assert left == {e.id for e in claimed}
    # Once abandoned long enough, the other compaction is rolled back and its files taken.
    before = totals(engine, storage)
    summary = compact(engine, storage, min_age=NOW, grace=HOUR, recover_after=NOW)
    assert summary.recovered_rolled_back == 1 and summary.files_in == 2
    assert _flush_files(engine, "predictions") == []
    assert totals(engine, storage) == before
    with engine.connect() as conn:
        status = conn.execute(
            select(lake_compactions.c.status).where(lake_compactions.c.id == ids[0])
        ).scalar_one()
    assert status == "rolled_back"


def test_two_concurrent_compactors_never_compact_the_same_files(
    engine: Engine, storage: LakeStorage
) -> None:
    write_lake(storage, engine, files=12, rows=10)
    before = totals(engine, storage)
    results: list[CompactionSummary] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(compact(engine, storage, min_age=NOW, grace=HOUR, max_file_rows=30))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert len(results) == 2
    # A last run picks up whatever both backed off from.
    compact(engine, storage, min_age=NOW, grace=HOUR, max_file_rows=30)

    assert totals(engine, storage) == before
    assert _flush_files(engine, "predictions") == []
    assert_delta_matches_manifest(engine, storage)
    assert delta_ids(storage, "predictions") == all_ids(engine, storage, "predictions")
    # Each input was replaced by exactly one committed compaction.
    with engine.connect() as conn:
        rows = conn.execute(
            select(lake_compactions.c.output_path, lake_compactions.c.inputs).where(
                lake_compactions.c.status == "committed"
            )
        ).all()
    by_token: dict[str, set[int]] = {}
    for path, inputs in rows:
        by_token.setdefault(path.rsplit("/", 1)[1].rsplit("-", 1)[0], set()).update(inputs)
    seen: list[int] = [i for inputs in by_token.values() for i in inputs]
    assert len(seen) == len(set(seen))
    assert not {"started", "rolling_back"} & set(compaction_statuses(engine))


def test_replaced_files_are_deleted_after_the_grace_period(
    engine: Engine, storage: LakeStorage
) -> None:
    write_lake(storage, engine, files=4)
    compact(engine, storage, min_age=NOW, grace=HOUR)
    with engine.connect() as conn:
        replaced = conn.execute(
            select(lake_files.c.id, lake_files.c.path, lake_files.c.table_name)
            .where(lake_files.c.status == "replaced")
            .order_by(lake_files.c.id)
        ).all()
    assert replaced and all(storage.exists(p) for _i, p, _t in replaced)

    # A statistics checkpoint that has not passed a file keeps it.
    preds = [(i, p) for i, p, t in replaced if t == "predictions"]
    floor = preds[1][0]
    with engine.begin() as conn:
        conn.execute(
            insert(lake_checkpoints).values(
                name="reallocator",
                watermarks={"predictions": floor, "feedback": 10**9},
                state=b"",
                state_sha256="0" * 64,
                rows=0,
                holder="test",
                created_at=datetime.now(UTC),
            )
        )
    summary = compact(engine, storage, min_age=NOW, grace=NOW)
    kept = {p for i, p in preds if i > floor}
    assert kept and all(storage.exists(p) for p in kept)
    assert not any(storage.exists(p) for i, p, _t in replaced if p not in kept)
    assert summary.replaced_deleted == len(replaced) - len(kept)
    assert summary.replaced_deleted_bytes > 0

    with engine.begin() as conn:
        conn.execute(update(lake_checkpoints).values(watermarks={"predictions": 10**9}))
    summary = compact(engine, storage, min_age=NOW, grace=NOW)
    assert summary.replaced_deleted == len(kept)
    assert not any(storage.exists(p) for _i, p, _t in replaced)
    # The manifest still lists them (ids stay dense for the incremental consumers).
    with engine.connect() as conn:
        count = conn.execute(select(lake_files.c.id).where(lake_files.c.status == "replaced")).all()
    assert len(count) == len(replaced)
