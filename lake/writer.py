"""The lake writer: a bounded in-memory buffer flushed to Parquet by a background thread.

The request path calls ``LakeWriter.append``, which takes a tiny lock, appends the row to
a list and returns: no Arrow work, no I/O, no waiting on the flusher. A daemon thread
flushes every ``flush_rows`` rows or ``flush_interval_s`` seconds, whichever comes first.

A flush converts the rows to Arrow column by column and hands the table to a
:class:`lake.publish.FilePublisher`, which writes one Parquet file and registers it in the
manifest (or leaves nothing behind). A failure never reaches ``append``: the rows
stay queued and are retried with jittered exponential backoff while the buffer has room;
once ``max_buffer_rows`` rows are pending, new rows are dropped and counted. Rows that cannot
be converted to the schema are dropped (and counted) alone, never with their batch.

Counting is exact (:class:`lake.buffer.RowBuffer`): at every instant
``rows_written + rows_dropped + rows_pending == rows_appended``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from random import uniform
from time import monotonic, sleep
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
from sqlalchemy import Engine

from lake.arrow_rows import rows_to_table, split_convertible
from lake.buffer import RowBuffer, WriterStats
from lake.errors import LakeConfigError, LakeWriteError, RowConversionError
from lake.layout import default_writer_id, is_valid_writer_id
from lake.publish import FilePublisher
from lake.schemas import TABLES, FeedbackRow, PredictionRow, TableName
from lake.storage import LakeStorage, open_storage

if TYPE_CHECKING:
    from lake.durable import DurableLog

__all__ = ["LakeWriter", "WriterStats", "default_writer_id"]

logger = logging.getLogger(__name__)

_MIN_BACKOFF_S: Final = 0.05


class LakeWriter:
    """Buffer rows of one table and flush them to the lake from a background thread.

    Create one writer per table and per process (after any fork), in the application's
    lifespan; call ``close`` on shutdown. The background thread starts at construction.

    Parameters
    ----------
    root
        The lake root: a :class:`lake.storage.LakeStorage`, a directory (created by the
        first flush when missing) or an ``s3://bucket/prefix`` URI.
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
        root: LakeStorage | Path | str,
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

        self._storage = open_storage(root)
        self._engine = engine
        self._table: TableName = table
        self._writer_id = writer_id
        self._flush_rows = flush_rows
        self._flush_interval_s = flush_interval_s
        self._max_backoff_s = max_backoff_s
        self._max_buffer_rows = max_buffer_rows
        self._convert = partial(rows_to_table, table=table, writer_id=writer_id)

        self._wake = threading.Event()
        self._rows = RowBuffer(max_rows=max_buffer_rows, flush_rows=flush_rows, due=self._wake)

        # _io_lock serialises flushes (background thread, flush(), close()); it guards
        # the converted rows awaiting retry, the sequence and the directory cache.
        self._io_lock = threading.Lock()
        self._retry: list[pa.Table] = []
        # Durable mode (lake.durable): the log whose segments this writer seals at each
        # take and deletes once everything taken up to them is published.
        self._log: DurableLog | None = None
        self._sealed = 0
        self._publisher = FilePublisher(
            self._storage, engine, table=table, writer_id=writer_id, compression=compression
        )
        self._backoff_s = 0.0
        self._last_error: str | None = None
        self._dropped_reported = 0

        self._stop = threading.Event()
        self._drain_deadline = 0.0
        self._thread = threading.Thread(
            target=self._run, name=f"lake-writer-{table}-{writer_id}", daemon=True
        )
        self._thread.start()

    def attach_log(self, log: DurableLog) -> None:
        """Feed this writer from a durable log (called by :class:`DurableLog`)."""
        self._log = log

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
        return self._rows.append(row)

    # -- counters -------------------------------------------------------------------

    @property
    def table(self) -> TableName:
        """Table this writer feeds."""
        return self._table

    @property
    def pending_rows(self) -> int:
        """Rows accepted and not yet written or dropped."""
        return self._rows.pending

    @property
    def max_buffer_rows(self) -> int:
        """Most rows held in memory; beyond it new rows are dropped."""
        return self._max_buffer_rows

    @property
    def durable(self) -> bool:
        """Whether a durable log holds every row this writer has not yet written."""
        return self._log is not None

    @property
    def storage(self) -> LakeStorage:
        """The lake this writer writes to."""
        return self._storage

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
        return self._rows.stats()

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
        as dropped and logged, unless a durable log is attached: then they stay pending,
        kept in the log for the next start. Calling ``close`` again does nothing.

        Parameters
        ----------
        timeout
            Seconds to keep retrying the pending rows.
        """
        if not self._rows.close():
            return
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
                self._rows.pending,
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
            size_due = self._backoff_s == 0.0 and self._rows.new_rows >= self._flush_rows
            if now >= next_due or size_due:
                ok = self._flush_quietly()
                # Jittered, so replicas that lost the same sink do not retry in lockstep.
                delay = self._flush_interval_s if ok else self._backoff_s * uniform(0.5, 1.0)
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
            if (ok and self._rows.pending == 0) or remaining <= 0:
                break
            sleep(min(self._backoff_s or _MIN_BACKOFF_S, remaining))
        with self._io_lock:
            if self._log is None:
                lost = self._rows.drop_pending()
                self._retry = []
            else:
                # Not lost: the durable log holds them, and the next start writes them. They
                # stay pending (not dropped) so the counts say what happened.
                lost = self._rows.pending
        if lost and self._log is not None:
            logger.error(
                "Lake writer %s closed with %d %s rows unwritten; they stay in the durable "
                "log %s and are written at the next start. Last error: %s",
                self._writer_id,
                lost,
                self._table,
                self._log.directory,
                self._last_error,
            )
        elif lost:
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
        dropped = self._rows.dropped
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
        log = self._log
        if log is None:
            batch = self._rows.take()
        else:
            # Atomic with the log's hand-over of fsynced rows: every row in a sealed
            # segment is in this batch or an earlier one.
            with log.segment_lock:
                batch = self._rows.take()
                self._sealed = max(self._sealed, log.seal())
        if batch:
            self._convert_batch(batch)
        if not self._retry:
            if log is not None:
                log.release(self._sealed)
            return 0
        table = self._retry[0] if len(self._retry) == 1 else pa.concat_tables(self._retry)
        # Kept as one table, so a retry does not convert or concatenate again.
        self._retry = [table]
        try:
            self._publisher.publish(table)
        except Exception as exc:
            self._on_failure(exc)
            msg = (
                f"Could not write {table.num_rows} {self._table} rows to the lake at "
                f"{self._storage.uri}: {type(exc).__name__}: {exc}"
            )
            raise LakeWriteError(msg) from exc
        self._retry = []
        self._backoff_s = 0.0
        self._rows.written(table.num_rows)
        if log is not None:
            log.release(self._sealed)
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
            self._rows.rejected(len(rejected))
            logger.error(
                "Lake writer %s rejected %d %s rows that do not fit the schema; first: %s",
                self._writer_id,
                len(rejected),
                self._table,
                rejected[0][1],
            )

    def _on_failure(self, exc: Exception) -> None:
        self._storage.forget_directories()
        self._backoff_s = min(self._max_backoff_s, max(_MIN_BACKOFF_S, self._backoff_s * 2))
        self._last_error = f"{type(exc).__name__}: {exc}"
        logger.warning(
            "Lake writer %s could not flush %d %s rows; retrying in %.2f s: %s",
            self._writer_id,
            self._rows.pending,
            self._table,
            self._backoff_s,
            self._last_error,
        )
