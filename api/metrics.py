"""Prometheus metrics, correct with several uvicorn workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``banditlake serve --workers N`` sets it), every
process writes its samples to files there and ``/metrics`` aggregates them; otherwise
each app has its own registry, so tests can build several apps in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        # The ``*_created`` series double the output and no dashboard reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        # In multiprocess mode the values live in files; the registry only names them.
        registry = None if _multiprocess_dir() else self.registry
        self.requests = Counter(
            "banditlake_requests_total",
            "Predictions served, by experiment, variant and status.",
            ["experiment", "variant", "role", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "banditlake_request_latency_seconds",
            "Time to serve a prediction, model call included.",
            ["experiment", "variant"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "banditlake_batch_size",
            "Rows per executed model call.",
            ["experiment", "variant"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.lake_queue_depth = Gauge(
            "banditlake_lake_queue_depth",
            "Rows waiting in the lake writer's buffer.",
            ["table"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.lake_rows_written = Counter(
            "banditlake_lake_rows_written_total",
            "Rows written to the lake.",
            ["table"],
            registry=registry,
        )
        self.lake_rows_dropped = Counter(
            "banditlake_lake_rows_dropped_total",
            "Rows dropped because the lake writer's buffer was full.",
            ["table"],
            registry=registry,
        )
        self.provider = Gauge(
            "banditlake_variant_provider",
            "1 for the execution provider a variant's session actually uses.",
            ["experiment", "variant", "provider"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.feedback = Counter(
            "banditlake_feedback_total",
            "Feedback items accepted.",
            ["experiment"],
            registry=registry,
        )
        self.feedback_duplicates = Counter(
            "banditlake_feedback_duplicates_total",
            "Feedback items not stored because their request id already had feedback.",
            registry=registry,
        )
        self._synced: dict[tuple[str, str], int] = {}

    def sync_counter(self, counter: Counter, table: str, total: int) -> None:
        """Advance a Prometheus counter to a writer's running total."""
        key = (counter._name, table)
        delta = total - self._synced.get(key, 0)
        if delta > 0:
            counter.labels(table).inc(delta)
            self._synced[key] = total

    def render(self) -> bytes:
        directory = _multiprocess_dir()
        if directory is None:
            return bytes(generate_latest(self.registry))
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(registry))
