"""Prometheus metrics, correct with several uvicorn workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``banditlake serve --workers N`` sets it), every
process writes its samples to files there and ``/metrics`` aggregates them; otherwise
each app has its own registry, so tests can build several apps in one process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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

from lake.inventory import TableInventory
from lake.storage import OperationStats

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
        self.lake_log_bytes = Gauge(
            "banditlake_lake_log_bytes",
            "Bytes in the durable log not yet known to be in the lake (durable mode).",
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
        # Refused requests never reach the lake: this counter is the data-quality panel's
        # source for them (api.serving.rejections labels known features only).
        self.features_rejected = Counter(
            "banditlake_features_rejected_total",
            "Feature values refused in predict requests, by experiment, feature and reason "
            "(non_finite: NaN or infinite, the request answered 422).",
            ["experiment", "feature", "reason"],
            registry=registry,
        )
        store_labels = ["store", "operation"]
        self.store_requests = Counter(
            "banditlake_object_store_requests_total",
            "Requests to the lake's and the models' storage (S3 or local disk), by operation.",
            store_labels,
            registry=registry,
        )
        self.store_errors = Counter(
            "banditlake_object_store_errors_total",
            "Storage requests that failed (a missing file asked about is not a failure).",
            store_labels,
            registry=registry,
        )
        self.store_bytes = Counter(
            "banditlake_object_store_bytes_total",
            "Bytes written to or read from the storage.",
            store_labels,
            registry=registry,
        )
        self.store_seconds = Counter(
            "banditlake_object_store_seconds_total",
            "Time spent in storage requests; divided by the requests, the mean latency.",
            store_labels,
            registry=registry,
        )
        lake_labels = ["table"]
        self.lake_files = Gauge(
            "banditlake_lake_files",
            "Files of a lake table: small (flushed, not compacted yet), published "
            "(compacted, in the Delta table) and replaced (awaiting deletion).",
            ["table", "state"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.lake_bytes = Gauge(
            "banditlake_lake_bytes",
            "Bytes of a lake table's live files.",
            lake_labels,
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.lake_rows = Gauge(
            "banditlake_lake_rows",
            "Rows of a lake table's live files, and of those published.",
            ["table", "state"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.lake_published_version = Gauge(
            "banditlake_lake_published_version",
            "Latest version of a lake table's Delta table (-1 before the first).",
            lake_labels,
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.compactions = Gauge(
            "banditlake_lake_compactions",
            "Compactions of a lake table so far, by status.",
            ["table", "status"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        # The stream consumer (api.streaming): one series per experiment and message kind.
        self.stream_messages = Counter(
            "banditlake_stream_messages_total",
            "Stream messages handled, by experiment, kind (predict or feedback) and outcome "
            "(answered, duplicate, invalid, retried).",
            ["experiment", "kind", "outcome"],
            registry=registry,
        )
        self.stream_latency = Histogram(
            "banditlake_stream_processing_seconds",
            "Time from a stream message's receipt to its acknowledgement.",
            ["experiment", "kind"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.stream_lag = Gauge(
            "banditlake_stream_lag_messages",
            "Messages in the stream not yet delivered to the consumer (its num_pending).",
            ["experiment", "kind"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.stream_in_flight = Gauge(
            "banditlake_stream_in_flight",
            "Stream messages received and not yet acknowledged.",
            ["experiment", "kind"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._synced: dict[tuple[str, ...], float] = {}

    def sync_counter(self, counter: Counter, label: str | tuple[str, ...], total: float) -> None:
        """Advance a Prometheus counter to a running total kept elsewhere."""
        labels = (label,) if isinstance(label, str) else label
        key = (counter._name, *labels)
        delta = total - self._synced.get(key, 0)
        if delta > 0:
            counter.labels(*labels).inc(delta)
            self._synced[key] = total

    def sync_storage(self, store: str, stats: Mapping[str, OperationStats]) -> None:
        """Copy a storage's per-operation counters (:meth:`LakeStorage.stats`)."""
        for operation, s in stats.items():
            labels = (store, operation)
            self.sync_counter(self.store_requests, labels, s.requests)
            self.sync_counter(self.store_errors, labels, s.errors)
            self.sync_counter(self.store_bytes, labels, s.bytes)
            self.sync_counter(self.store_seconds, labels, s.seconds)

    def set_inventory(self, inventory: Mapping[str, TableInventory]) -> None:
        """Show what the manifest lists (:func:`lake.inventory.lake_inventory`)."""
        for table, t in inventory.items():
            self.lake_files.labels(table, "small").set(t.small_files)
            self.lake_files.labels(table, "published").set(t.published_files)
            self.lake_files.labels(table, "replaced").set(t.replaced_files)
            self.lake_bytes.labels(table).set(t.live_bytes)
            self.lake_rows.labels(table, "live").set(t.live_rows)
            self.lake_rows.labels(table, "published").set(t.published_rows)
            version = -1 if t.delta_version is None else t.delta_version
            self.lake_published_version.labels(table).set(version)
            for status, count in t.compactions:
                self.compactions.labels(table, status).set(count)

    def features_rejected_counts(self, experiment: str, reason: str) -> dict[str, int]:
        """``features_rejected`` of one experiment by feature: every worker's since it started."""
        registry = self.registry
        directory = _multiprocess_dir()
        if directory is not None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        counts: dict[str, int] = {}
        for family in registry.collect():
            if family.name != "banditlake_features_rejected":
                continue
            for sample in family.samples:
                labels = sample.labels
                if (
                    sample.name.endswith("_total")
                    and labels.get("experiment") == experiment
                    and labels.get("reason") == reason
                ):
                    feature = labels["feature"]
                    counts[feature] = counts.get(feature, 0) + int(sample.value)
        return counts

    def render(self) -> bytes:
        directory = _multiprocess_dir()
        if directory is None:
            return bytes(generate_latest(self.registry))
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(registry))
