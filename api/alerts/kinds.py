"""What each rule kind measures, its threshold's range and default, and its direction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

from api.errors import InvalidRequestError

__all__ = ["DRIFT_KINDS", "KINDS", "KindSpec", "check_threshold", "check_window"]


@dataclass(frozen=True, slots=True)
class KindSpec:
    """A rule kind: fires when the value is ``direction`` the threshold."""

    default_threshold: float
    low: float
    high: float
    low_inclusive: bool
    direction: Literal["above", "below"]
    default_window_s: int
    severity: Literal["critical", "error", "warning", "info"]
    measures: str

    def fires(self, value: float, threshold: float) -> bool:
        return value > threshold if self.direction == "above" else value < threshold


_HOUR: Final = 3600
_DAY: Final = 86_400

KINDS: Final[dict[str, KindSpec]] = {
    "guardrail_tripped": KindSpec(0.0, 0.0, 0.0, True, "above", _HOUR, "critical", "pulled"),
    "error_rate": KindSpec(0.05, 0.0, 1.0, True, "above", _HOUR, "error", "error rate"),
    "p99_latency_ms": KindSpec(
        500.0, 0.0, 3_600_000.0, False, "above", _HOUR, "warning", "p99 latency (ms)"
    ),
    "srm": KindSpec(0.001, 0.0, 0.5, False, "below", _HOUR, "warning", "sample-ratio p-value"),
    "feature_drift": KindSpec(0.2, 0.0, 100.0, False, "above", _DAY, "warning", "feature PSI"),
    "prediction_drift": KindSpec(
        0.2, 0.0, 100.0, False, "above", _DAY, "warning", "prediction PSI"
    ),
    "rows_dropped": KindSpec(0.0, 0.0, 1e12, True, "above", _HOUR, "error", "lake rows dropped"),
    "reallocation_stalled": KindSpec(
        600.0, 1.0, 90.0 * _DAY, True, "above", _HOUR, "error", "seconds since the last allocation"
    ),
}
DRIFT_KINDS: Final = frozenset({"feature_drift", "prediction_drift"})


def check_threshold(kind: str, threshold: float | None) -> float:
    """The rule's threshold (its kind's default when ``None``), or a 422 naming the range."""
    spec = KINDS[kind]
    if threshold is None:
        return spec.default_threshold
    if kind == "guardrail_tripped":
        if threshold != 0:
            msg = f"threshold {threshold!r}: a guardrail_tripped rule takes no threshold."
            raise InvalidRequestError(msg, code="invalid_threshold")
        return 0.0
    above_low = threshold >= spec.low if spec.low_inclusive else threshold > spec.low
    if not math.isfinite(threshold) or not above_low or threshold > spec.high:
        bracket = "[" if spec.low_inclusive else "("
        msg = (
            f"threshold {threshold!r} is out of range for a {kind} rule; it must be in "
            f"{bracket}{spec.low:g}, {spec.high:g}]."
        )
        raise InvalidRequestError(msg, code="invalid_threshold")
    return float(threshold)


def check_window(kind: str, window_s: int | None) -> int:
    """The rule's window (its kind's default when ``None``); drift windows are whole hours."""
    if window_s is None:
        return KINDS[kind].default_window_s
    if kind in DRIFT_KINDS and window_s % _HOUR:
        msg = f"window_s {window_s} of a {kind} rule must be a whole number of hours (3600 s)."
        raise InvalidRequestError(msg, code="invalid_window")
    return window_s
