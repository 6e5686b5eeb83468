"""Logging batch rows to the lake: Arrow columns built from a chunk's arrays, files
written as the run goes and registered together at its end.

No :class:`lake.schemas.PredictionRow` is made per row: every column of
``PREDICTIONS_SCHEMA`` comes from numpy arrays or a repeated scalar, the ``features`` map
from the chunk's feature matrix (its keys a string array assembled from buffers). So the
lake costs a few vectorised passes per chunk rather than Python work per row.

Files are encoded in memory and written whole through the lake's storage
(:meth:`lake.storage.LakeStorage.write_bytes`: temp file, fsync, rename; one PUT on S3)
while the run goes on, and listed in the manifest in one transaction once every row is scored
(:func:`lake.manifest.register_files`), with SIGINT held off for that transaction. A run
that fails or is interrupted deletes the files it wrote: the lake gets all of a run's
rows or none. A run killed outright (SIGKILL) may leave unlisted files, which no reader
sees.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray
from sqlalchemy import Engine

from api.serving.redaction import RedactionPlan, keyed_hash
from lake.layout import part_name, partition_path
from lake.manifest import FileEntry, register_files
from lake.schemas import PREDICTIONS_SCHEMA, InferenceMode
from lake.storage import LakeStorage

__all__ = ["LoggedFeatures", "StagedFiles", "prediction_table"]

log = logging.getLogger(__name__)

_FIELDS = {f.name: f for f in PREDICTIONS_SCHEMA}
_WORKERS: Final = 2
_IN_FLIGHT: Final = 3
# Columns with a few distinct values per file; a dictionary over the unique request ids
# or the feature values would only cost time.
_DICTIONARY_COLUMNS: Final = [
    "experiment", "variant", "role", "model_sha256", "provider", "status", "mode",
    "writer_id", "features.key_value.key",
]  # fmt: skip


class LoggedFeatures:
    """Which features the lake holds (after the experiment's redaction), and how."""

    def __init__(
        self,
        experiment: str,
        names: Sequence[str],
        redaction: RedactionPlan | None,
        secret: bytes | None,
    ) -> None:
        dropped = set(redaction.drop) if redaction else set()
        hashed = {n: p for n, p in redaction.hashed} if redaction else {}
        if secret is None:
            # Never logged raw: without the key a feature to hash is dropped.
            dropped |= set(hashed)
            hashed = {}
        kept = [n for n in names if n not in dropped]
        self.names = tuple(kept)
        self.sources = [list(names).index(n) for n in kept]
        self._hashed = [(j, hashed[n]) for j, n in enumerate(kept) if n in hashed]
        self._secret = secret
        encoded = [n.encode() for n in kept]
        self._key_bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self._key_lengths = np.array([len(b) for b in encoded], dtype=np.int64)
        self._cache: tuple[int, pa.Array, pa.Array] | None = None

    def map_array(self, matrix: NDArray[np.float64]) -> pa.MapArray:
        """The ``features`` column of rows whose (unredacted) features are ``matrix``."""
        n = matrix.shape[0]
        whole = self.sources == list(range(matrix.shape[1]))
        values = np.ascontiguousarray(matrix if whole else matrix[:, self.sources], np.float64)
        if self._hashed:
            values = values.copy()
            assert self._secret is not None
            for j, prefix in self._hashed:
                values[:, j] = [keyed_hash(self._secret, prefix, v) for v in values[:, j]]
        offsets, keys = self._keys(n)
        return pa.MapArray.from_arrays(offsets, keys, pa.array(values.reshape(-1)))

    def _keys(self, n: int) -> tuple[pa.Array, pa.Array]:
        """The map's offsets and keys for ``n`` rows (the same for every full chunk)."""
        cached = self._cache
        if cached is not None and cached[0] == n:
            return cached[1], cached[2]
        d = len(self.names)
        offsets = pa.array(
            np.arange(0, (n + 1) * d, d, dtype=np.int32) if d else np.zeros(n + 1, np.int32)
        )
        key_offsets = np.zeros(n * d + 1, dtype=np.int64)
        np.cumsum(np.tile(self._key_lengths, n), out=key_offsets[1:])
        if key_offsets[-1] >= 2**31:
            msg = "A chunk's feature names exceed 2 GiB; use a smaller --batch-size."
            raise ValueError(msg)
        keys = pa.StringArray.from_buffers(
            n * d,
            pa.py_buffer(key_offsets.astype(np.int32)),
            pa.py_buffer(np.tile(self._key_bytes, n).tobytes()),
        )
        self._cache = (n, offsets, keys)
        return offsets, keys


def _repeat(value: object, field: pa.Field, n: int) -> pa.Array:
    if isinstance(value, str):
        return _constant_string(value, n)
    return pa.repeat(pa.scalar(value, field.type), n)


@functools.lru_cache(maxsize=64)
def _constant_string(value: str, n: int) -> pa.Array:
    # Built from buffers: pa.repeat of a string scalar copies it row by row (~100x slower).
    data = value.encode()
    offsets = np.arange(n + 1, dtype=np.int64) * len(data)
    if offsets[-1] >= 2**31:
        return pa.array([value] * n, pa.string())
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data * n)
    )


def prediction_table(
    *,
    request_ids: pa.Array,
    ts: datetime,
    experiment: str,
    variant: str,
    role: str,
    version: int,
    propensity: NDArray[np.float64] | float,
    unit_ids: pa.Array | None,
    features: pa.MapArray,
    predictions: NDArray[np.float64],
    scores: NDArray[np.float64] | None,
    latency_ms: float,
    model_sha256: str,
    provider: str,
    writer_id: str,
    mode: InferenceMode = "batch",
) -> pa.Table:
    """The lake rows of one variant's share of a chunk, with ``PREDICTIONS_SCHEMA``."""
    n = len(request_ids)
    f = _FIELDS
    if isinstance(propensity, float):
        propensities = _repeat(propensity, f["propensity"], n)
    else:
        propensities = pa.array(propensity, pa.float64())
    if scores is None:
        score_column = pa.nulls(n, f["scores"].type)
    else:
        k = scores.shape[1]
        score_column = pa.ListArray.from_arrays(
            pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32)),
            pa.array(np.ascontiguousarray(scores, dtype=np.float64).reshape(-1)),
        )
    units = pa.nulls(n, pa.string()) if unit_ids is None else pc.cast(unit_ids, pa.string())
    columns = [
        request_ids,
        _repeat(ts, f["ts"], n),
        _repeat(experiment, f["experiment"], n),
        _repeat(variant, f["variant"], n),
        _repeat(role, f["role"], n),
        _repeat(version, f["allocation_version"], n),
        propensities,
        units,
        features,
        pa.array(predictions, pa.float64()),
        score_column,
        _repeat(latency_ms, f["latency_ms"], n),
        _repeat(model_sha256, f["model_sha256"], n),
        _repeat(provider, f["provider"], n),
        _repeat("ok", f["status"], n),
        pa.nulls(n, pa.string()),
        _repeat(mode, f["mode"], n),
        _repeat(writer_id, f["writer_id"], n),
    ]
    return pa.Table.from_arrays(columns, schema=PREDICTIONS_SCHEMA)


class StagedFiles:
    """Prediction files of one run: written as it goes, registered together at the end.

    Thread-safe for :meth:`write` (one writer thread besides the caller is fine).
    """

    def __init__(
        self,
        storage: LakeStorage,
        engine: Engine,
        *,
        writer_id: str,
        compression: str = "zstd",
    ) -> None:
        self._storage = storage
        self._engine = engine
        self._writer_id = writer_id
        self._compression = compression
        self._token = secrets.token_hex(4)
        self._seq = 0
        self._entries: list[FileEntry] = []
        self._lock = threading.Lock()
        self._committed = False
        # Files are encoded and written by a small pool (Parquet encoding and the fsync
        # release the GIL), at most ``_IN_FLIGHT`` at a time, so memory stays bounded.
        self._pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="lake-file")
        self._pending: deque[Future[None]] = deque()

    @property
    def rows(self) -> int:
        return sum(e.rows for e in self._entries)

    @property
    def files(self) -> int:
        return len(self._entries)

    def write(self, table: pa.Table) -> None:
        """Write ``table`` as one new file of the run (not yet visible to readers)."""
        if table.num_rows == 0:
            return
        now = datetime.now(UTC)
        with self._lock:
            self._seq += 1
            seq = self._seq
        path = (
            f"{partition_path('predictions', now)}/{part_name(self._writer_id, seq, self._token)}"
        )
        entry_rows = table.num_rows
        ts = pc.min_max(table["ts"])
        # Listed before the write: a write cut short by an interrupt is still deleted.
        entry = FileEntry(
            table="predictions",
            path=path,
            rows=entry_rows,
            bytes=0,
            writer_id=self._writer_id,
            min_ts=ts["min"].as_py(),
            max_ts=ts["max"].as_py(),
            created_at=now,
        )
        with self._lock:
            self._entries.append(entry)
        while len(self._pending) >= _IN_FLIGHT:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._encode, entry, table))

    def _encode(self, entry: FileEntry, table: pa.Table) -> None:
        # Encoded in memory, then written whole (local: temp file, fsync, rename; S3: one
        # PUT). Encoding straight into a Python file object would cross into Python (and
        # wait for the GIL) at every page, several times slower beside the model calls.
        sink = pa.BufferOutputStream()
        pq.write_table(
            table, sink, compression=self._compression, use_dictionary=_DICTIONARY_COLUMNS
        )
        data = sink.getvalue()
        self._storage.write_bytes(entry.path, data.to_pybytes())
        size = data.size
        with self._lock:
            i = self._entries.index(entry)
            self._entries[i] = FileEntry(
                table=entry.table,
                path=entry.path,
                rows=entry.rows,
                bytes=size,
                writer_id=entry.writer_id,
                min_ts=entry.min_ts,
                max_ts=entry.max_ts,
                created_at=entry.created_at,
            )

    def wait(self) -> None:
        """Wait until every file handed to :meth:`write` is written; raise its error."""
        while self._pending:
            self._pending.popleft().result()

    def commit(self) -> int:
        """List every file in the manifest in one transaction; return the rows listed.

        The caller holds SIGINT off around it (and the output's rename), so an interrupt
        cannot leave the run listed while the files are being deleted.
        """
        self.wait()
        self._pool.shutdown()
        now = datetime.now(UTC)
        entries = [
            FileEntry(
                table=e.table,
                path=e.path,
                rows=e.rows,
                bytes=e.bytes,
                writer_id=e.writer_id,
                min_ts=e.min_ts,
                max_ts=e.max_ts,
                created_at=now,
            )
            for e in self._entries
        ]
        if entries:
            register_files(self._engine, entries)
        self._committed = True
        return sum(e.rows for e in entries)

    def discard(self) -> None:
        """Delete every file written, unless they were committed."""
        for future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True)
        self._pending.clear()
        if self._committed:
            return
        for entry in self._entries:
            try:
                self._storage.delete(entry.path)
            except (OSError, pa.ArrowException) as exc:
                log.warning("Could not delete the unlisted lake file %s: %s", entry.path, exc)
        self._entries = []
