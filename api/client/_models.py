"""Typed results of the serving API (the policy API's results are :mod:`api.schemas` models).

A batch predict answers row by row: a row whose model call failed is a
:class:`FailedPrediction` carrying its :class:`RowError`, the others are
:class:`Prediction` — so ``prediction`` is a number wherever the type says so.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "FailedPrediction",
    "Feedback",
    "FeedbackAck",
    "FeedbackBatchAck",
    "Prediction",
    "RowError",
]


@dataclass(frozen=True, slots=True)
class Prediction:
    """One served request: keep ``request_id`` to send its feedback later."""

    request_id: str
    variant: str
    prediction: float
    # Class probabilities (or the raw output row) when the model has them, else ``None``.
    scores: tuple[float, ...] | None
    # The probability with which ``variant`` was chosen for this request.
    propensity: float
    allocation_version: int


@dataclass(frozen=True, slots=True)
class RowError:
    """Why one row of a batch got no prediction, as the single predict would have refused it."""

    code: str
    message: str
    status: int


@dataclass(frozen=True, slots=True)
class FailedPrediction:
    """A batch row the chosen variant could not answer; it is in the lake all the same."""

    request_id: str
    variant: str
    propensity: float
    allocation_version: int
    error: RowError


@dataclass(frozen=True, slots=True)
class Feedback:
    """One item of a feedback batch: a ``reward``, or a ``label`` scored by the experiment."""

    request_id: str
    reward: float | None = None
    label: float | str | None = None


@dataclass(frozen=True, slots=True)
class FeedbackAck:
    """``duplicate``: feedback for this request id had already been counted."""

    accepted: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class FeedbackBatchAck:
    accepted: int
    duplicates: int
