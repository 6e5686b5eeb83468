from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine, create_engine

from lake import LakeConfigError, LakeWriteError, LakeWriter, live_files, open_lake
from lake.storage import LakeStorage
from tests.lake.lake_support import (
    T0,
    broken_manifest,
    broken_sink,
    feedback,
    part_files,
    prediction,
    temp_files,
    wait_until,
)

# Generous: only reached when something is wrong; the tests poll, never sleep blindly.
NO_TIMER = 3600.0


@pytest.fixture
def writers() -> Iterator[list[LakeWriter]]:
    made: list[LakeWriter] = []
    yield made
    for writer in made:
        writer.close(timeout=5)


@pytest.fixture
def make_writer(root: str, engine: Engine, writers: list[LakeWriter]) -> Any:
    def make(**options: Any) -> LakeWriter:
        options.setdefault("table", "predictions")
        writer = LakeWriter(root, engine, **options)
        writers.append(writer)
        return writer

    return make


def assert_balanced(writer: LakeWriter) -> None:
    s = writer.stats()
    assert s.rows_written + s.rows_dropped + s.rows_pending == s.rows_appended, s


def assert_manifest_matches_storage(storage: LakeStorage, engine: Engine) -> None:
    listed = {f.path for t in ("predictions", "feedback") for f in live_files(engine, t)}
    assert part_files(storage) == listed
    assert temp_files(storage) == []


def test_round_trip_with_features_by_name(root: str, engine: Engine, make_writer: Any) -> None:
    writer = make_writer(flush_interval_s=NO_TIMER)
    for i in range(5):
        writer.append(prediction(f"r{i}", ts=T0 + timedelta(seconds=i), features={"x": i}))
    writer.append(prediction("r5", features={"y": 7.0}, prediction=None, status="error"))
    assert writer.flush() == 6
    assert writer.stats().files_written == 1

    lake = open_lake(engine, root)
    con = lake.duckdb()
    got = con.sql(
        "SELECT request_id, features['x'], features['y'], status, error "
        "FROM predictions ORDER BY request_id"
    ).fetchall()
    assert got == [(f"r{i}", float(i), None, "ok", None) for i in range(5)] + [
        ("r5", None, 7.0, "error", "boom")
    ]
    frame = (
        lake.scan("predictions")
        .select("request_id", "ts", x=pl.col("features").map.get("x"))
        .sort("request_id")
        .collect()
    )
    assert frame["x"].to_list() == [0.0, 1.0, 2.0, 3.0, 4.0, None]
    assert frame["ts"][1] == T0 + timedelta(seconds=1)
    assert frame.schema["ts"] == pl.Datetime("us", "UTC")
    con.close()


def test_flushes_when_flush_rows_are_buffered(engine: Engine, make_writer: Any) -> None:
    writer = make_writer(flush_rows=100, flush_interval_s=NO_TIMER)
    for i in range(99):
        writer.append(prediction(f"r{i}"))
    assert writer.stats().files_written == 0
    writer.append(prediction("r99"))
    wait_until(lambda: writer.stats().rows_written == 100, what="a flush by row count")
    assert writer.stats().files_written == 1
    assert sum(f.rows for f in live_files(engine, "predictions")) == 100


def test_flushes_every_interval(engine: Engine, make_writer: Any) -> None:
    writer = make_writer(flush_rows=10_000, flush_interval_s=0.05)
    writer.append(prediction("r1"))
    wait_until(lambda: writer.stats().rows_written == 1, what="a flush by interval")
    writer.append(prediction("r2"))
    wait_until(lambda: writer.stats().files_written == 2, what="a second flush by interval")
    assert [f.rows for f in live_files(engine, "predictions")] == [1, 1]


def test_close_flushes_everything(
    root: str, storage: LakeStorage, engine: Engine, make_writer: Any
) -> None:
    writer = make_writer(table="feedback", flush_interval_s=NO_TIMER)
    for i in range(1234):
        writer.append(feedback(f"r{i}"))
    writer.close()
    assert writer.stats().rows_written == 1234
    assert writer.stats().rows_pending == 0
    assert writer.append(feedback("late")) is False
    assert writer.stats().rows_dropped == 1
    assert_balanced(writer)
    assert open_lake(engine, root).scan("feedback").collect().height == 1234
    assert_manifest_matches_storage(storage, engine)


def test_rows_that_do_not_fit_are_dropped_alone(engine: Engine, make_writer: Any) -> None:
    writer = make_writer(flush_interval_s=NO_TIMER)
    writer.append(prediction("good-1"))
    writer.append(prediction("bad", role="boss"))
    writer.append(feedback("wrong-table"))
    writer.append(prediction("good-2"))
    assert writer.flush() == 2
    assert writer.stats().rows_rejected == writer.stats().rows_dropped == 2
    assert_balanced(writer)
    assert writer.flush() == 0


def test_full_buffer_drops_and_counts(make_writer: Any) -> None:
    writer = make_writer(flush_rows=10, max_buffer_rows=10, flush_interval_s=NO_TIMER)
    writer.close(timeout=0)  # stopped thread: nothing drains the buffer behind our back
    results = [writer.append(prediction(f"r{i}")) for i in range(3)]
    assert results == [False, False, False]
    assert writer.stats().rows_dropped == 3
    assert_balanced(writer)


def test_sink_failure_never_reaches_append_and_recovers(
    root: str, storage: LakeStorage, engine: Engine, make_writer: Any
) -> None:
    writer = make_writer(
        flush_rows=10, flush_interval_s=0.02, max_buffer_rows=50, max_backoff_s=0.05
    )
    writer.append(prediction("before"))
    writer.flush()
    accepted = {"before"}
    with broken_sink(storage, "predictions") as how:
        results = {f"down-{i}": writer.append(prediction(f"down-{i}")) for i in range(200)}
        accepted |= {rid for rid, ok in results.items() if ok}
        # Nothing can be written, so exactly the buffer's capacity was accepted.
        assert len(accepted) == 1 + 50
        assert writer.stats().rows_dropped == 150
        assert writer.stats().rows_pending == 50
        assert_balanced(writer)
        wait_until(lambda: writer.last_error is not None, what="a failed flush")
        assert not writer.healthy
        if how == "bucket deleted":
            assert "NO_SUCH_BUCKET" in str(writer.last_error)
        with pytest.raises(LakeWriteError, match="Could not write 50 predictions rows"):
            writer.flush()
        assert writer.stats().rows_pending == 50
    wait_until(lambda: writer.stats().rows_pending == 0, what="recovery after the sink came back")
    assert writer.healthy
    writer.append(prediction("after"))
    accepted.add("after")
    writer.close()
    s = writer.stats()
    assert (s.rows_appended, s.rows_written, s.rows_dropped, s.rows_pending) == (202, 52, 150, 0)

    frame = open_lake(engine, root).scan("predictions").collect()
    assert frame.height == 52
    assert set(frame["request_id"]) == accepted
    assert_manifest_matches_storage(storage, engine)


def test_manifest_failure_leaves_no_unlisted_file_and_recovers(
    root: str, storage: LakeStorage, engine: Engine, make_writer: Any
) -> None:
    writer = make_writer(
        table="feedback",
        flush_rows=5,
        flush_interval_s=0.02,
        max_buffer_rows=20,
        max_backoff_s=0.05,
    )
    writer.append(feedback("before"))
    writer.flush()
    before = part_files(storage)
    with broken_manifest(engine):
        for i in range(30):
            writer.append(feedback(f"down-{i}"))
        wait_until(lambda: writer.last_error is not None, what="a failed registration")
        assert "lake_files" in str(writer.last_error)
        assert writer.stats().rows_dropped == 10
        assert writer.stats().rows_pending == 20
        assert_balanced(writer)
        # Each attempt's file is deleted when its registration fails.
        wait_until(lambda: part_files(storage) == before, what="the unregistered file to go")
        assert writer.stats().files_written == 1
    wait_until(
        lambda: writer.stats().rows_pending == 0, what="recovery after the manifest came back"
    )
    writer.close()
    assert (writer.stats().rows_written, writer.stats().rows_dropped) == (21, 10)
    assert_balanced(writer)
    frame = open_lake(engine, root).scan("feedback").collect()
    assert set(frame["request_id"]) == {"before"} | {f"down-{i}" for i in range(20)}
    assert_manifest_matches_storage(storage, engine)


def test_close_gives_up_after_its_timeout_and_counts_the_rest(
    storage: LakeStorage, engine: Engine, make_writer: Any
) -> None:
    writer = make_writer(flush_interval_s=NO_TIMER, max_backoff_s=0.05)
    writer.append(prediction("kept"))
    writer.flush()
    with broken_sink(storage, "predictions"):
        for i in range(7):
            writer.append(prediction(f"lost-{i}"))
        writer.close(timeout=0.2)
    s = writer.stats()
    assert (s.rows_written, s.rows_dropped, s.rows_pending) == (1, 7, 0)
    assert_balanced(writer)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"table": "allocations"}, "Table 'allocations' is not a lake table"),
        ({"writer_id": "a/b"}, "Writer id 'a/b' must be 1 to 64"),
        ({"flush_rows": 0}, "flush_rows must be at least 1, but is 0."),
        ({"flush_interval_s": 0}, "flush_interval_s must be positive, but is 0."),
        ({"flush_rows": 10, "max_buffer_rows": 5}, r"max_buffer_rows \(5\) must be at least"),
    ],
)
def test_invalid_options(root: str, options: Any, message: str) -> None:
    options.setdefault("table", "predictions")
    with pytest.raises(LakeConfigError, match=message):
        LakeWriter(root, create_engine("sqlite://"), **options)
