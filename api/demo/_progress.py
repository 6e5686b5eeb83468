"""A text progress bar on a stream, quiet enough for a log file when the stream is not a TTY."""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["ProgressBar"]


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        # A closed or replaced stream (pytest's capture, a pipe) is not a terminal.
        return False


class ProgressBar:
    """``[#####.....]  40%  1200/3000 requests  note``, redrawn in place on a terminal.

    On anything else (a pipe, a file, a CI log) it writes one line per tenth of the work
    instead, so the log stays readable and carriage returns never pile up.
    """

    def __init__(self, total: int, stream: TextIO, *, unit: str = "requests", width: int = 30):
        self._total = max(total, 1)
        self._stream = stream
        self._unit = unit
        self._width = width
        self._terminal = _is_terminal(stream)
        self._last_draw = 0.0
        self._last_tenth = 0
        self._done = 0

    def update(self, done: int, note: str = "") -> None:
        self._done = min(done, self._total)
        if self._terminal:
            now = time.monotonic()
            # Redrawing on every request would cost more than the request does.
            if now - self._last_draw >= 0.1 or self._done == self._total:
                self._last_draw = now
                self._write("\r" + self._line(note) + "\x1b[K")
            return
        tenth = self._done * 10 // self._total
        if tenth > self._last_tenth:
            self._last_tenth = tenth
            self._write(self._line(note) + "\n")

    def close(self) -> None:
        if self._terminal:
            self._write("\n")

    def _line(self, note: str) -> str:
        filled = self._done * self._width // self._total
        bar = "#" * filled + "." * (self._width - filled)
        percent = self._done * 100 // self._total
        line = f"[{bar}] {percent:3d}%  {self._done}/{self._total} {self._unit}"
        return f"{line}  {note}" if note else line

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()
