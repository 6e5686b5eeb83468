"""Connections, file selection by time range, and an experiment's first and last row."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol, TypeVar

import duckdb

from lake.manifest import FileEntry
from lake.reader import Lake

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND: Final = timedelta(microseconds=1)

Span = tuple[datetime, datetime] | None
T = TypeVar("T")


class Queries(Protocol):
    """What a query needs from its owner (:class:`lake.dashboard.DashboardQueries`)."""

    def cursor(self) -> duckdb.DuckDBPyConnection: ...

    def cached(self, key: Hashable, compute: Callable[[], T]) -> T: ...


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def parquet(paths: Iterable[str]) -> str:
    """``read_parquet`` over ``paths``, which come from the manifest, never from a request."""
    listed = ", ".join(quote(path) for path in paths)
    # hive_partitioning off: dt/hour are the flush time, not data; keep the schema. By
    # name: files from before a column was added (``mode``) sit beside newer ones.
    return f"read_parquet([{listed}], hive_partitioning = false, union_by_name = true)"


def source(lake: Lake, files: Sequence[FileEntry]) -> str:
    # Addresses, not local paths: an s3:// lake is read through the file system that
    # DashboardQueries attached to its connection (LakeStorage.attach_duckdb).
    return parquet(lake.storage.url(f.path) for f in files)


def overlapping(files: Sequence[FileEntry], start: datetime, end: datetime) -> list[FileEntry]:
    """Files that may hold a row with ``start <= ts <= end``."""
    return [
        f
        for f in files
        if f.min_ts is not None and f.max_ts is not None and f.min_ts <= end and f.max_ts >= start
    ]


def micros(value: datetime) -> int:
    return (value - EPOCH) // MICROSECOND


def extreme(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    experiment: str,
    files: list[FileEntry],
    *,
    latest: bool,
) -> datetime | None:
    """The experiment's latest (or earliest) ``ts``, reading as few files as possible.

    Files are tried from the newest (oldest) end in groups growing fourfold; once a value
    is found, only the unread files whose range could still beat it are read.
    """
    sign = 1 if latest else -1

    def edge(f: FileEntry) -> int:
        value = f.max_ts if latest else f.min_ts
        assert value is not None  # only files with a ts range are ordered
        return sign * micros(value)

    def query(group: list[FileEntry]) -> int | None:
        agg = "max" if latest else "min"
        row = con.execute(
            f"SELECT epoch_us({agg}(ts)) FROM {source(lake, group)} WHERE experiment = ?",
            [experiment],
        ).fetchone()
        return None if row is None or row[0] is None else sign * int(row[0])

    ordered = sorted((f for f in files if f.min_ts and f.max_ts), key=edge, reverse=True)
    found: int | None = None
    size, i = 1, 0
    while i < len(ordered) and found is None:
        found = query(ordered[i : i + size])
        i += size
        size *= 4
    if found is None:
        return None
    rest = [f for f in ordered[i:] if edge(f) > found]
    if rest:
        more = query(rest)
        if more is not None:
            found = max(found, more)
    return EPOCH + sign * found * MICROSECOND


def experiment_span(queries: Queries, lake: Lake, experiment: str) -> Span:
    """The first and last prediction ``ts`` of ``experiment``, or ``None`` before any."""
    files = lake.files("predictions")
    con = queries.cursor()
    try:
        last = extreme(con, lake, experiment, files, latest=True)
        first = extreme(con, lake, experiment, files, latest=False) if last is not None else None
    finally:
        con.close()
    return (first, last) if first is not None and last is not None else None
