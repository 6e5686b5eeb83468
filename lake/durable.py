"""The durable log: each row on local disk, fsynced, before its response is sent.

In durable mode (``BANDITLAKE_LAKE_DURABLE=true``) a replica keeps one append-only log per
lake table under ``$BANDITLAKE_HOME/lake-log/<table>/``, always on a local disk whatever
the lake is. A request that must be acknowledged awaits :meth:`DurableLog.record`: its
row is encoded on the event loop, a background thread appends every row that arrived
meanwhile to the open segment file and calls ``fdatasync`` once for all of them (group
commit: while one fsync runs, the next batch gathers), hands the rows to the lake writer's
buffer and only then wakes the waiting requests. A request waits at most ``wait_s``.

The lake writer seals the open segment each time it takes rows to flush (atomically with
the take, under :attr:`DurableLog.segment_lock`), and once everything it took is
published it deletes the sealed segments (:meth:`release`). So a segment is deleted only
when each of its rows is in a registered lake file. After a crash, :meth:`replay` reads
what the old segments still hold, drops the rows the lake already has (a crash between
publishing and deleting leaves such rows: they are recognised by request id and
timestamp) and queues the rest: each acknowledged row reaches the lake exactly once.

Record format: ``<u32 length><u32 crc32>`` then a pickle of the row's fields (its time
as UTC microseconds). A record cut
short by a crash (its batch was never fsynced, so never acknowledged) ends the segment.
The log is this replica's own file, never read from a client, so pickle is safe here.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import pickle
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from lake.errors import LakeConfigError, LakeError
from lake.failpoints import failpoint
from lake.manifest import live_files
from lake.schemas import TABLES, FeedbackRow, PredictionRow, TableName
from lake.storage import fsync_dir

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from lake.storage import LakeStorage
    from lake.writer import LakeWriter

__all__ = [
    "BufferedLog",
    "DurableLog",
    "LogFullError",
    "LogInUseError",
    "LogUnavailableError",
    "ReplayResult",
    "RowLog",
    "open_slot",
]

logger = logging.getLogger(__name__)

_MAGIC: Final = b"BLLOG1\n"
_HEADER: Final = struct.Struct("<II")
_SEGMENT_PREFIX: Final = "segment-"
_ROW_TYPES: Final = {"predictions": PredictionRow, "feedback": FeedbackRow}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class LogUnavailableError(LakeError):
    """The row could not be made durable (the local disk failed, or took too long)."""


class LogInUseError(LakeConfigError):
    """Another live process holds this log directory."""


class LogFullError(LakeError):
    """The log holds more unpublished bytes than allowed: shed load until it drains."""


class RowLog:
    """What the serving path logs rows through, in either mode."""

    durable: bool = False

    def append(self, row: PredictionRow | FeedbackRow) -> bool:
        """Queue a row that no response waits for (a shadow's)."""
        raise NotImplementedError

    async def record(self, rows: Sequence[PredictionRow | FeedbackRow]) -> None:
        """Log rows that a response acknowledges; durable ones once this returns."""
        raise NotImplementedError

    def check_room(self) -> None:
        """Raise :class:`LogFullError` when new requests must wait for the log to drain."""


class BufferedLog(RowLog):
    """The default mode: rows go to the writer's memory buffer, acknowledged at once.

    A crash loses what the buffer holds: the rows of at most one flush interval (or
    ``flush_rows``) in normal operation, and up to ``max_buffer_rows`` while the lake
    cannot be written. Rows refused by a full buffer are counted as dropped.
    """

    def __init__(self, writer: LakeWriter) -> None:
        self.writer = writer
        self.append = writer.append  # type: ignore[method-assign]

    async def record(self, rows: Sequence[PredictionRow | FeedbackRow]) -> None:
        append = self.writer.append
        for row in rows:
            append(row)


@dataclass
class ReplayResult:
    """What :meth:`DurableLog.replay` found in the segments a previous process left."""

    segments: int = 0
    rows_found: int = 0
    rows_published: int = 0
    rows_replayed: int = 0
    torn_bytes: int = 0


@dataclass
class _Batch:
    records: list[bytes] = field(default_factory=list)
    rows: list[Any] = field(default_factory=list)
    future: asyncio.Future[None] | None = None
    timer: asyncio.TimerHandle | None = None


class DurableLog(RowLog):
    """One table's durable log, feeding one :class:`lake.writer.LakeWriter`.

    Parameters
    ----------
    directory
        The log's directory (created when missing); one live process at a time, which
        an exclusive lock on ``directory/LOCK`` enforces.
    writer
        The lake writer of the same table; the log attaches itself to it.
    max_bytes
        Unpublished bytes beyond which :meth:`check_room` refuses new requests.
    wait_s
        Longest a request waits for its fsync before it fails.

    Raises
    ------
    LakeConfigError
        When the directory cannot be created or another live process holds it.
    """

    durable = True

    def __init__(
        self, directory: Path, writer: LakeWriter, *, max_bytes: int, wait_s: float
    ) -> None:
        if writer.table not in TABLES:  # pragma: no cover - the writer checked it
            msg = f"Table {writer.table!r} is not a lake table."
            raise LakeConfigError(msg)
        self._dir = directory
        self._writer = writer
        self._table: TableName = writer.table
        self._max_bytes = max_bytes
        self._wait_s = wait_s
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._lock_file = (directory / "LOCK").open("a+")
        except OSError as exc:
            msg = f"The durable log directory {directory} cannot be used: {exc.strerror or exc}."
            raise LakeConfigError(msg) from exc
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock_file.close()
            msg = f"The durable log {directory} is in use by another live process."
            raise LogInUseError(msg) from exc

        # Held by the fsync thread while it writes a batch and hands its rows to the
        # writer, and by the writer while it takes rows and seals the segment.
        self.segment_lock = threading.Lock()
        # Segment sizes, changed by the fsync thread and the writer, summed in _backlog.
        self._sizes_lock = threading.Lock()
        self._sizes: dict[int, int] = {n: path.stat().st_size for n, path in self._segments()}
        self._backlog = sum(self._sizes.values())
        self._old = sorted(self._sizes)
        self._number = (self._old[-1] if self._old else 0) + 1
        self._fd = -1
        self._open_segment()
        self._hold = False  # a row that the writer refused: keep every segment
        self._failing = False
        self.fsyncs = 0  # batches made durable, each with one fsync
        self._released = 0

        self._pending = _Batch()
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handing_over = False
        self._thread = threading.Thread(
            target=self._run, name=f"lake-log-{self._table}", daemon=True
        )
        # Attached once the old segments are replayed: a writer that sealed and released
        # before would delete rows nobody has read yet.
        self._attached = False

    # -- files ----------------------------------------------------------------------

    def _path(self, number: int) -> Path:
        return self._dir / f"{_SEGMENT_PREFIX}{number:012d}.log"

    def _segments(self) -> Iterator[tuple[int, Path]]:
        for path in sorted(self._dir.glob(f"{_SEGMENT_PREFIX}*.log")):
            digits = path.stem.removeprefix(_SEGMENT_PREFIX)
            if digits.isdigit():
                yield int(digits), path

    def _open_segment(self) -> None:
        path = self._path(self._number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, _MAGIC)
            os.fsync(fd)
            fsync_dir(self._dir)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self._fd = fd
        self._resize(self._number, len(_MAGIC))

    def _resize(self, number: int, size: int | None) -> None:
        with self._sizes_lock:
            self._backlog += (size or 0) - self._sizes.get(number, 0)
            if size is None:
                self._sizes.pop(number, None)
            else:
                self._sizes[number] = size

    # -- counters -------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def table(self) -> TableName:
        return self._table

    @property
    def backlog_bytes(self) -> int:
        """Bytes of rows in segments not yet deleted (rows not known to be published)."""
        with self._sizes_lock:
            return self._backlog - len(_MAGIC) * len(self._sizes)

    @property
    def healthy(self) -> bool:
        """Whether the last fsync succeeded."""
        return not self._failing

    # -- request path (event loop thread) -------------------------------------------

    def start(self) -> None:
        """Start the fsync thread; call after :meth:`replay`, on the serving loop."""
        self._loop = asyncio.get_running_loop()
        with self.segment_lock:
            self._attach()
        self._thread.start()

    def _attach(self) -> None:
        if not self._attached:
            self._writer.attach_log(self)
            self._attached = True

    def check_room(self) -> None:
        backlog = self.backlog_bytes
        if backlog > self._max_bytes:
            msg = (
                f"The durable log holds {backlog:,} bytes not yet in the lake, over its "
                f"bound of {self._max_bytes:,}; the lake is behind."
            )
            raise LogFullError(msg)
        # The writer's memory must never refuse a logged row (its segment would have to
        # wait for a restart): shed load while a tenth of its buffer is still free.
        pending, bound = self._writer.pending_rows, self._writer.max_buffer_rows
        if pending >= bound - max(1, bound // 10):
            msg = (
                f"The lake writer holds {pending:,} rows not yet in the lake, near its "
                f"bound of {bound:,} (BANDITLAKE_LAKE_BUFFER_ROWS); the lake is behind."
            )
            raise LogFullError(msg)

    def _encode(self, row: tuple[Any, ...]) -> bytes:
        # The time as UTC microseconds: pickling an aware datetime costs three times more.
        payload = pickle.dumps((row[0], _micros(row[1]), *row[2:]), protocol=5)
        return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload

    def append(self, row: PredictionRow | FeedbackRow) -> bool:
        record = self._encode(row)
        with self._pending_lock:
            batch = self._pending
            batch.records.append(record)
            batch.rows.append(row)
        self._hand_over()
        return True

    def _hand_over(self) -> None:
        """Wake the fsync thread once per turn of the event loop, not once per row.

        Every request that runs in this turn adds its row first, so one fsync covers
        them all, and the thread is not woken (to contend for the GIL) per row.
        """
        loop = self._loop
        if loop is None or self._stopping:
            self._wake.set()
        elif not self._handing_over:
            self._handing_over = True
            loop.call_soon(self._wake_thread)

    def _wake_thread(self) -> None:
        self._handing_over = False
        self._wake.set()

    async def record(self, rows: Sequence[PredictionRow | FeedbackRow]) -> None:
        """Return once every row is fsynced in the log (and queued for the lake).

        Raises
        ------
        LogUnavailableError
            When the disk refused the write or the fsync took longer than ``wait_s``;
            the rows were not acknowledged (and may or may not reach the lake).
        """
        if not rows:
            return
        records = [self._encode(row) for row in rows]
        loop = self._loop
        if loop is None:
            msg = "The durable log was not started."
            raise LogUnavailableError(msg)
        with self._pending_lock:
            batch = self._pending
            batch.records.extend(records)
            batch.rows.extend(rows)
            future = batch.future
            if future is None:
                # One future and one timer per batch, shared by all its requests.
                future = batch.future = loop.create_future()
                batch.timer = loop.call_later(self._wait_s, _expire, future, self._wait_s)
        self._hand_over()
        # Shielded: a request cancelled by its client must not cancel its batch-mates'.
        await asyncio.shield(future)

    # -- the fsync thread -----------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._pending_lock:
                batch, self._pending = self._pending, _Batch()
            if batch.records:
                self._commit(batch)
            if self._stopping:
                if not batch.records:
                    return
                self._wake.set()  # once more, for what arrived during the commit

    def _commit(self, batch: _Batch) -> None:
        error: BaseException | None = None
        data = b"".join(batch.records)
        with self.segment_lock:
            size = self._sizes.get(self._number, 0)
            try:
                if self._fd < 0:
                    self._open_segment()
                    size = self._sizes[self._number]
                os.write(self._fd, data)
                failpoint("log.before_fsync")
                os.fdatasync(self._fd)
                self.fsyncs += 1
            except OSError as exc:
                error = exc
                self._undo(size)
            else:
                self._resize(self._number, size + len(data))
                append = self._writer.append
                refused = sum(not append(row) for row in batch.rows)
                if refused and not self._hold:
                    self._hold = True
                    logger.error(
                        "The lake writer refused %d %s rows (its buffer is full); they stay "
                        "in the durable log %s, which keeps every segment until the next "
                        "start replays it.",
                        refused,
                        self._table,
                        self._dir,
                    )
        self._failing = error is not None
        if error is not None:
            logger.error("The durable log %s could not write a batch: %s", self._dir, error)
        future = batch.future
        if future is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                self._loop.call_soon_threadsafe(_settle, future, batch.timer, error)

    def _undo(self, size: int) -> None:
        """Cut a failed write off the segment, or give the segment up."""
        if self._fd < 0:
            return
        try:
            os.ftruncate(self._fd, size)
        except OSError:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
            # A later segment starts clean; this one ends where its last record is whole.
            self._number += 1

    # -- the writer's side ----------------------------------------------------------

    def seal(self) -> int:
        """Close the open segment and start the next; the caller holds ``segment_lock``.

        Returns the number of the newest sealed segment: every row in it or before it is
        in the writer's hands.
        """
        if self._sizes.get(self._number, 0) <= len(_MAGIC) and self._fd >= 0:
            return self._number - 1
        sealed = self._number
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._number += 1
        if not self._stopping:
            try:
                self._open_segment()
            except OSError as exc:
                # The next batch retries; the rows already taken are safe either way.
                logger.error("The durable log %s cannot open a segment: %s", self._dir, exc)
        return sealed

    def release(self, upto: int) -> None:
        """Delete the sealed segments up to ``upto``: their rows are in the lake."""
        if self._hold or upto <= self._released:
            return
        failpoint("log.before_release")
        deleted = False
        with self._sizes_lock:
            numbers = sorted(self._sizes)
        for number in numbers:
            if number > upto or number >= self._number:
                break
            try:
                self._path(number).unlink(missing_ok=True)
            except OSError as exc:
                logger.warning("The durable log could not delete segment %d: %s", number, exc)
                return
            self._resize(number, None)
            deleted = True
        self._released = upto
        if deleted:
            with contextlib.suppress(OSError):
                fsync_dir(self._dir)

    # -- start and stop -------------------------------------------------------------

    def replay(self, storage: LakeStorage, engine: Engine) -> ReplayResult:
        """Queue what the segments of a previous process still hold, once each.

        Rows the lake already has (a crash after publishing, before deleting the
        segment) are recognised by request id and timestamp and skipped. Call before
        :meth:`start`.
        """
        result = ReplayResult(segments=len(self._old))
        rows: list[Any] = []
        row_type = _ROW_TYPES[self._table]
        for number in self._old:
            found, torn = _read_segment(self._path(number))
            rows.extend(
                row_type(fields[0], _EPOCH + timedelta(microseconds=fields[1]), *fields[2:])
                for fields in found
            )
            result.torn_bytes += torn
        result.rows_found = len(rows)
        published = _published_keys(storage, engine, self._table, rows) if rows else set()
        fresh = [row for row in rows if _key(self._table, row) not in published]
        result.rows_published = len(rows) - len(fresh)
        result.rows_replayed = len(fresh)
        with self.segment_lock:
            refused = sum(not self._writer.append(row) for row in fresh)
            self._attach()
        if refused:
            self._hold = True
            logger.error(
                "%d replayed %s rows did not fit the writer's buffer; the log keeps them.",
                refused,
                self._table,
            )
        if not fresh and self._old:
            self.release(self._old[-1])
        if rows or result.torn_bytes:
            logger.info(
                "Durable log %s: %d rows in %d segments, %d already in the lake, %d "
                "replayed, %d bytes of an unconfirmed last write discarded.",
                self._dir,
                result.rows_found,
                result.segments,
                result.rows_published,
                result.rows_replayed,
                result.torn_bytes,
            )
        return result

    def stop(self) -> None:
        """Write and fsync what is pending, then stop the fsync thread."""
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._pending_lock:
            batch, self._pending = self._pending, _Batch()
        if batch.records:
            self._commit(batch)

    def close(self) -> None:
        """Close the files and release the directory; after the writer has closed."""
        self._stopping = True
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        # An empty open segment is not worth keeping.
        if self._sizes.get(self._number, 0) <= len(_MAGIC):
            self._path(self._number).unlink(missing_ok=True)
            self._resize(self._number, None)
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
        self._lock_file.close()


def open_slot(
    directory: Path, writer: LakeWriter, *, max_bytes: int, wait_s: float, slots: int = 64
) -> DurableLog:
    """Open the first log under ``directory/slot-<n>`` that no live process holds.

    Each server process of a replica (``serve --workers N``) takes its own slot; after a
    restart the slots are taken again, so what a dead process left is replayed by the
    process that takes its slot.
    """
    for slot in range(slots):
        try:
            return DurableLog(
                directory / f"slot-{slot}", writer, max_bytes=max_bytes, wait_s=wait_s
            )
        except LogInUseError:
            continue
    msg = f"All {slots} durable log slots under {directory} are held by live processes."
    raise LakeConfigError(msg)


def _expire(future: asyncio.Future[None], wait_s: float) -> None:
    if not future.done():
        msg = f"The durable log did not confirm the write within {wait_s:g} s."
        future.set_exception(LogUnavailableError(msg))
        future.exception()


def _settle(
    future: asyncio.Future[None], timer: asyncio.TimerHandle | None, error: BaseException | None
) -> None:
    if timer is not None:
        timer.cancel()
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        msg = f"The durable log could not write to the local disk ({error})."
        future.set_exception(LogUnavailableError(msg))
    # Nobody may be waiting any more (every request timed out): mark it retrieved.
    future.exception()


def _read_segment(path: Path) -> tuple[list[tuple[Any, ...]], int]:
    """The records of one segment up to the first incomplete one, and the bytes after."""
    data = path.read_bytes()
    if not data.startswith(_MAGIC):
        return [], len(data)
    rows: list[tuple[Any, ...]] = []
    at = len(_MAGIC)
    while at + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, at)
        start, end = at + _HEADER.size, at + _HEADER.size + length
        payload = data[start:end]
        if end > len(data) or zlib.crc32(payload) != crc:
            break
        rows.append(pickle.loads(payload))  # this replica's own file, never a client's
        at = end
    return rows, len(data) - at


def _key(table: TableName, row: tuple[Any, ...]) -> tuple[Any, ...]:
    if table == "predictions":
        return (row[0], _micros(row[1]), row[3], row[4])
    return (row[0], _micros(row[1]))


def _micros(ts: datetime) -> int:
    # The lake stores UTC microseconds and reads a naive time as UTC.
    aware = ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    return (aware - _EPOCH) // timedelta(microseconds=1)


def _published_keys(
    storage: LakeStorage, engine: Engine, table: TableName, rows: Sequence[tuple[Any, ...]]
) -> set[tuple[Any, ...]]:
    """Keys of ``rows`` that live lake files already hold (by request id and time)."""
    oldest = min(_micros(row[1]) for row in rows)
    wanted = {row[0] for row in rows}
    columns = ["request_id", "ts", "variant", "role"] if table == "predictions" else None
    columns = columns or ["request_id", "ts"]
    keys: set[tuple[Any, ...]] = set()
    for entry in live_files(engine, table):
        if entry.max_ts is not None and _micros(entry.max_ts) < oldest:
            continue
        data = storage.read_table(entry.path, columns=columns)
        for values in zip(*(data.column(c).to_pylist() for c in columns), strict=True):
            if values[0] in wanted:
                keys.add((values[0], _micros(values[1]), *values[2:]))
    return keys
