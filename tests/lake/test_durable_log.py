"""The durable log on its own: group commit, replay exactly once, torn tails, locking."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from lake import LakeWriter, open_lake
from lake.durable import DurableLog, LogFullError, LogInUseError, open_slot
from tests.lake.lake_support import T0, feedback, prediction

NO_TIMER = 3600.0


@pytest.fixture
def made() -> Iterator[list[Any]]:
    """Writers and logs to close at the end, in reverse order of making."""
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        if isinstance(thing, LakeWriter):
            thing.close(timeout=5)
        else:
            thing.close()


def _pair(
    root: str, engine: Engine, directory: Path, made: list[Any], *, table: str = "predictions"
) -> tuple[LakeWriter, DurableLog]:
    writer = LakeWriter(root, engine, table=table, flush_interval_s=NO_TIMER)  # type: ignore[arg-type]
    made.append(writer)
    log = DurableLog(directory, writer, max_bytes=1 << 30, wait_s=10.0)
    made.append(log)
    return writer, log


def _ids(root: str, engine: Engine, table: str = "predictions") -> Counter[str]:
    with open_lake(engine, root) as lake:
        rows = lake.duckdb().execute(f"select request_id from {table}").fetchall()
    return Counter(r[0] for r in rows)


async def _record(log: DurableLog, rows: list[Any]) -> None:
    log.start()
    await asyncio.gather(*(log.record([row]) for row in rows))


def _rows(n: int, prefix: str = "r") -> list[Any]:
    return [prediction(f"{prefix}{i}", ts=T0 + timedelta(microseconds=i)) for i in range(n)]


def test_concurrent_requests_share_fsyncs_and_every_row_reaches_the_lake(
    root: str, engine: Engine, tmp_path: Path, made: list[Any]
) -> None:
    writer, log = _pair(root, engine, tmp_path / "log", made)
    rows = _rows(300)
    asyncio.run(_record(log, rows))
    # Every record() returned, so every row is on disk and in the writer's hands.
    assert writer.stats().rows_pending == 300
    assert 1 <= log.fsyncs < 300, log.fsyncs
    assert log.backlog_bytes > 0
    log.stop()
    assert writer.flush() == 300
    assert _ids(root, engine) == Counter(r.request_id for r in rows)
    # Published: the sealed segments are deleted (a stopped log opens no new one).
    assert sorted((tmp_path / "log").glob("segment-*.log")) == []
    assert log.backlog_bytes == 0


def _crash(writer: LakeWriter, log: DurableLog, made: list[Any]) -> None:
    """Leave the files as a SIGKILL would: no flush, no clean close."""
    log.stop()
    made.remove(log)
    made.remove(writer)
    # A crash loses the memory buffer, and nothing of the writer runs any more.
    writer._log = None
    writer._rows.drop_pending()
    writer.close(timeout=1)
    log.close()


def test_a_restart_replays_the_rows_left_in_the_log_exactly_once(
    root: str, engine: Engine, tmp_path: Path, made: list[Any]
) -> None:
    directory = tmp_path / "log"
    writer, log = _pair(root, engine, directory, made)
    first = _rows(50, "a")
    asyncio.run(_record(log, first))
    _crash(writer, log, made)
    assert _ids(root, engine) == Counter()

    writer, log = _pair(root, engine, directory, made)
    result = log.replay(writer.storage, engine)
    assert (result.rows_found, result.rows_published, result.rows_replayed) == (50, 0, 50)
    assert result.torn_bytes == 0
    assert writer.flush() == 50
    assert _ids(root, engine) == Counter(r.request_id for r in first)


def test_rows_published_before_the_crash_are_not_written_twice(
    root: str, engine: Engine, tmp_path: Path, made: list[Any]
) -> None:
    directory = tmp_path / "log"
    writer, log = _pair(root, engine, directory, made)
    rows = _rows(40)
    asyncio.run(_record(log, rows))
    log.stop()
    # A crash after the file was registered, before its segments were deleted: keep a
    # copy of the segments from before the flush and put it back afterwards.
    saved = tmp_path / "saved"
    shutil.copytree(directory, saved)
    assert writer.flush() == 40
    made.remove(log)
    made.remove(writer)
    writer.close(timeout=1)
    log.close()
    shutil.rmtree(directory)
    shutil.copytree(saved, directory)

    writer, log = _pair(root, engine, directory, made)
    result = log.replay(writer.storage, engine)
    assert (result.rows_found, result.rows_published, result.rows_replayed) == (40, 40, 0)
    assert _ids(root, engine) == Counter(r.request_id for r in rows)
    # Nothing to replay: the old segments are deleted at once.
    assert [p.stat().st_size for p in directory.glob("segment-*.log")] == [7]


def test_feedback_rows_are_recognised_by_request_id_and_time(
    root: str, engine: Engine, tmp_path: Path, made: list[Any]
) -> None:
    directory = tmp_path / "log"
    writer, log = _pair(root, engine, directory, made, table="feedback")
    # The same request id twice, at two times: two rows, both kept.
    rows = [feedback("r1"), feedback("r1", ts=T0 + timedelta(seconds=1)), feedback("r2")]
    asyncio.run(_record(log, rows))
    _crash(writer, log, made)
    writer, log = _pair(root, engine, directory, made, table="feedback")
    assert log.replay(writer.storage, engine).rows_replayed == 3
    assert writer.flush() == 3
    assert _ids(root, engine, "feedback") == Counter({"r1": 2, "r2": 1})


def test_a_record_cut_short_by_a_crash_ends_the_segment(
    root: str, engine: Engine, tmp_path: Path, made: list[Any]
) -> None:
    directory = tmp_path / "log"
    writer, log = _pair(root, engine, directory, made)
    asyncio.run(_record(log, _rows(10)))
    _crash(writer, log, made)
    (segment,) = [p for p in directory.glob("segment-*.log") if p.stat().st_size > 7]
    data = segment.read_bytes()
    # The last record loses its final bytes (a write the crash interrupted)...
    segment.write_bytes(data[:-5])
    writer, log = _pair(root, engine, directory, made)
    result = log.replay(writer.storage, engine)
    assert result.rows_replayed == 9
    assert result.torn_bytes > 0
    assert writer.flush() == 9


def test_a_corrupted_record_is_not_replayed(
    root: str, engine: Engine, tmp_path: Path, made: list[Any]
) -> None:
    directory = tmp_path / "log"
    writer, log = _pair(root, engine, directory, made)
    asyncio.run(_record(log, _rows(3)))
    _crash(writer, log, made)
    (segment,) = [p for p in directory.glob("segment-*.log") if p.stat().st_size > 7]
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF  # a flipped bit in the last record: its checksum fails
    segment.write_bytes(bytes(data))
    writer, log = _pair(root, engine, directory, made)
    assert log.replay(writer.storage, engine).rows_replayed == 2


def test_one_live_process_per_log_directory_and_slots_for_workers(
    root: str, engine: Engine, tmp_path: Path, made: list[Any]
) -> None:
    directory = tmp_path / "log"
    writer, _ = _pair(root, engine, directory, made)
    with pytest.raises(LogInUseError, match="in use by another live process"):
        DurableLog(directory, writer, max_bytes=1, wait_s=1.0)
    first = open_slot(tmp_path / "slots", writer, max_bytes=1, wait_s=1.0)
    made.append(first)
    second = open_slot(tmp_path / "slots", writer, max_bytes=1, wait_s=1.0)
    made.append(second)
    assert (first.directory.name, second.directory.name) == ("slot-0", "slot-1")


def test_a_log_over_its_bound_refuses_new_requests(
    root: str, engine: Engine, tmp_path: Path, made: list[Any]
) -> None:
    writer = LakeWriter(root, engine, table="predictions", flush_interval_s=NO_TIMER)
    made.append(writer)
    log = DurableLog(tmp_path / "log", writer, max_bytes=2000, wait_s=10.0)
    made.append(log)
    log.check_room()
    asyncio.run(_record(log, _rows(30)))
    with pytest.raises(LogFullError, match="over its bound of 2,000"):
        log.check_room()
    log.stop()
    writer.flush()
    log.check_room()  # published and deleted: room again


def test_rows_a_closing_writer_could_not_write_stay_pending_in_the_log_not_dropped(
    engine: Engine, tmp_path: Path, made: list[Any]
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    directory = tmp_path / "log"
    writer, log = _pair(str(blocker / "lake"), engine, directory, made)  # unwritable
    rows = _rows(20)
    asyncio.run(_record(log, rows))
    log.stop()
    writer.close(timeout=0.2)
    stats = writer.stats()
    # Kept in the log for the next start, so not counted as lost.
    assert (stats.rows_dropped, stats.rows_pending, stats.rows_written) == (0, 20, 0)
    log.close()
    made.clear()

    lake = tmp_path / "lake"
    writer, log = _pair(str(lake), engine, directory, made)
    assert log.replay(writer.storage, engine).rows_replayed == 20
    assert writer.flush() == 20
    assert _ids(str(lake), engine) == Counter(r.request_id for r in rows)
