from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from sqlalchemy import Engine

from lake import Lake, LakeConfigError, LakeWriter, open_lake
from lake.storage import LakeStorage
from tests.lake.lake_support import T0, feedback, prediction

VIEWS = ("predictions", "feedback", "decisions")


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    # The manifest is covered on PostgreSQL by the manifest and writer tests; SQLite only here.
    return sqlite_url


def write(root: str, engine: Engine, table: str, rows: list[tuple[object, ...]]) -> None:
    writer = LakeWriter(root, engine, table=table, flush_interval_s=3600)  # type: ignore[arg-type]
    for row in rows:
        writer.append(row)  # type: ignore[arg-type]
    writer.close()
    assert writer.stats().rows_written == len(rows)


def describe(lake: Lake) -> dict[str, list[tuple[str, str]]]:
    con = lake.duckdb()
    try:
        return {
            view: [(r[0], r[1]) for r in con.sql(f"DESCRIBE {view}").fetchall()] for view in VIEWS
        }
    finally:
        con.close()


def polars_schemas(lake: Lake) -> dict[str, pl.Schema]:
    return {view: lake.scan(view).collect_schema() for view in VIEWS}  # type: ignore[arg-type]


def test_empty_lake_has_views_with_the_real_columns(root: str, engine: Engine) -> None:
    empty = open_lake(engine, root)
    empty_columns = describe(empty)
    empty_schemas = polars_schemas(empty)
    con = empty.duckdb()
    assert con.sql("SELECT count(*) FROM decisions").fetchall() == [(0,)]
    con.close()
    for view in VIEWS:
        assert empty.scan(view).collect().height == 0  # type: ignore[arg-type]

    write(root, engine, "predictions", [prediction("r1")])
    write(root, engine, "feedback", [feedback("r1")])
    full = open_lake(engine, root)
    assert describe(full) == empty_columns
    assert polars_schemas(full) == empty_schemas
    assert [c for c, _ in empty_columns["decisions"]][-3:] == ["feedback_ts", "reward", "label"]
    assert dict(empty_columns["predictions"])["features"] == "MAP(VARCHAR, DOUBLE)"


def test_decisions_count_feedback_once_and_keep_pending_null(root: str, engine: Engine) -> None:
    t = T0
    write(
        root,
        engine,
        "predictions",
        [
            prediction("r1"),
            prediction("r1", variant="s", role="shadow"),
            prediction("r2"),
            prediction("r3"),
        ],
    )
    write(
        root,
        engine,
        "feedback",
        [
            feedback("r1", ts=t + timedelta(seconds=2), reward=0.0, key="second"),
            feedback("r1", ts=t + timedelta(seconds=1), reward=1.0, key="first"),
            # The same delivery retried: same key, later.
            feedback("r1", ts=t + timedelta(seconds=3), reward=1.0, key="first"),
            feedback("r2", ts=t + timedelta(seconds=1), reward=None, label="cat"),
        ],
    )
    lake = open_lake(engine, root)
    expected = [
        ("r1", "arm", 1.0, None, True),
        ("r1", "shadow", 1.0, None, True),
        ("r2", "arm", None, "cat", True),
        ("r3", "arm", None, None, False),
    ]
    con = lake.duckdb()
    got = con.sql(
        "SELECT request_id, role, reward, label, feedback_ts IS NOT NULL FROM decisions "
        "ORDER BY request_id, role"
    ).fetchall()
    assert got == expected
    assert con.sql("SELECT sum(reward), count(reward) FROM decisions").fetchall() == [(2.0, 2)]
    con.close()

    frame = (
        lake.scan("decisions")
        .select(
            "request_id", "role", "reward", "label", pl.col("feedback_ts").is_not_null().alias("f")
        )
        .sort("request_id", "role")
        .collect()
    )
    assert frame.rows() == expected


def test_lookback_leaves_late_feedback_out(root: str, engine: Engine) -> None:
    write(root, engine, "predictions", [prediction("on-time"), prediction("late")])
    write(
        root,
        engine,
        "feedback",
        [
            feedback("on-time", ts=T0 + timedelta(minutes=59)),
            feedback("late", ts=T0 + timedelta(minutes=61)),
        ],
    )
    lake = open_lake(engine, root, lookback=timedelta(hours=1))
    con = lake.duckdb()
    sql = "SELECT request_id, reward FROM decisions ORDER BY request_id"
    assert con.sql(sql).fetchall() == [("late", None), ("on-time", 1.0)]
    con.close()
    frame = lake.scan("decisions").select("request_id", "reward").sort("request_id").collect()
    assert frame.rows() == [("late", None), ("on-time", 1.0)]
    with pytest.raises(LakeConfigError, match="must not be negative"):
        open_lake(engine, root, lookback=timedelta(seconds=-1))


def test_snapshot_changes_only_on_refresh(root: str, engine: Engine) -> None:
    # Feedback may be flushed before its prediction: the join happens at read time.
    write(root, engine, "feedback", [feedback("r1", reward=0.5)])
    lake = open_lake(engine, root)
    frame = lake.scan("decisions")
    write(root, engine, "predictions", [prediction("r1")])
    assert frame.collect().height == 0
    lake.refresh()
    assert lake.scan("decisions").select("reward").collect().item() == 0.5
    assert len(lake.files("predictions")) == 1
    assert lake.paths("predictions")[0].startswith(str(root))


def test_views_read_only_listed_files(root: str, storage: LakeStorage, engine: Engine) -> None:
    write(root, engine, "predictions", [prediction("listed")])
    stray = "predictions/dt=2025-03-01/hour=12/part-intruder-00000001.parquet"
    storage.write_bytes(stray, b"not even parquet")
    assert storage.exists(stray)
    lake = open_lake(engine, root)
    con = lake.duckdb()
    assert con.sql("SELECT request_id FROM predictions").fetchall() == [("listed",)]
    con.close()
    assert lake.scan("predictions").select("request_id").collect().rows() == [("listed",)]


def test_a_listed_file_missing_in_storage(root: str, storage: LakeStorage, engine: Engine) -> None:
    write(root, engine, "predictions", [prediction("gone")])
    write(root, engine, "predictions", [prediction("here")])
    lake = open_lake(engine, root)
    gone = lake.files("predictions")[0].path
    assert storage.delete(gone)
    assert not storage.exists(gone)
    lake.refresh()
    if storage.is_local:
        # A directory is checked file by file at refresh: the lost file is left out.
        assert lake.scan("predictions").select("request_id").collect().rows() == [("here",)]
        con = lake.duckdb()
        assert con.sql("SELECT request_id FROM predictions").fetchall() == [("here",)]
        con.close()
    else:
        # Object storage is not probed per file (a request each): reading names the file.
        assert len(lake.files("predictions")) == 2
        with pytest.raises(FileNotFoundError, match=gone.rsplit("/", 1)[-1]):
            lake.scan("predictions").select("request_id").collect()
        with pytest.raises(FileNotFoundError, match=gone.rsplit("/", 1)[-1]):
            lake.duckdb()


def test_open_lake_from_a_url(root: str, engine: Engine, database_url: str) -> None:
    write(root, engine, "predictions", [prediction("r1")])
    with open_lake(database_url, root) as lake:
        assert lake.scan("predictions").collect().height == 1


def test_unknown_table(root: str, engine: Engine) -> None:
    lake = open_lake(engine, root)
    with pytest.raises(LakeConfigError, match="Relation 'allocations' is not in the lake"):
        lake.scan("allocations")  # type: ignore[arg-type]
    with pytest.raises(LakeConfigError, match=r"expected one of \['predictions', 'feedback'\]"):
        lake.files("decisions")  # type: ignore[arg-type]
