"""Readers counting while writers flush and the compactor swaps and deletes files.

Grace 0 deletes a replaced file right after the switch, so a reader's snapshot can name
a file that is gone by the time it reads it: that read fails (or, in ``Lake.refresh``,
the file is left out with a warning) and the reader takes a new snapshot, as it would
after its grace period. Every count that does complete must lie between the reader's
previous count and the rows appended so far, and count each request once: compaction
never shows a row twice and never hides one.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path

import duckdb
from sqlalchemy import Engine

from lake.compaction import compact
from lake.manifest import COMPACTION_WRITER_ID, live_files
from lake.reader import open_lake
from lake.storage import open_storage
from lake.writer import LakeWriter
from tests.lake.compaction_support import engine_fixture  # noqa: F401
from tests.lake.lake_support import T0, prediction, wait_until

ROWS = 1500


class _MissingFiles(logging.Handler):
    """Counts, per thread, the reader's warnings about files missing from a snapshot."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.by_thread: dict[int, int] = {}
        self.lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self.lock:
            self.by_thread[record.thread or 0] = self.by_thread.get(record.thread or 0, 0) + 1

    def count(self) -> int:
        with self.lock:
            return self.by_thread.get(threading.get_ident(), 0)


def test_counts_never_dip_or_double_while_compacting(engine: Engine, tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "lake")
    writer = LakeWriter(storage, engine, table="predictions", flush_rows=40, flush_interval_s=0.01)
    missing = _MissingFiles()
    reader_log = logging.getLogger("lake.reader")
    reader_log.addHandler(missing)
    done = threading.Event()
    errors: list[BaseException] = []
    samples: dict[str, list[int]] = {}
    retried = {"lake": 0, "duckdb": 0}
    compactions = []

    def appended() -> int:
        return writer.stats().rows_appended

    def read_with_lake() -> None:
        counts = samples.setdefault("lake", [])
        with open_lake(engine, storage) as lake:
            while not done.is_set() or not counts or counts[-1] < ROWS:
                warned = missing.count()
                lake.refresh()
                try:
                    con = lake.duckdb()
                    try:
                        ((n, distinct),) = con.sql(
                            "SELECT count(*), count(DISTINCT request_id) FROM predictions"
                        ).fetchall()
                    finally:
                        con.close()
                except duckdb.IOException:
                    retried["lake"] += 1  # a file of the snapshot was deleted meanwhile
                    continue
                if missing.count() != warned:
                    retried["lake"] += 1  # refresh left out a file deleted meanwhile
                    continue
                high = appended()
                assert n == distinct, "a row counted twice"
                assert (counts[-1] if counts else 0) <= n <= high, (counts[-1:], n, high)
                counts.append(n)

    def read_with_duckdb() -> None:
        counts = samples.setdefault("duckdb", [])
        con = duckdb.connect()
        while not done.is_set() or not counts or counts[-1] < ROWS:
            paths = [storage.location(e.path) for e in live_files(engine, "predictions")]
            if not paths:
                continue
            try:
                ((n, distinct),) = con.execute(
                    "SELECT count(*), count(DISTINCT request_id) "
                    "FROM read_parquet(?, hive_partitioning = false)",
                    [paths],
                ).fetchall()
            except duckdb.IOException:
                retried["duckdb"] += 1
                continue
            high = appended()
            assert n == distinct, "a row counted twice"
            assert (counts[-1] if counts else 0) <= n <= high, (counts[-1:], n, high)
            counts.append(n)
        con.close()

    def compact_loop() -> None:
        while not done.is_set():
            compactions.append(compact(engine, storage, min_age=timedelta(0), grace=timedelta(0)))
        compactions.append(compact(engine, storage, min_age=timedelta(0), grace=timedelta(0)))

    def guarded(target: object) -> threading.Thread:
        def run() -> None:
            try:
                target()  # type: ignore[operator]
            except BaseException as exc:
                errors.append(exc)
                done.set()

        return threading.Thread(target=run, daemon=True)

    threads = [guarded(f) for f in (read_with_lake, read_with_duckdb, compact_loop)]
    try:
        for t in threads:
            t.start()
        for i in range(ROWS):
            writer.append(prediction(f"r{i}", ts=T0 + timedelta(milliseconds=i)))
            if i % 100 == 99:
                writer.flush()
                # Interleave: each reader counts, and the compactor runs, between flushes.
                marks = [len(samples.get("lake", [])), len(samples.get("duckdb", []))]
                ran = len(compactions)
                wait_until(
                    lambda m=marks, r=ran: (
                        bool(errors)
                        or (
                            len(samples.get("lake", [])) > m[0]
                            and len(samples.get("duckdb", [])) > m[1]
                            and len(compactions) > r
                        )
                    ),
                    what="the readers and the compactor",
                )
        writer.flush()
        writer.close()
        done.set()
        for t in threads:
            t.join(timeout=120)
    finally:
        done.set()
        reader_log.removeHandler(missing)
    if errors:
        raise errors[0]
    assert all(not t.is_alive() for t in threads)
    assert writer.stats().rows_written == ROWS
    # The readers saw the lake grow to every row, through several compactions.
    assert samples["lake"][-1] == ROWS and samples["duckdb"][-1] == ROWS
    assert len(samples["lake"]) >= ROWS // 100 and len(samples["duckdb"]) >= ROWS // 100
    assert sum(s.compactions for s in compactions) >= ROWS // 200
    assert sum(s.replaced_deleted for s in compactions) > 0
    final = live_files(engine, "predictions")
    assert final and all(e.writer_id == COMPACTION_WRITER_ID for e in final)
    assert sum(e.rows for e in final) == ROWS
