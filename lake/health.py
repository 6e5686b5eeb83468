"""Serving health of one variant: requests, errors and a latency histogram, adding with ``+``.

======== ================================= =========
field    per-row contribution              combine
======== ================================= =========
served   1 for every logged request        ``+``
errors   1 for a request with status error ``+``
latency  1 in the row's latency bucket     ``+`` per bucket
======== ================================= =========

Latency buckets are log-spaced, 10 µs to about 70 s, 10% apart, so a quantile read from
the histogram is within 10% of the exact one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import polars as pl
from numpy.typing import NDArray

__all__ = ["LATENCY_EDGES_MS", "Health", "health_by_key", "latency_quantile"]

_LATENCY_BASE_MS: Final = 0.01
_LATENCY_RATIO: Final = 1.1
_LATENCY_BUCKETS: Final = 166
LATENCY_EDGES_MS: NDArray[np.float64] = np.asarray(
    _LATENCY_BASE_MS * _LATENCY_RATIO ** np.arange(1, _LATENCY_BUCKETS + 1), dtype=np.float64
)
_EMPTY: Final = (0,) * _LATENCY_BUCKETS


def latency_quantile(histogram: Sequence[int] | NDArray[np.int64], q: float) -> float | None:
    """The ``q`` quantile in milliseconds (the upper edge of its bucket), or ``None``."""
    counts = np.asarray(histogram, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    index = int(np.searchsorted(np.cumsum(counts), rank))
    return float(LATENCY_EDGES_MS[min(index, _LATENCY_BUCKETS - 1)])


@dataclass(frozen=True, slots=True)
class Health:
    """Requests, failed requests and requests per latency bucket (``LATENCY_EDGES_MS``)."""

    served: int = 0
    errors: int = 0
    latency: tuple[int, ...] = field(default=_EMPTY)

    def __add__(self, other: Health) -> Health:
        if not isinstance(other, Health):
            return NotImplemented
        return Health(
            self.served + other.served,
            self.errors + other.errors,
            tuple(a + b for a, b in zip(self.latency, other.latency, strict=True)),
        )

    @property
    def error_rate(self) -> float:
        return self.errors / self.served if self.served else 0.0

    def p(self, q: float) -> float | None:
        """Latency quantile ``q`` in milliseconds (within 10%), ``None`` before any request."""
        return latency_quantile(self.latency, q)


def _bucket(latency_ms: pl.Expr) -> pl.Expr:
    # The bucket whose upper edge is the first at or above the latency (as searchsorted).
    return (
        ((latency_ms.clip(lower_bound=1e-9) / _LATENCY_BASE_MS).log() / math.log(_LATENCY_RATIO))
        .ceil()
        .sub(1)
        .clip(0, _LATENCY_BUCKETS - 1)
        .cast(pl.Int64)
    )


def health_by_key(frame: pl.DataFrame, keys: Sequence[str]) -> dict[tuple[Any, ...], Health]:
    """:class:`Health` of each group of prediction rows (``status``, ``latency_ms``) by ``keys``.

    One group-by over (keys, latency bucket); the histograms are filled from its groups
    (a few dozen per file), not from the rows.
    """
    grouped = frame.group_by(*keys, _bucket(pl.col("latency_ms")).alias("bucket")).agg(
        pl.len(), (pl.col("status") == "error").sum()
    )
    histograms: dict[tuple[Any, ...], list[int]] = {}
    errors: dict[tuple[Any, ...], int] = {}
    columns = [grouped.get_column(name).to_list() for name in grouped.columns]
    for *key, bucket, served, failed in zip(*columns, strict=True):
        group = tuple(key)
        histogram = histograms.get(group)
        if histogram is None:
            histogram = histograms[group] = [0] * _LATENCY_BUCKETS
            errors[group] = 0
        histogram[bucket] += served
        errors[group] += failed
    return {
        group: Health(sum(histogram), errors[group], tuple(histogram))
        for group, histogram in histograms.items()
    }
