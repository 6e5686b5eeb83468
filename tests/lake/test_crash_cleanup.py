"""A replica's own dead writers: their leftovers are settled at the next start, at once.

The ledgers are written by real processes: one that exited (its lock is gone) and one
still running (its lock is held). Each test runs on a local lake and on S3.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from time import time

import pyarrow as pa
from sqlalchemy import Engine

from lake.arrow_rows import rows_to_table
from lake.janitor import janitor, recover_dead_writers
from lake.ledger import WriterLedger
from lake.manifest import FileEntry, is_registered, live_files, register_file
from lake.storage import LakeStorage, LocalStorage, open_storage
from tests.lake.lake_support import prediction

PARTITION = "predictions/dt=2025-03-01/hour=12"

# A process that records one writer id in a ledger, prints it, and then exits or waits.
_LEDGER_PROCESS = """
import sys
from pathlib import Path
from lake.ledger import WriterLedger
ledger = WriterLedger.open(Path(sys.argv[1]))
print(ledger.new_writer_id(), flush=True)
sys.stdin.read()
"""


def _ledger_process(ledgers: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _LEDGER_PROCESS, str(ledgers)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def _dead_writer(ledgers: Path) -> str:
    proc, writer_id = _ledger_process(ledgers)
    proc.kill()  # no chance to clean up: what a crash leaves
    proc.wait()
    return writer_id


def _table(writer_id: str, *request_ids: str) -> pa.Table:
    rows = [prediction(rid) for rid in request_ids]
    return rows_to_table(rows, table="predictions", writer_id=writer_id)


def _register(engine: Engine, storage: LakeStorage, path: str, writer_id: str) -> None:
    table = storage.read_table(path)
    entry = FileEntry(
        table="predictions",
        path=path,
        rows=table.num_rows,
        bytes=len(storage.read_bytes(path)),
        writer_id=writer_id,
        min_ts=prediction("x").ts,
        max_ts=prediction("x").ts,
        created_at=datetime.now(UTC),
    )
    register_file(engine, entry)


def test_a_dead_writers_leftovers_are_settled_at_once(
    tmp_path: Path, root: str, storage: LakeStorage, engine: Engine
) -> None:
    ledgers = tmp_path / "home" / "lake-writers"
    dead = _dead_writer(ledgers)
    live_proc, live = _ledger_process(ledgers)
    try:
        temp = f"{PARTITION}/.tmp-part-{dead}-00000003-0a1b2c3d-99887766.parquet"
        complete = f"{PARTITION}/part-{dead}-00000001-0a1b2c3d.parquet"
        truncated = f"{PARTITION}/part-{dead}-00000002-0a1b2c3d.parquet"
        registered = f"{PARTITION}/part-{dead}-00000004-0a1b2c3d.parquet"
        retried = f"{PARTITION}/part-{dead}-00000005-0a1b2c3d.parquet"
        live_temp = f"{PARTITION}/.tmp-part-{live}-00000001-0a1b2c3d-11223344.parquet"
        other_temp = f"{PARTITION}/.tmp-part-other-host-7-abcd-00000001-0a1b2c3d-5.parquet"
        storage.write_new(complete, _table(dead, "r-1", "r-2"))
        whole = storage.read_bytes(complete)
        storage.write_bytes(truncated, whole[: len(whole) // 2])
        storage.write_new(registered, _table(dead, "r-3", "r-4"))
        _register(engine, storage, registered, dead)
        # The rows of a failed registration, retried in `registered` meanwhile.
        storage.write_new(retried, _table(dead, "r-3"))
        for path in (temp, live_temp, other_temp):
            storage.write_bytes(path, whole[:10])

        done = recover_dead_writers(root, engine, ledgers)
        # The hour-old rule of the janitor still protects everyone else's temp files.
        assert janitor(root) == []

        assert done.writer_ids == (dead,)
        assert done.temp_removed == [temp]
        assert done.registered == [complete]
        assert sorted(done.removed) == sorted([truncated, retried])
        assert done.kept == []
        files = {f.path for f in storage.list_files()}
        assert files == {complete, registered, live_temp, other_temp}
        assert is_registered(engine, complete)
        entry = next(e for e in live_files(engine, "predictions") if e.path == complete)
        assert (entry.rows, entry.writer_id) == (2, dead)
        assert entry.min_ts == prediction("x").ts
        # The dead process's ledger is gone; the live one's stays, and so do its files.
        assert len(list(ledgers.glob("*.ids"))) == 1
        assert recover_dead_writers(root, engine, ledgers).writer_ids == ()
    finally:
        live_proc.kill()
        live_proc.wait()
    # Once that process is dead too, its temp file goes at the next start.
    again = recover_dead_writers(root, engine, ledgers)
    assert again.writer_ids == (live,)
    assert again.temp_removed == [live_temp]
    assert {f.path for f in storage.list_files()} == {complete, registered, other_temp}
    assert list(ledgers.glob("*.ids")) == []


def test_another_replicas_temp_file_goes_only_when_an_hour_old(
    tmp_path: Path, engine: Engine
) -> None:
    # Local only: the test backdates a file, which no S3 client can do.
    storage = open_storage(tmp_path / "lake")
    assert isinstance(storage, LocalStorage)
    ledgers = tmp_path / "home" / "lake-writers"
    dead = _dead_writer(ledgers)
    other = f"{PARTITION}/.tmp-part-other-host-7-abcd-00000001-0a1b2c3d-5.parquet"
    storage.write_bytes(other, b"x")
    assert recover_dead_writers(storage, engine, ledgers).writer_ids == (dead,)
    assert janitor(storage) == []
    assert storage.exists(other)
    hour_ago = time() - 3601
    os.utime(storage.location(other), (hour_ago, hour_ago))
    assert janitor(storage) == [other]


def test_a_live_ledger_is_never_taken_for_a_dead_one(tmp_path: Path) -> None:
    ledger = WriterLedger.open(tmp_path)
    writer_id = ledger.new_writer_id()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from lake.ledger import dead_writer_ids\n"
            "with dead_writer_ids(Path(sys.argv[1])) as ids: print(ids)",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip() == "[]"
    ledger.close()
    assert ledger.path.read_text() == writer_id + "\n"
