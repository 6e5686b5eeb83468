"""Shared helpers for the lake tests: row factories, polling, listing, breaking the sink.

A plain module (not a conftest) so that the multiprocessing workers, which run in spawned
interpreters, can import ``write_rows_in_process`` by name.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from time import monotonic, sleep
from typing import Any

import boto3
from sqlalchemy import Engine, create_engine, text

from lake import FeedbackRow, LakeWriter, PredictionRow
from lake.layout import TEMP_PREFIX
from lake.storage import LakeStorage, LocalStorage, ObjectStorage

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
def _broken_directory(table_dir: Path) -> Iterator[str]:
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


def _s3_client(storage: ObjectStorage) -> Any:
    settings = storage.settings
    return boto3.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        aws_access_key_id=settings.access_key,
        aws_secret_access_key=settings.secret_key,
        region_name=settings.region,
    )


@contextmanager
def _deleted_bucket(storage: ObjectStorage) -> Iterator[str]:
    """Take the lake's bucket away while the block runs, then bring it back whole.

    Every object is read into memory, the bucket is emptied and deleted (so each write
    fails with NoSuchBucket, as after an operator's mistake or a wrong bucket name), and
    on exit the bucket is created again and every object put back under its key.
    """
    client = _s3_client(storage)
    bucket = storage.uri.removeprefix("s3://").split("/", 1)[0]
    saved: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            key = item["Key"]
            saved[key] = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            client.delete_object(Bucket=bucket, Key=key)
    client.delete_bucket(Bucket=bucket)
    assert bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}
    try:
        yield "bucket deleted"
    finally:
        client.create_bucket(Bucket=bucket)
        for key, data in saved.items():
            client.put_object(Bucket=bucket, Key=key, Body=data)


@contextmanager
def broken_sink(storage: LakeStorage, table: str = "predictions") -> Iterator[str]:
    """Make every write of ``table`` fail while the block runs, then repair the sink.

    A local lake's table directory is made unwritable (:func:`_broken_directory`); an
    object-store lake loses its bucket and gets it back with every object
    (:func:`_deleted_bucket`). Files written before the block are there afterwards.
    Yields the method used.
    """
    if isinstance(storage, LocalStorage):
        table_dir = storage.root / table
        with _broken_directory(table_dir) as how:
            yield how
    else:
        assert isinstance(storage, ObjectStorage)
        with _deleted_bucket(storage) as how:
            yield how


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


def _files(storage: LakeStorage, prefix: str) -> list[str]:
    return [f.path for f in storage.list_files() if PurePosixPath(f.path).name.startswith(prefix)]


def part_files(storage: LakeStorage) -> set[str]:
    """Return every part file under the lake root, relative, POSIX separators."""
    return set(_files(storage, "part-"))


def temp_files(storage: LakeStorage) -> list[str]:
    return _files(storage, TEMP_PREFIX)


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
