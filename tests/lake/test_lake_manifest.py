from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import BigInteger, DateTime, Engine, Integer, String, inspect
from sqlalchemy.exc import IntegrityError

from lake import NAMING_CONVENTION, FileEntry, files_since, lake_files, live_files, metadata
from lake import register_file as register
from lake.errors import LakeConfigError
from lake.manifest import (
    COMPACTION_WRITER_ID,
    is_compaction_output,
    is_registered,
    register_compaction,
)


def entry(path: str, table: str = "predictions", **changes: object) -> FileEntry:
    values: dict[str, object] = {
        "table": table,
        "path": path,
        "rows": 10,
        "bytes": 1234,
        "writer_id": "w-1",
        "min_ts": datetime(2025, 1, 1, 10, tzinfo=UTC),
        "max_ts": datetime(2025, 1, 1, 11, tzinfo=UTC),
        "created_at": datetime(2025, 1, 1, 11, 5, tzinfo=UTC),
    }
    values.update(changes)
    return FileEntry(**values)  # type: ignore[arg-type]


def test_table_definition_is_exactly_as_specified() -> None:
    assert lake_files.metadata is metadata
    assert metadata.naming_convention == NAMING_CONVENTION
    expected = {
        "id": (Integer, False),
        "table_name": (String, False),
        "path": (String, False),
        "rows": (BigInteger, False),
        "bytes": (BigInteger, False),
        "writer_id": (String, False),
        "min_ts": (DateTime, True),
        "max_ts": (DateTime, True),
        "status": (String, False),
        "created_at": (DateTime, False),
        "replaced_at": (DateTime, True),
        "replaced_by": (Integer, True),
    }
    assert list(lake_files.c.keys()) == list(expected)
    for name, (type_, nullable) in expected.items():
        column = lake_files.c[name]
        assert isinstance(column.type, type_), name
        assert column.nullable is nullable, name
        if isinstance(column.type, DateTime):
            assert column.type.timezone, name
    lengths = {"table_name": 32, "path": 1024, "writer_id": 64, "status": 16}
    for name, length in lengths.items():
        assert lake_files.c[name].type.length == length  # type: ignore[attr-defined]
    assert lake_files.c.id.primary_key
    assert lake_files.c.path.unique
    assert lake_files.c.status.server_default.arg == "live"  # type: ignore[union-attr]
    [index] = lake_files.indexes
    assert [c.name for c in index.columns] == ["table_name", "status", "id"]


def test_constraint_names_follow_the_convention(engine: Engine) -> None:
    inspector = inspect(engine)
    assert inspector.get_pk_constraint("lake_files")["name"] == "pk_lake_files"
    assert [u["name"] for u in inspector.get_unique_constraints("lake_files")] == [
        "uq_lake_files_path"
    ]
    # PostgreSQL also reports the unique constraint's own index; it is not ours.
    indexes = [i for i in inspector.get_indexes("lake_files") if "duplicates_constraint" not in i]
    assert [i["name"] for i in indexes] == ["ix_lake_files_table_name_status_id"]


def test_register_and_list_round_trip(engine: Engine) -> None:
    first = register(engine, entry("predictions/a.parquet"))
    second = register(engine, entry("predictions/b.parquet", min_ts=None, max_ts=None))
    register(engine, entry("feedback/c.parquet", table="feedback"))
    assert second > first
    files = live_files(engine, "predictions")
    assert [f.path for f in files] == ["predictions/a.parquet", "predictions/b.parquet"]
    assert files[0] == entry("predictions/a.parquet", id=first)
    assert files[1].min_ts is None
    assert [f.path for f in live_files(engine, "feedback")] == ["feedback/c.parquet"]


def test_times_come_back_as_aware_utc(engine: Engine) -> None:
    local = datetime(2025, 1, 1, 12, tzinfo=timezone(timedelta(hours=-5)))
    register(engine, entry("p.parquet", min_ts=local, created_at=local))
    [got] = live_files(engine, "predictions")
    assert got.min_ts == local
    assert got.min_ts is not None and got.min_ts.tzinfo == UTC
    assert got.created_at.tzinfo == UTC


def test_a_path_is_registered_once(engine: Engine) -> None:
    register(engine, entry("p.parquet"))
    with pytest.raises(IntegrityError):
        register(engine, entry("p.parquet"))
    assert is_registered(engine, "p.parquet")
    assert not is_registered(engine, "q.parquet")


def test_replaced_files_are_not_live_but_are_in_files_since(engine: Engine) -> None:
    a = register(engine, entry("a.parquet"))
    b = register(
        engine,
        entry("b.parquet", status="replaced", replaced_at=datetime(2025, 1, 2, tzinfo=UTC)),
    )
    c = register(engine, entry("c.parquet"))
    assert [f.id for f in live_files(engine, "predictions")] == [a, c]
    assert [f.id for f in files_since(engine, "predictions", 0)] == [a, b, c]
    assert [f.id for f in files_since(engine, "predictions", a)] == [b, c]
    assert files_since(engine, "predictions", c) == []
    assert files_since(engine, "feedback", 0) == []


def test_a_compaction_replaces_its_inputs_in_one_transaction(engine: Engine) -> None:
    a = register(engine, entry("a.parquet"))
    b = register(engine, entry("b.parquet"))
    other = register(engine, entry("f.parquet", table="feedback"))
    with pytest.raises(LakeConfigError) as caught:
        register_compaction(engine, entry("bad.parquet"), [a, other])
    assert str(caught.value) == (
        f"A compaction can only replace live files of 'predictions', but some of the files "
        f"{[a, other]!r} are not."
    )
    assert [f.id for f in live_files(engine, "predictions")] == [a, b]
    assert not is_registered(engine, "bad.parquet")
    c = register_compaction(
        engine, entry("c.parquet", rows=20), [b, a], at=datetime(2025, 1, 2, tzinfo=UTC)
    )
    assert c > b
    listed = {f.id: f for f in files_since(engine, "predictions", 0)}
    assert [f.id for f in live_files(engine, "predictions")] == [c]
    assert is_compaction_output(listed[c]) and listed[c].writer_id == COMPACTION_WRITER_ID
    assert not any(is_compaction_output(listed[i]) for i in (a, b))
    assert {listed[i].status for i in (a, b)} == {"replaced"}
    assert listed[a].replaced_at == datetime(2025, 1, 2, tzinfo=UTC)
    with pytest.raises(LakeConfigError, match="but some of the files"):
        register_compaction(engine, entry("again.parquet"), [a])
    with pytest.raises(LakeConfigError, match="at least one file"):
        register_compaction(engine, entry("none.parquet"), [])
