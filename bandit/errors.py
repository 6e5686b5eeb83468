"""Exceptions raised by :mod:`bandit`.

Every exception derives from one root, so callers (the service maps them to
HTTP status codes in one place) can catch the whole family::

    BanditError
    └── InvalidInputError (also a ValueError)
        ├── InvalidStatsError      sufficient statistics that cannot occur
        ├── InvalidPolicyError     an unknown policy kind or a bad parameter
        └── InvalidArrayError      an array of the wrong shape, dtype or range

Messages are full sentences that name the offending value.
"""

from __future__ import annotations

__all__ = [
    "BanditError",
    "InvalidArrayError",
    "InvalidInputError",
    "InvalidPolicyError",
    "InvalidStatsError",
]


class BanditError(Exception):
    """Root of every exception raised by :mod:`bandit`."""


class InvalidInputError(BanditError, ValueError):
    """An argument has a value the statistics cannot be computed from."""


class InvalidStatsError(InvalidInputError):
    """Sufficient statistics that no sequence of rewards can produce."""


class InvalidPolicyError(InvalidInputError):
    """An unknown policy kind, an unknown parameter or a parameter out of range."""


class InvalidArrayError(InvalidInputError):
    """An array argument has the wrong shape, dtype or values."""
