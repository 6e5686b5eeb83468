"""Helpers of the compaction tests (import ``engine_fixture``, ``storage_fixture`` and
``s3_server`` into a test module to use the fixtures ``engine`` and ``storage``): a manifest with the compaction tables, a lake on a
local directory or on the moto S3 server, rows written by real ``LakeWriter``s, and the
counts and sums every reader must agree on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from sqlalchemy import Engine, create_engine, select

from lake.compaction import delta_storage_options, delta_uri
from lake.manifest import COMPACTION_WRITER_ID, lake_compactions, live_files, metadata
from lake.reader import open_lake
from lake.storage import LakeStorage, open_storage
from lake.writer import LakeWriter
from tests.lake.lake_support import T0, feedback, prediction
from tests.s3_server import S3Server

TABLE_NAMES = ("lake_files", "lake_compactions", "lake_checkpoints")


@pytest.fixture(name="engine")
def engine_fixture(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    metadata.create_all(engine, tables=[metadata.tables[name] for name in TABLE_NAMES])
    yield engine
    engine.dispose()


@pytest.fixture(name="storage", params=["local", "s3"])
def storage_fixture(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> LakeStorage:
    if request.param == "local":
        return open_storage(tmp_path / "lake")
    server: S3Server = request.getfixturevalue("s3_server")
    for name, value in server.environment().items():
        monkeypatch.setenv(name, value)
    return open_storage(f"s3://{server.create_bucket()}/lake")


def write_lake(
    storage: LakeStorage, engine: Engine, *, files: int = 8, rows: int = 20, start: int = 0
) -> int:
    """Write ``files`` prediction files of ``rows`` rows and a feedback file per two.

    Rows are 10 minutes apart from ``T0`` (noon), so 160 of them run past midnight: one
    file spans two dates. Returns the predictions written.
    """
    preds = LakeWriter(storage, engine, table="predictions", flush_interval_s=3600)
    fbs = LakeWriter(storage, engine, table="feedback", flush_interval_s=3600)
    try:
        for f in range(files):
            for i in range(rows):
                k = start + f * rows + i
                ts = T0 + timedelta(minutes=10 * k)
                preds.append(
                    prediction(f"r{k}", ts=ts, variant="ab"[k % 2], prediction=float(k % 7))
                )
                if k % 3 == 0:
                    fbs.append(feedback(f"r{k}", ts=ts + timedelta(minutes=1), reward=k % 5))
            assert preds.flush() == rows
            if f % 2 == 1:
                fbs.flush()
        fbs.flush()
    finally:
        preds.close()
        fbs.close()
    return files * rows


def totals(engine: Engine, storage: LakeStorage) -> dict[str, object]:
    """Counts and per-variant sums through ``open_lake`` (one manifest snapshot)."""
    with open_lake(engine, storage) as lake:
        con = lake.duckdb()
        try:
            return {
                "predictions": con.sql(
                    "SELECT variant, count(*), sum(prediction), count(DISTINCT request_id) "
                    "FROM predictions GROUP BY ALL ORDER BY variant"
                ).fetchall(),
                "feedback": con.sql("SELECT count(*), sum(reward) FROM feedback").fetchall(),
                "decisions": con.sql(
                    "SELECT variant, count(reward), sum(reward) FROM decisions "
                    "GROUP BY ALL ORDER BY variant"
                ).fetchall(),
            }
        finally:
            con.close()


def delta_table(storage: LakeStorage, table: str) -> pa.Table:
    return DeltaTable(
        delta_uri(storage, table), storage_options=delta_storage_options(storage)
    ).to_pyarrow_table()


def compacted_ids(engine: Engine, storage: LakeStorage, table: str) -> list[str]:
    """Request ids of the rows in the live compacted files, sorted."""
    ids: list[str] = []
    for entry in live_files(engine, table):
        if entry.writer_id == COMPACTION_WRITER_ID:
            ids += storage.read_table(entry.path, columns=["request_id"])["request_id"].to_pylist()
    return sorted(ids)


def all_ids(engine: Engine, storage: LakeStorage, table: str) -> list[str]:
    ids: list[str] = []
    for entry in live_files(engine, table):
        ids += storage.read_table(entry.path, columns=["request_id"])["request_id"].to_pylist()
    return sorted(ids)


def delta_ids(storage: LakeStorage, table: str) -> list[str]:
    """Request ids of the Delta table's rows, sorted (none before it exists)."""
    try:
        rows = delta_table(storage, table)
    except TableNotFoundError:
        return []
    return sorted(rows["request_id"].to_pylist())


def assert_delta_matches_manifest(engine: Engine, storage: LakeStorage) -> None:
    """Delta holds exactly the rows of the live compacted files, and no other file."""
    for table in ("predictions", "feedback"):
        assert delta_ids(storage, table) == compacted_ids(engine, storage, table)
        on_storage = {
            f.path
            for f in storage.list_files(f"delta/{table}")
            if f.path.endswith(".parquet") and "/_delta_log/" not in f.path
        }
        live = {e.path for e in live_files(engine, table) if e.writer_id == COMPACTION_WRITER_ID}
        assert on_storage == live


def compaction_statuses(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [s for (s,) in conn.execute(select(lake_compactions.c.status))]
