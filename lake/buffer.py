"""The writer's buffer: rows accepted and not yet written, with counters that add up.

Every counter moves under the same lock as the rows, so at every instant
``rows_written + rows_dropped + rows_pending == rows_appended``. ``append`` is on the
request path: it holds the lock for a list append.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["RowBuffer", "WriterStats"]


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


class RowBuffer:
    """Rows of one writer from ``append`` until they are written or dropped.

    Parameters
    ----------
    max_rows
        Most rows pending (new and awaiting retry); rows appended beyond it are dropped.
    flush_rows
        ``due`` is set when this many new rows are buffered.
    due
        The event that wakes the writer's flusher.
    """

    def __init__(self, *, max_rows: int, flush_rows: int, due: threading.Event) -> None:
        self._max_rows = max_rows
        self._flush_rows = flush_rows
        self._due = due
        self._lock = threading.Lock()
        self._rows: list[tuple[Any, ...]] = []
        self._pending = 0
        self._appended = 0
        self._written = 0
        self._dropped = 0
        self._rejected = 0
        self._files = 0
        self._closed = False

    def append(self, row: tuple[Any, ...]) -> bool:
        """Accept ``row``, or count it dropped when full or closed (then ``False``)."""
        with self._lock:
            self._appended += 1
            if self._closed or self._pending >= self._max_rows:
                self._dropped += 1
                return False
            self._rows.append(row)
            self._pending += 1
            due = len(self._rows) == self._flush_rows
        if due:
            self._due.set()
        return True

    def close(self) -> bool:
        """Refuse rows from now on; ``False`` when it was closed already."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            return True

    def take(self) -> list[tuple[Any, ...]]:
        """The new rows, handed over for writing (they stay pending until counted)."""
        with self._lock:
            rows, self._rows = self._rows, []
        return rows

    def written(self, rows: int) -> None:
        """Count ``rows`` taken rows as written in one file."""
        with self._lock:
            self._pending -= rows
            self._written += rows
            self._files += 1

    def rejected(self, rows: int) -> None:
        """Count ``rows`` taken rows as dropped because they do not fit the schema."""
        with self._lock:
            self._pending -= rows
            self._dropped += rows
            self._rejected += rows

    def drop_pending(self) -> int:
        """Give up every pending row (new and taken); returns how many were dropped."""
        with self._lock:
            lost = self._pending
            self._dropped += lost
            self._pending = 0
            self._rows = []
        return lost

    @property
    def new_rows(self) -> int:
        """Rows appended and not yet taken."""
        return len(self._rows)

    @property
    def pending(self) -> int:
        """Rows accepted and not yet written or dropped."""
        return self._pending

    @property
    def dropped(self) -> int:
        """Rows dropped so far."""
        return self._dropped

    def stats(self) -> WriterStats:
        """All counters from one instant."""
        with self._lock:
            return WriterStats(
                rows_appended=self._appended,
                rows_written=self._written,
                rows_dropped=self._dropped,
                rows_rejected=self._rejected,
                rows_pending=self._pending,
                files_written=self._files,
            )
