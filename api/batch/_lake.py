"""Logging batch rows to the lake: Arrow columns built from a chunk's arrays, files
written as the run goes and registered together at its end.

No :class:`lake.schemas.PredictionRow` is made per row: every column of
``PREDICTIONS_SCHEMA`` comes from numpy arrays or a repeated scalar, the ``features`` map
from the chunk's feature matrix (its keys a string array assembled from buffers). So the
lake costs a few vectorised passes per chunk rather than Python work per row.

Files are written whole through the lake's storage (:meth:`lake.storage.LakeStorage.
write_new`, the writer's path: temp file, fsync, rename; one PUT on S3) while the run
goes on, and listed in the manifest in one transaction once every row is scored
(:func:`lake.manifest.register_files`), with SIGINT held off for that transaction. A run
that fails or is interrupted deletes the files it wrote: the lake gets all of a run's
rows or none. A run killed outright (SIGKILL) may leave unlisted files, which no reader
sees.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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

    def map_array(self, matrix: NDArray[np.float64]) -> pa.MapArray:
        """The ``features`` column of rows whose (unredacted) features are ``matrix``."""
        n, d = matrix.shape[0], len(self.names)
        values = np.ascontiguousarray(matrix[:, self.sources], dtype=np.float64)
        if self._hashed:
            values = values.copy()
            assert self._secret is not None
            for j, prefix in self._hashed:
                values[:, j] = [keyed_hash(self._secret, prefix, v) for v in values[:, j]]
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
        return pa.MapArray.from_arrays(offsets, keys, pa.array(values.reshape(-1)))


def _repeat(value: object, field: pa.Field, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, field.type), n)


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
        size = self._storage.write_new(path, table, compression=self._compression, fresh_name=True)
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

    def commit(self) -> int:
        """List every file in the manifest in one transaction; return the rows listed.

        SIGINT is held off for the transaction (in the main thread), so an interrupt
        cannot leave the run registered while its caller deletes the files.
        """
        main = threading.current_thread() is threading.main_thread()
        if main:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
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
        finally:
            if main:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        return sum(e.rows for e in entries)

    def discard(self) -> None:
        """Delete every file written, unless they were committed."""
        if self._committed:
            return
        for entry in self._entries:
            try:
                self._storage.delete(entry.path)
            except (OSError, pa.ArrowException) as exc:
                log.warning("Could not delete the unlisted lake file %s: %s", entry.path, exc)
        self._entries = []
