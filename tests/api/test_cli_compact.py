"""``banditlake compact``: a JSON summary of a real compaction, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine

from api.store.migrate import upgrade
from lake.manifest import COMPACTION_WRITER_ID, live_files
from lake.writer import LakeWriter
from tests.lake.lake_support import prediction

CLI = str(Path(sys.executable).with_name("banditlake"))


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, env=env)


def test_compact_json_summary(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    lake = tmp_path / "lake"
    upgrade(url)
    engine = create_engine(url)
    writer = LakeWriter(lake, engine, table="predictions", flush_interval_s=3600)
    for f in range(3):
        for i in range(10):
            writer.append(prediction(f"r{f}-{i}"))
        writer.flush()
    writer.close()
    env = {
        **os.environ,
        "BANDITLAKE_HOME": str(tmp_path),
        "BANDITLAKE_DATABASE_URL": url,
        "BANDITLAKE_LAKE_URI": str(lake),
    }

    young = _run("compact", "--json", env=env)  # default --min-age 3600: too young
    assert young.returncode == 0, young.stderr
    assert json.loads(young.stdout)["files_in"] == 0

    result = _run("compact", "--min-age", "0", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    body = json.loads(result.stdout)
    assert (body["files_in"], body["files_out"], body["rows"]) == (3, 1, 30)
    assert body["delta_versions"] == {"predictions": 1, "feedback": None}
    assert body["bytes_in"] > 0 and body["bytes_out"] > 0
    assert result.stderr == ""  # no progress when stderr is not a terminal
    (output,) = live_files(engine, "predictions")
    assert output.writer_id == COMPACTION_WRITER_ID and output.rows == 30
    assert (lake / output.path).is_file()
    engine.dispose()


def test_compact_rejects_bad_durations_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "BANDITLAKE_HOME": str(tmp_path)}
    for flag, value in (("--min-age", "-1"), ("--grace", "soon")):
        result = _run("compact", flag, value, env=env)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("banditlake: ") and flag in lines[0]
