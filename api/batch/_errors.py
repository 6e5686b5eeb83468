"""The errors of batch scoring: each a one-line sentence, exit code 2 from the command."""

from __future__ import annotations

from api.errors import CommandError

__all__ = ["BatchInputError", "BatchScoringError"]


class BatchScoringError(CommandError):
    """Batch scoring cannot go on (an unknown experiment or variant, a model that fails)."""


class BatchInputError(BatchScoringError):
    """The input is missing, unreadable, lacks a column, or holds a bad value (named)."""
