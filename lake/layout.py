"""Where the lake's files live.

::

    <lake>/<table>/dt=YYYY-MM-DD/hour=HH/part-<writer_id>-<seq:08d>-<token>.parquet
    <lake>/<table>/dt=YYYY-MM-DD/hour=HH/.tmp-part-<writer_id>-<seq:08d>-<random>.parquet

A file is placed in the partition of its **flush time** (UTC wall clock when the writer
wrote it), not of its rows' ``ts``. So one flush is always one file, and once an hour has
passed no writer adds files to its partition, which is what lets a compactor treat that
partition as closed. A row's ``ts`` is at or before its partition's hour (usually by less
than the flush interval, more after the sink was down and rows were retried): filter on
``ts``, not on ``dt``/``hour``; the manifest's ``min_ts``/``max_ts`` bound each file.

Temp files (a local lake only: an S3 upload appears whole) live in the destination
directory so the final rename is atomic (same file system), and their dot prefix hides
them from Hive-style readers that glob a directory.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from datetime import UTC, datetime
from typing import Final

from lake.errors import LakeConfigError
from lake.schemas import TableName

__all__ = [
    "TEMP_PREFIX",
    "default_writer_id",
    "is_valid_writer_id",
    "part_name",
    "partition_path",
]

TEMP_PREFIX: Final = ".tmp-"
_WRITER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def is_valid_writer_id(writer_id: str) -> bool:
    """Tell whether ``writer_id`` is safe in a file name and fits the manifest column.

    Parameters
    ----------
    writer_id
        Candidate id: 1 to 64 characters among letters, digits, ``_``, ``.`` and ``-``,
        starting with a letter or digit.

    Returns
    -------
    bool
    """
    return _WRITER_ID.fullmatch(writer_id) is not None


def default_writer_id() -> str:
    """Return a writer id unique to this process: ``<hostname>-<pid>-<random>``.

    The random part keeps ids unique across pid reuse and container restarts, so several
    processes (and replicas) can write one lake without coordinating.

    Returns
    -------
    str
        At most 64 characters, safe in a file name.
    """
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", socket.gethostname()).strip("-._")[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


def partition_path(table: TableName, at: datetime) -> str:
    """Return the partition, relative to the lake root, of a file flushed at ``at``.

    Parameters
    ----------
    table
        Table name.
    at
        Flush time; converted to UTC (it must be timezone-aware).

    Returns
    -------
    str
        ``<table>/dt=YYYY-MM-DD/hour=HH``, POSIX separators: the form the manifest stores,
        so a lake keeps its meaning wherever its root is (a directory, an S3 prefix).
    """
    if at.tzinfo is None:
        msg = f"Partition time {at.isoformat()} must be timezone-aware."
        raise LakeConfigError(msg)
    utc = at.astimezone(UTC)
    return f"{table}/dt={utc:%Y-%m-%d}/hour={utc:%H}"


def part_name(writer_id: str, seq: int, token: str | None = None) -> str:
    """Return the file name of a writer's ``seq``-th part file.

    Parameters
    ----------
    writer_id
        A valid writer id (see ``is_valid_writer_id``).
    seq
        Per-writer sequence number, zero-padded to 8 digits.
    token
        Random letters chosen once per writer instance (:class:`lake.publish.FilePublisher`):
        a writer id reused after a restart starts its sequence again, and the token keeps
        its names new, so an upload never needs to ask first whether its name is taken.

    Returns
    -------
    str
        ``part-<writer_id>-<seq:08d>.parquet``, or ``part-<writer_id>-<seq:08d>-<token>.parquet``.
    """
    if token:
        return f"part-{writer_id}-{seq:08d}-{token}.parquet"
    return f"part-{writer_id}-{seq:08d}.parquet"
