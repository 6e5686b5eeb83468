from __future__ import annotations

import os
from pathlib import Path
from time import time

from lake import janitor
from lake.storage import LakeStorage, LocalStorage, open_storage

PARTITION = "predictions/dt=2025-03-01/hour=12"


def test_janitor_removes_only_stale_temp_files(tmp_path: Path) -> None:
    # Local only: the test backdates files, and an object's Last-Modified is set by the
    # store when it is written; no S3 client can move it into the past.
    storage = open_storage(tmp_path / "lake")
    assert isinstance(storage, LocalStorage)
    stale = f"{PARTITION}/.tmp-w-00000001-abcd.parquet"
    fresh = f"{PARTITION}/.tmp-w-00000002-abcd.parquet"
    part = f"{PARTITION}/part-w-00000001.parquet"
    for path in (stale, fresh, part):
        storage.write_bytes(path, b"x")
    hour_ago = time() - 3600
    os.utime(storage.location(stale), (hour_ago, hour_ago))
    os.utime(storage.location(part), (hour_ago, hour_ago))

    assert janitor(storage.root, older_than_s=600) == [stale]
    assert not storage.exists(stale)
    assert storage.exists(fresh)
    assert storage.exists(part)


def test_janitor_removes_temp_files_and_keeps_everything_else(
    root: str, storage: LakeStorage
) -> None:
    temps = [
        f"{PARTITION}/.tmp-w-00000001-abcd.parquet",
        ".tmp-probe-0123456789ab",  # a start-up probe that died half-way
    ]
    kept = [
        f"{PARTITION}/part-w-00000001.parquet",
        "feedback/dt=2025-03-01/hour=12/part-w-00000002.parquet",
        "predictions/notes.tmp-later",  # only the prefix marks a temp file
    ]
    for path in temps + kept:
        storage.write_bytes(path, b"x")
    # Everything was written just now: an hour's margin keeps all of it.
    assert janitor(root, older_than_s=3600) == []
    assert [f.path for f in storage.list_files()] == sorted(temps + kept)
    # With no margin every temp file written before this call is stale.
    assert sorted(janitor(root, older_than_s=0)) == sorted(temps)
    assert [f.path for f in storage.list_files()] == sorted(kept)
    assert janitor(root, older_than_s=0) == []


def test_janitor_on_a_missing_root(root: str, storage: LakeStorage) -> None:
    # A directory that does not exist, or a prefix with nothing under it yet.
    assert storage.list_files() == []
    assert janitor(root) == []
