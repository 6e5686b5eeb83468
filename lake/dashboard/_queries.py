"""The dashboard's DuckDB connection and result cache, owned by one object per service."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from types import TracebackType
from typing import TypeVar

import duckdb

from lake.dashboard import _data_quality, _drift, _files, _prediction_drift, _series
from lake.errors import LakeConfigError
from lake.storage import LakeStorage

__all__ = ["DashboardQueries"]

T = TypeVar("T")

# Drift reference windows kept: one per (experiment, window) being looked at.
_CACHE_SIZE = 64


class DashboardQueries:
    """Time series, feature and prediction drift, data quality and experiment spans.

    Owns an in-memory DuckDB database (it holds no data; every query reads Parquet files
    by the list the snapshot gives) and a cache of results that depend only on immutable
    files (drift's reference window). The application creates one in its lifespan and
    closes it on shutdown; a notebook or a test uses it as a context manager.
    """

    def __init__(
        self, *, storage: LakeStorage | None = None, cache_size: int = _CACHE_SIZE
    ) -> None:
        # Opening a DuckDB database costs 20-40 ms, more than a panel's query: one per
        # owner, opened by the first query (a serving process that shows no dashboard
        # never starts DuckDB's threads); each query takes its own cursor, cheap and usable
        # on its own thread.
        self._con: duckdb.DuckDBPyConnection | None = None
        # The lake's storage, when it is not a local directory, is attached to the
        # connection so that read_parquet reaches its s3:// addresses.
        self._storage = storage
        self._closed = False
        self._cache: OrderedDict[Hashable, object] = OrderedDict()
        self._cache_size = cache_size
        # Routes run on a thread pool: the cache is read and trimmed by several threads.
        self._lock = threading.Lock()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._closed:
                msg = "The dashboard queries are closed; the service that owned them has stopped."
                raise LakeConfigError(msg)
            if self._con is None:
                self._con = duckdb.connect(":memory:")
                self._con.execute("SET GLOBAL TimeZone = 'UTC'")
                if self._storage is not None:
                    self._storage.attach_duckdb(self._con)
            return self._con.cursor()

    def cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``, remembered under ``key`` (least recently used out first)."""
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]  # type: ignore[return-value]
        value = compute()
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return value

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._cache.clear()
            if self._con is not None:
                self._con.close()
                self._con = None

    def __enter__(self) -> DashboardQueries:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # The queries are the modules' functions, which take their owner first: bound here,
    # ``queries.time_buckets(lake, ...)`` is ``_series.time_buckets(queries, lake, ...)``.
    experiment_span = _files.experiment_span
    time_buckets = _series.time_buckets
    feature_drift = _drift.feature_drift
    prediction_drift = _prediction_drift.prediction_drift
    data_quality = _data_quality.data_quality
