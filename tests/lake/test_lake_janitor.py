from __future__ import annotations

import os
from pathlib import Path
from time import time

from lake import janitor


def test_janitor_removes_only_stale_temp_files(root: Path) -> None:
    partition = root / "predictions" / "dt=2025-03-01" / "hour=12"
    partition.mkdir(parents=True)
    stale = partition / ".tmp-w-00000001-abcd.parquet"
    fresh = partition / ".tmp-w-00000002-abcd.parquet"
    part = partition / "part-w-00000001.parquet"
    for path in (stale, fresh, part):
        path.write_bytes(b"x")
    hour_ago = time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    os.utime(part, (hour_ago, hour_ago))

    assert janitor(root, older_than_s=600) == [stale.relative_to(root).as_posix()]
    assert not stale.exists()
    assert fresh.exists()
    assert part.exists()


def test_janitor_on_a_missing_root(tmp_path: Path) -> None:
    assert janitor(tmp_path / "nowhere") == []
