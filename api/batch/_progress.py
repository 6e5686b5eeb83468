"""Progress of a scoring run on a terminal: rows, rows/s and the time left, in place."""

from __future__ import annotations

import time
from typing import Final, TextIO

__all__ = ["Progress"]

_EVERY_S: Final = 0.25


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Redraws ``1,234,567 rows  412,000 rows/s  ETA 0:07`` at most four times a second.

    Silent unless ``stream`` is a terminal: a log file gets the JSON summary instead.
    """

    def __init__(self, stream: TextIO, *, total_rows: int | None, total_bytes: int | None):
        self._stream = stream
        self._on = _is_terminal(stream)
        self._total_rows = total_rows
        self._total_bytes = total_bytes
        self._start = time.perf_counter()
        self._shown = 0.0

    def update(self, rows: int, bytes_read: int = 0, *, force: bool = False) -> None:
        if not self._on:
            return
        now = time.perf_counter()
        if not force and now - self._shown < _EVERY_S:
            return
        self._shown = now
        elapsed = max(now - self._start, 1e-9)
        rate = rows / elapsed
        done: float | None = None
        if self._total_rows:
            done = rows / self._total_rows
        elif self._total_bytes and bytes_read:
            done = min(bytes_read / self._total_bytes, 1.0)
        line = f"{rows:,} rows  {rate:,.0f} rows/s"
        if done is not None and done > 0:
            line += f"  {done:6.1%}  ETA {_clock(elapsed * (1 - done) / done)}"
        self._stream.write(f"\r{line}\033[K")
        self._stream.flush()

    def close(self) -> None:
        if self._on:
            self._stream.write("\n")
            self._stream.flush()
