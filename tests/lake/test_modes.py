"""The predictions table's ``mode`` column: files and log records from before it existed
read as ``"online"`` everywhere, and batch rows stay out of the bandit statistics unless
their experiment opts in."""

from __future__ import annotations

import asyncio
import pickle
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from sqlalchemy import Engine, create_engine

from lake import LakeWriter, PredictionRow, open_lake
from lake.aggregates import LakeAggregator
from lake.arrow_rows import rows_to_table
from lake.compaction import compact, delta_schema, delta_storage_options, delta_uri
from lake.durable import _HEADER, _MAGIC, DurableLog, _read_segment
from lake.manifest import metadata
from lake.publish import FilePublisher
from lake.rewards import RewardRule
from lake.storage import LakeStorage, open_storage
from tests.lake.lake_support import T0, feedback, prediction

RULES = {"exp": RewardRule("continuous")}


def _publish(storage: LakeStorage, engine: Engine, rows: list[PredictionRow], *, old: bool) -> None:
    """One predictions file; ``old``: as written before the ``mode`` column existed."""
    table = rows_to_table(rows, "predictions", "w1")
    if old:
        table = table.drop_columns(["mode"])
    FilePublisher(storage, engine, table="predictions", writer_id="w1", compression="zstd").publish(
        table
    )


def _rows(prefix: str, n: int, mode: str = "online", start: int = 0) -> list[PredictionRow]:
    return [
        prediction(f"{prefix}{i}", ts=T0 + timedelta(seconds=start + i))._replace(mode=mode)  # type: ignore[arg-type]
        for i in range(n)
    ]


@pytest.mark.parametrize("old_first", [True, False])
def test_files_without_mode_read_as_online_beside_newer_ones(
    engine: Engine, root: str, old_first: bool
) -> None:
    storage = open_storage(root)
    old, new = _rows("o", 3), _rows("b", 2, "batch", start=10)
    for rows, is_old in ((old, True), (new, False)) if old_first else ((new, False), (old, True)):
        _publish(storage, engine, rows, old=is_old)
    with open_lake(engine, root) as lake:
        con = lake.duckdb()
        found = dict(con.execute("SELECT request_id, mode FROM predictions").fetchall())
        columns = [d[0] for d in con.execute("SELECT * FROM predictions LIMIT 0").description]
        frame = lake.scan("predictions").select("request_id", "mode").collect()
        decisions = lake.scan("decisions").select("request_id", "mode").collect()
    expected = {"o0": "online", "o1": "online", "o2": "online", "b0": "batch", "b1": "batch"}
    assert found == expected
    assert columns[-2:] == ["mode", "writer_id"]
    assert dict(frame.iter_rows()) == expected
    assert dict(decisions.iter_rows()) == expected


def test_a_lake_of_only_old_files_reads_as_online(engine: Engine, tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "lake")
    _publish(storage, engine, _rows("o", 4), old=True)
    with open_lake(engine, storage) as lake:
        modes = lake.duckdb().execute("SELECT mode, count(*) FROM predictions GROUP BY 1")
        assert modes.fetchall() == [("online", 4)]
        assert lake.scan("predictions").select("mode").collect()["mode"].to_list() == ["online"] * 4


def _served(aggregator: LakeAggregator) -> dict[int, dict[str, int]]:
    return aggregator.served_by_version("exp")


def test_batch_rows_stay_out_of_the_statistics_unless_the_experiment_opts_in(
    engine: Engine, tmp_path: Path
) -> None:
    storage = open_storage(tmp_path / "lake")
    _publish(storage, engine, _rows("o", 3), old=True)
    _publish(storage, engine, _rows("s", 2, "stream", start=20), old=False)
    _publish(storage, engine, _rows("b", 5, "batch", start=40), old=False)
    fbs = LakeWriter(storage, engine, table="feedback", flush_interval_s=3600)
    for rid in ("o0", "s0", "b0", "b1"):
        fbs.append(feedback(rid, ts=T0 + timedelta(minutes=2), reward=1.0))
    fbs.close()
    lookback = timedelta(hours=1)

    online = LakeAggregator(engine, storage, lookback=lookback)
    assert online.update(RULES) == 14  # every row read, batch ones too
    assert _served(online) == {3: {"a": 5}}
    (view,) = online.variants("exp", [("a", "arm")])
    assert view.rewards.n == 2  # o0 and s0: the batch rows' feedback counts nothing

    learning = LakeAggregator(engine, storage, lookback=lookback)
    learning.update(RULES, learn_from_batch=["exp"])
    assert _served(learning) == {3: {"a": 10}}
    (view,) = learning.variants("exp", [("a", "arm")])
    assert view.rewards.n == 4

    other = LakeAggregator(engine, storage, lookback=lookback)
    other.update(RULES, learn_from_batch=["another"])
    assert _served(other) == {3: {"a": 5}}


@pytest.fixture
def compaction_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    names = ("lake_files", "lake_compactions", "lake_checkpoints")
    metadata.create_all(engine, tables=[metadata.tables[n] for n in names])
    yield engine
    engine.dispose()


def test_compaction_fills_mode_in_and_adds_it_to_an_older_delta_table(
    compaction_engine: Engine, tmp_path: Path
) -> None:
    engine = compaction_engine
    storage = open_storage(tmp_path / "lake")
    # A Delta table created before the mode column existed.
    old_schema = delta_schema("predictions").remove(
        delta_schema("predictions").get_field_index("mode")
    )
    DeltaTable.create(delta_uri(storage, "predictions"), old_schema, partition_by=["dt"])
    _publish(storage, engine, _rows("o", 3), old=True)
    _publish(storage, engine, _rows("b", 2, "batch", start=10), old=False)
    summary = compact(engine, storage, min_age=timedelta(0), tables=("predictions",))
    assert summary.compactions >= 1
    with open_lake(engine, storage) as lake:
        rows = lake.duckdb().execute("SELECT request_id, mode FROM predictions").fetchall()
    assert dict(rows) == {
        "o0": "online",
        "o1": "online",
        "o2": "online",
        "b0": "batch",
        "b1": "batch",
    }
    delta = pl.read_delta(
        delta_uri(storage, "predictions"), storage_options=delta_storage_options(storage)
    )
    assert dict(delta.select("request_id", "mode").iter_rows()) == dict(rows)


def test_the_durable_log_replays_records_written_before_mode_as_online(
    engine: Engine, tmp_path: Path
) -> None:
    root = str(tmp_path / "lake")
    directory = tmp_path / "log"
    writer = LakeWriter(root, engine, table="predictions", flush_interval_s=3600)
    log = DurableLog(directory, writer, max_bytes=1 << 30, wait_s=10.0)

    async def record() -> None:
        log.start()
        await asyncio.gather(*(log.record([row]) for row in _rows("r", 5)))

    asyncio.run(record())
    log.stop()
    # A crash: nothing flushed, the segments stay.
    writer._log = None
    writer._rows.drop_pending()
    writer.close(timeout=1)
    log.close()
    # Rewrite every record as the release before mode pickled it: one field shorter.
    for segment in sorted(directory.glob("segment-*.log")):
        records, _ = _read_segment(segment)
        data = bytearray(_MAGIC)
        for fields in records:
            assert fields[-1] == "online"
            payload = pickle.dumps(fields[:-1], protocol=5)
            data += _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        segment.write_bytes(bytes(data))

    writer = LakeWriter(root, engine, table="predictions", flush_interval_s=3600)
    log = DurableLog(directory, writer, max_bytes=1 << 30, wait_s=10.0)
    try:
        result = log.replay(writer.storage, engine)
        assert result.rows_replayed == 5
        assert writer.flush() == 5
    finally:
        log.close()
        writer.close(timeout=5)
    with open_lake(engine, root) as lake:
        found = lake.duckdb().execute("SELECT request_id, mode FROM predictions").fetchall()
    assert sorted(found) == [(f"r{i}", "online") for i in range(5)]


def test_a_mode_outside_its_values_is_rejected() -> None:
    row = prediction("x")._replace(mode="nightly")
    with pytest.raises(Exception, match="mode"):
        rows_to_table([row], "predictions", "w1")
    assert pa.types.is_string(rows_to_table([prediction("y")], "predictions", "w1")["mode"].type)
