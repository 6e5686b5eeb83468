from __future__ import annotations

import multiprocessing

import pytest
from sqlalchemy import Engine

from lake import live_files, open_lake
from tests.lake.lake_support import write_rows_in_process

ROWS_PER_PROCESS = 2000


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    # The manifest is covered on PostgreSQL by the manifest and writer tests; SQLite only here.
    return sqlite_url


def test_two_processes_write_one_lake(root: str, engine: Engine, database_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=write_rows_in_process,
            args=(database_url, root, prefix, ROWS_PER_PROCESS),
        )
        for prefix in ("left", "right")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0

    files = live_files(engine, "predictions")
    assert len({f.writer_id for f in files}) == 2
    assert sum(f.rows for f in files) == 2 * ROWS_PER_PROCESS
    expected = {f"{p}-{i}" for p in ("left", "right") for i in range(ROWS_PER_PROCESS)}

    lake = open_lake(engine, root)
    con = lake.duckdb()
    assert con.sql("SELECT count(*) FROM predictions").fetchall() == [(2 * ROWS_PER_PROCESS,)]
    ids = {r[0] for r in con.sql("SELECT request_id FROM predictions").fetchall()}
    assert ids == expected
    con.close()
    frame = lake.scan("predictions").select("request_id").collect()
    assert frame.height == 2 * ROWS_PER_PROCESS
    assert set(frame["request_id"]) == expected
