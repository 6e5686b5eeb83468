"""Exceptions raised by the lake package.

Every exception derives from one root, so a caller can catch the whole family::

    LakeError
    ├── LakeConfigError      an argument or setting is invalid (also a ValueError)
    ├── RowConversionError   rows do not fit their table's Arrow schema
    ├── LakeWriteError       a flush could not be written to disk or registered
    └── LakeReadError        a file listed in the manifest is missing or unreadable

The writer never lets these escape from ``LakeWriter.append``; only the explicit,
blocking calls (``LakeWriter.flush``, the readers) raise them.
"""

from __future__ import annotations

__all__ = [
    "LakeConfigError",
    "LakeError",
    "LakeReadError",
    "LakeWriteError",
    "RowConversionError",
]


class LakeError(Exception):
    """Root of every error raised by the lake package."""


class LakeConfigError(LakeError, ValueError):
    """An argument or setting given to the lake is invalid."""


class RowConversionError(LakeError):
    """Rows could not be converted to their table's Arrow schema."""


class LakeWriteError(LakeError):
    """A batch of rows could not be written to the lake or registered in the manifest."""


class LakeReadError(LakeError):
    """A file listed in the manifest is missing on disk or cannot be read."""
