"""Shared helpers for the lake tests: row factories, polling, and breaking the sink.

A plain module (not a conftest) so that the multiprocessing workers, which run in spawned
interpreters, can import ``write_rows_in_process`` by name.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from time import monotonic, sleep

from sqlalchemy import Engine, create_engine, text

from lake import FeedbackRow, LakeWriter, PredictionRow

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def prediction(
    request_id: str,
    *,
    ts: datetime = T0,
    variant: str = "a",
    role: str = "arm",
    features: dict[str, float] | None = None,
    prediction: float | None = 1.0,
    status: str = "ok",
) -> PredictionRow:
    return PredictionRow(
        request_id=request_id,
        ts=ts,
        experiment="exp",
        variant=variant,
        role=role,  # type: ignore[arg-type]
        allocation_version=3,
        propensity=0.25,
        unit_id=None,
        features={"x": 1.5, "y": -2.0} if features is None else features,
        prediction=prediction,
        scores=[0.25, 0.75],
        latency_ms=1.25,
        model_sha256="ab" * 32,
        provider="CPUExecutionProvider",
        status=status,  # type: ignore[arg-type]
        error=None if status == "ok" else "boom",
    )


def feedback(
    request_id: str,
    *,
    ts: datetime = T0,
    reward: float | None = 1.0,
    label: str | None = None,
    key: str | None = None,
) -> FeedbackRow:
    return FeedbackRow(request_id, ts, reward, label, key)


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    """Poll ``predicate`` until it holds, failing the test after ``timeout`` seconds."""
    deadline = monotonic() + timeout
    while not predicate():
        if monotonic() > deadline:
            msg = f"Timed out after {timeout} s waiting for {what or predicate}."
            raise AssertionError(msg)
        sleep(0.01)


def _writes_fail_in(directory: Path) -> bool:
    probe = directory / ".probe"
    try:
        probe.write_bytes(b"")
    except OSError:
        return True
    probe.unlink()
    return False


@contextmanager
def broken_directory(table_dir: Path) -> Iterator[str]:
    """Make every write under ``table_dir`` fail while the block runs, then repair it.

    Without privileges, the directories are made read-only (0o555). As root, where mode
    bits do not stop writes, the directory is moved aside and ``table_dir`` becomes a
    symlink to a path under a regular file, so creating anything beneath it fails with
    NotADirectoryError. Repair swaps in a symlink to the moved directory with one atomic
    ``os.replace``, so the writer can never recreate the directory in between. Yields the
    method used.
    """
    dirs = [table_dir, *(p for p in table_dir.rglob("*") if p.is_dir())]
    for d in dirs:
        d.chmod(0o555)
    if all(_writes_fail_in(d) for d in dirs):
        try:
            yield "chmod"
        finally:
            for d in dirs:
                d.chmod(0o755)
        return
    for d in dirs:
        d.chmod(0o755)
    # Kept outside the lake root, so nothing there looks like part of the lake.
    holding = table_dir.parent.with_name(table_dir.parent.name + ".held")
    holding.mkdir()
    aside = holding / table_dir.name
    blocker = holding / "blocker"
    blocker.write_bytes(b"a regular file")
    table_dir.rename(aside)
    table_dir.symlink_to(blocker / "unreachable")
    assert all(_writes_fail_in(table_dir / d.relative_to(table_dir)) for d in dirs)
    try:
        yield "symlink under a file"
    finally:
        repaired = table_dir.with_name(table_dir.name + ".repaired")
        repaired.symlink_to(aside)
        os.replace(repaired, table_dir)


@contextmanager
def broken_manifest(engine: Engine) -> Iterator[None]:
    """Make manifest inserts fail (the table disappears) while keeping its rows."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE lake_files RENAME TO lake_files_offline"))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE lake_files_offline RENAME TO lake_files"))


def _files(root: Path, prefix: str) -> list[Path]:
    # os.walk, because a repaired table directory is a symlink (see broken_directory).
    return [
        Path(directory, name)
        for directory, _dirs, names in os.walk(root, followlinks=True)
        for name in names
        if name.startswith(prefix)
    ]


def part_files(root: Path) -> set[str]:
    """Return every part file under the lake root, relative, POSIX separators."""
    return {p.relative_to(root).as_posix() for p in _files(root, "part-")}


def temp_files(root: Path) -> list[Path]:
    return _files(root, ".tmp-")


def write_rows_in_process(database_url: str, root: str, prefix: str, count: int) -> None:
    """Spawned worker: append ``count`` predictions, close, and check the counters."""
    engine = create_engine(database_url)
    writer = LakeWriter(root, engine, table="predictions", flush_rows=250, flush_interval_s=0.05)
    for i in range(count):
        writer.append(prediction(f"{prefix}-{i}", ts=T0 + timedelta(microseconds=i)))
    writer.close(timeout=30)
    stats = writer.stats()
    engine.dispose()
    if stats.rows_written != count or stats.rows_dropped != 0:
        sys.stderr.write(f"worker {prefix} (pid {os.getpid()}): {stats}\n")
        sys.exit(1)
