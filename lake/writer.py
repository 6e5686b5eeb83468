"""The lake writer: a bounded in-memory buffer flushed to Parquet by a background thread.

The request path calls ``LakeWriter.append``, which takes a tiny lock, appends the row to
a list and returns: no Arrow work, no I/O, no waiting on the flusher. A daemon thread
flushes every ``flush_rows`` rows or ``flush_interval_s`` seconds, whichever comes first.

A flush converts the rows to Arrow column by column, writes a temp file in the
destination directory, fsyncs it, moves it to its final name without ever replacing an
existing file, fsyncs the directory, then registers the file in the manifest in one
transaction. If the registration fails the file is deleted again (so no unlisted file
stays in the tree) and its rows are retried. A failure never reaches ``append``: the rows
stay queued and are retried with exponential backoff while the buffer has room; once
``max_buffer_rows`` rows are pending, new rows are dropped and counted. Rows that cannot
be converted to the schema are dropped (and counted) alone, never with their batch.

Counting is exact: every counter moves under the same lock as the buffer, so at every
instant ``rows_written + rows_dropped + queue_depth == rows_appended``.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from time import monotonic, sleep
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Engine

from lake.arrow_rows import rows_to_table, split_convertible
from lake.errors import LakeConfigError, LakeWriteError, RowConversionError
from lake.layout import is_valid_writer_id, part_name, partition_dir, relative_path, temp_name
from lake.manifest import FileEntry, is_registered, register_file
from lake.schemas import TABLES, FeedbackRow, PredictionRow, TableName

__all__ = ["LakeWriter", "WriterStats", "default_writer_id"]

logger = logging.getLogger(__name__)

_MIN_BACKOFF_S: Final = 0.05
# A writer id is reused after a restart: the sequence restarts at 1, so a name may exist.
_MAX_NAME_ATTEMPTS: Final = 1000


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


@dataclass(frozen=True, slots=True)
class WriterStats:
    """A consistent snapshot of a writer's counters.

    ``rows_written + rows_dropped + rows_pending == rows_appended`` always holds.

    Parameters
    ----------
    rows_appended
        Rows passed to ``append``.
    rows_written
        Rows in files registered in the manifest.
    rows_dropped
        Rows given up: buffer full, writer closed, rejected by the schema, or still
        unwritten when ``close`` ran out of time.
    rows_rejected
        The part of ``rows_dropped`` that did not fit the schema.
    rows_pending
        Rows accepted and not yet written.
    files_written
        Files registered in the manifest.
    """

    rows_appended: int
    rows_written: int
    rows_dropped: int
    rows_rejected: int
    rows_pending: int
    files_written: int


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; directories cannot be opened on some platforms.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _move_no_clobber(source: Path, target: Path) -> None:
    """Move ``source`` to ``target`` atomically, raising FileExistsError if it exists."""
    try:
        # link() fails when the target exists, so a live file is never overwritten.
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:
        # File systems without hard links: check, then rename (racy only between two
        # processes misconfigured with the same writer id).
        if target.exists():
            raise FileExistsError(target) from None
        os.replace(source, target)
    else:
        source.unlink()


class LakeWriter:
    """Buffer rows of one table and flush them to the lake from a background thread.

    Create one writer per table and per process (after any fork), in the application's
    lifespan; call ``close`` on shutdown. The background thread starts at construction.

    Parameters
    ----------
    root
        Lake root directory; created by the first flush when missing.
    engine
        Engine of the SQL store that holds the manifest table ``lake_files``.
    table
        Which table this writer feeds: ``"predictions"`` (``PredictionRow``) or
        ``"feedback"`` (``FeedbackRow``).
    writer_id
        Identifies this writer in file names and rows. Default: ``default_writer_id()``,
        unique per process. Two live writers must never share one.
    flush_rows
        Flush as soon as this many new rows are buffered.
    flush_interval_s
        Flush at least this often while rows are buffered, in seconds.
    max_buffer_rows
        Most rows held in memory (new and awaiting retry); rows appended beyond it are
        dropped and counted.
    max_backoff_s
        Longest wait between two attempts while the sink is failing; attempts start
        50 ms apart and double.
    compression
        Parquet compression codec.

    Raises
    ------
    LakeConfigError
        When an argument is out of range or ``writer_id`` is not file-name safe.

    Examples
    --------
    >>> writer = LakeWriter(root, engine, table="feedback")  # doctest: +SKIP
    >>> writer.append(FeedbackRow("r-1", datetime.now(UTC), 1.0, None))  # doctest: +SKIP
    True
    >>> writer.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        root: Path | str,
        engine: Engine,
        *,
        table: TableName,
        writer_id: str | None = None,
        flush_rows: int = 5000,
        flush_interval_s: float = 1.0,
        max_buffer_rows: int = 100_000,
        max_backoff_s: float = 10.0,
        compression: str = "zstd",
    ) -> None:
        if table not in TABLES:
            msg = f"Table {table!r} is not a lake table; expected one of {list(TABLES)}."
            raise LakeConfigError(msg)
        writer_id = default_writer_id() if writer_id is None else writer_id
        if not is_valid_writer_id(writer_id):
            msg = (
                f"Writer id {writer_id!r} must be 1 to 64 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit."
            )
            raise LakeConfigError(msg)
        if flush_rows < 1:
            msg = f"flush_rows must be at least 1, but is {flush_rows}."
            raise LakeConfigError(msg)
        if not flush_interval_s > 0:
            msg = f"flush_interval_s must be positive, but is {flush_interval_s}."
            raise LakeConfigError(msg)
        if max_buffer_rows < flush_rows:
            msg = f"max_buffer_rows ({max_buffer_rows}) must be at least flush_rows ({flush_rows})."
            raise LakeConfigError(msg)
        if not max_backoff_s > 0:
            msg = f"max_backoff_s must be positive, but is {max_backoff_s}."
            raise LakeConfigError(msg)

        self._root = Path(root)
        self._engine = engine
        self._table: TableName = table
        self._writer_id = writer_id
        self._flush_rows = flush_rows
        self._flush_interval_s = flush_interval_s
        self._max_buffer_rows = max_buffer_rows
        self._max_backoff_s = max_backoff_s
        self._compression = compression
        self._convert = partial(rows_to_table, table=table, writer_id=writer_id)

        # _lock guards the buffer and every counter; append holds it for a list append.
        self._lock = threading.Lock()
        self._buffer: list[tuple[Any, ...]] = []
        self._pending = 0
        self._appended = 0
        self._written = 0
        self._dropped = 0
        self._rejected = 0
        self._files = 0
        self._closed = False

        # _io_lock serialises flushes (background thread, flush(), close()); it guards
        # the converted rows awaiting retry, the sequence and the directory cache.
        self._io_lock = threading.Lock()
        self._retry: list[pa.Table] = []
        self._seq = 0
        self._known_dirs: set[Path] = set()
        self._backoff_s = 0.0
        self._last_error: str | None = None
        self._dropped_reported = 0

        self._wake = threading.Event()
        self._stop = threading.Event()
        self._drain_deadline = 0.0
        self._thread = threading.Thread(
            target=self._run, name=f"lake-writer-{table}-{writer_id}", daemon=True
        )
        self._thread.start()

    # -- request path ---------------------------------------------------------------

    def append(self, row: PredictionRow | FeedbackRow) -> bool:
        """Queue one row for writing; never blocks on I/O and never raises.

        Parameters
        ----------
        row
            A ``PredictionRow`` for a predictions writer, a ``FeedbackRow`` for a
            feedback writer. A row that does not fit the schema is dropped at flush time
            and counted in ``rows_dropped`` and ``rows_rejected``.

        Returns
        -------
        bool
            ``False`` when the row was dropped because the buffer is full or the writer is
            closed (it is counted in ``rows_dropped``), else ``True``.
        """
        with self._lock:
            self._appended += 1
            if self._closed or self._pending >= self._max_buffer_rows:
                self._dropped += 1
                return False
            self._buffer.append(row)
            self._pending += 1
            due = len(self._buffer) == self._flush_rows
        if due:
            self._wake.set()
        return True

    # -- counters -------------------------------------------------------------------

    @property
    def table(self) -> TableName:
        """Table this writer feeds."""
        return self._table

    @property
    def last_error(self) -> str | None:
        """The most recent flush error as ``"Type: message"``, or ``None`` if none yet."""
        return self._last_error

    @property
    def healthy(self) -> bool:
        """Whether the last flush attempt succeeded (``True`` before the first one)."""
        return self._backoff_s == 0.0

    def stats(self) -> WriterStats:
        """Return all counters from one instant.

        Returns
        -------
        WriterStats
        """
        with self._lock:
            return WriterStats(
                rows_appended=self._appended,
                rows_written=self._written,
                rows_dropped=self._dropped,
                rows_rejected=self._rejected,
                rows_pending=self._pending,
                files_written=self._files,
            )

    # -- explicit flushing ----------------------------------------------------------

    def flush(self) -> int:
        """Write every pending row now, blocking until done.

        Meant for tests and shutdown; never call it on an event loop thread.

        Returns
        -------
        int
            Rows written by this call (0 when nothing was pending).

        Raises
        ------
        LakeWriteError
            When the rows could not be written or registered; they stay queued, and the
            background thread keeps retrying them.
        """
        with self._io_lock:
            return self._flush_locked()

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting rows, flush what is pending and stop the background thread.

        Rows still unwritten after ``timeout`` seconds (the sink is failing) are counted
        as dropped and logged. Calling ``close`` again does nothing.

        Parameters
        ----------
        timeout
            Seconds to keep retrying the pending rows.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._drain_deadline = monotonic() + max(timeout, 0.0)
        self._stop.set()
        self._wake.set()
        # Grace beyond the deadline for one attempt already under way.
        self._thread.join(max(timeout, 0.0) + 5.0)
        if self._thread.is_alive():
            logger.error(
                "Lake writer %s for %s did not stop within %.1f s; %d rows are still pending.",
                self._writer_id,
                self._table,
                timeout,
                self._pending,
            )

    def __enter__(self) -> LakeWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- background thread ----------------------------------------------------------

    def _run(self) -> None:
        next_due = monotonic() + self._flush_interval_s
        while not self._stop.is_set():
            # Cleared before checking, so a wake-up that arrives meanwhile is not lost.
            self._wake.clear()
            now = monotonic()
            size_due = self._backoff_s == 0.0 and len(self._buffer) >= self._flush_rows
            if now >= next_due or size_due:
                ok = self._flush_quietly()
                delay = self._flush_interval_s if ok else self._backoff_s
                next_due = monotonic() + delay
                self._report_drops()
                continue
            self._wake.wait(next_due - now)
        self._drain()

    def _flush_quietly(self) -> bool:
        try:
            with self._io_lock:
                self._flush_locked()
        except LakeWriteError:
            return False
        except Exception:
            # The flusher must outlive any bug: log it and retry later.
            logger.exception("Lake writer %s failed unexpectedly.", self._writer_id)
            return False
        return True

    def _drain(self) -> None:
        while True:
            ok = self._flush_quietly()
            remaining = self._drain_deadline - monotonic()
            if (ok and self._pending == 0) or remaining <= 0:
                break
            sleep(min(self._backoff_s or _MIN_BACKOFF_S, remaining))
        with self._io_lock, self._lock:
            lost = self._pending
            self._dropped += lost
            self._pending = 0
            self._buffer = []
            self._retry = []
        if lost:
            logger.error(
                "Lake writer %s closed with %d %s rows unwritten; they are counted as dropped. "
                "Last error: %s",
                self._writer_id,
                lost,
                self._table,
                self._last_error,
            )
        self._report_drops()

    def _report_drops(self) -> None:
        dropped = self._dropped
        if dropped > self._dropped_reported:
            logger.warning(
                "Lake writer %s dropped %d %s rows (%d in total).",
                self._writer_id,
                dropped - self._dropped_reported,
                self._table,
                dropped,
            )
            self._dropped_reported = dropped

    # -- one flush (caller holds _io_lock) ------------------------------------------

    def _flush_locked(self) -> int:
        with self._lock:
            batch, self._buffer = self._buffer, []
        if batch:
            self._convert_batch(batch)
        if not self._retry:
            return 0
        table = self._retry[0] if len(self._retry) == 1 else pa.concat_tables(self._retry)
        # Kept as one table, so a retry does not convert or concatenate again.
        self._retry = [table]
        try:
            self._publish(table)
        except Exception as exc:
            self._on_failure(exc)
            msg = (
                f"Could not write {table.num_rows} {self._table} rows to the lake at "
                f"{self._root}: {type(exc).__name__}: {exc}"
            )
            raise LakeWriteError(msg) from exc
        self._retry = []
        self._backoff_s = 0.0
        with self._lock:
            self._pending -= table.num_rows
            self._written += table.num_rows
            self._files += 1
        return int(table.num_rows)

    def _convert_batch(self, batch: Sequence[tuple[Any, ...]]) -> None:
        try:
            tables, rejected = split_convertible(batch, self._convert)
        except Exception as exc:
            # Unreachable unless conversion has a bug; the rows cannot be kept anyway.
            logger.exception("Lake writer %s could not convert a batch.", self._writer_id)
            tables = []
            rejected = [(row, RowConversionError(str(exc))) for row in batch]
        self._retry.extend(t for t in tables if t.num_rows)
        if rejected:
            with self._lock:
                self._pending -= len(rejected)
                self._dropped += len(rejected)
                self._rejected += len(rejected)
            logger.error(
                "Lake writer %s rejected %d %s rows that do not fit the schema; first: %s",
                self._writer_id,
                len(rejected),
                self._table,
                rejected[0][1],
            )

    def _on_failure(self, exc: Exception) -> None:
        self._known_dirs.clear()
        self._backoff_s = min(self._max_backoff_s, max(_MIN_BACKOFF_S, self._backoff_s * 2))
        self._last_error = f"{type(exc).__name__}: {exc}"
        logger.warning(
            "Lake writer %s could not flush %d %s rows; retrying in %.2f s: %s",
            self._writer_id,
            self._pending,
            self._table,
            self._backoff_s,
            self._last_error,
        )

    def _ensure_dir(self, directory: Path) -> None:
        if directory in self._known_dirs:
            return
        missing = [d for d in (directory, *directory.parents) if not d.exists()]
        directory.mkdir(parents=True, exist_ok=True)
        # New directory entries are only durable once their parents are synced.
        for created in missing:
            _fsync_dir(created.parent)
        self._known_dirs.add(directory)

    def _publish(self, table: pa.Table) -> FileEntry:
        now = datetime.now(UTC)
        directory = partition_dir(self._root, self._table, now)
        self._ensure_dir(directory)
        final, size = self._write_file(directory, table)
        _fsync_dir(directory)
        ts_range = pc.min_max(table["ts"])
        entry = FileEntry(
            table=self._table,
            path=relative_path(self._root, final),
            rows=table.num_rows,
            bytes=size,
            writer_id=self._writer_id,
            min_ts=ts_range["min"].as_py(),
            max_ts=ts_range["max"].as_py(),
            created_at=now,
        )
        try:
            register_file(self._engine, entry)
        except Exception:
            if self._registered_anyway(entry.path):
                return entry
            # Nothing unlisted may stay in the tree; the rows are retried in a new file.
            final.unlink(missing_ok=True)
            _fsync_dir(directory)
            raise
        logger.debug("Lake writer %s wrote %s (%d rows).", self._writer_id, entry.path, entry.rows)
        return entry

    def _write_file(self, directory: Path, table: pa.Table) -> tuple[Path, int]:
        for _ in range(_MAX_NAME_ATTEMPTS):
            self._seq += 1
            final = directory / part_name(self._writer_id, self._seq)
            if final.exists():
                continue
            temp = directory / temp_name(self._writer_id, self._seq)
            try:
                sink = temp.open("xb")
            except FileExistsError:
                continue
            try:
                with sink:
                    pq.write_table(table, sink, compression=self._compression)
                    sink.flush()
                    os.fsync(sink.fileno())
                    size = sink.tell()
                try:
                    _move_no_clobber(temp, final)
                except FileExistsError:
                    continue
            finally:
                temp.unlink(missing_ok=True)
            return final, size
        msg = f"Found no free part file name for writer {self._writer_id!r} in {directory}."
        raise LakeWriteError(msg)

    def _registered_anyway(self, path: str) -> bool:
        # A commit whose acknowledgement was lost looks like a failure; deleting a file
        # the manifest lists would break every reader, so ask before deleting.
        try:
            return is_registered(self._engine, path)
        except Exception:
            return False
