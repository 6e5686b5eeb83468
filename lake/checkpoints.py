"""Checkpoints of the lake's sufficient statistics, kept in the SQL store.

A :class:`lake.aggregates.LakeAggregator`'s state (:class:`AggregatorState`) is encoded to
bytes (:func:`encode`), stored with its SHA-256 in ``lake_checkpoints`` under a name
(:func:`save_checkpoint`) and read back (:func:`load_checkpoint`). The reallocation lease
holder checkpoints after each pass that moved the watermarks; a new holder loads the
checkpoint and folds only the files registered after it, so taking over costs the
checkpoint's size (the requests pending within the feedback lookback, the orphan and
counted ids, the arm keys' totals), not the lake's.

Format (``FORMAT_VERSION`` 1), no pickle::

    b"BLCKPT\\0\\0" | u32 version | u32 header length | header (JSON) | sections

The JSON header holds the scalars (lookback, watermarks, rows, latest) and each
section's byte length; each section is one Arrow IPC stream (zstd-compressed buffers):
the totals, then the pending entries, orphans and counted ids with their expiry queues.

A checkpoint that is corrupt (its SHA-256 does not match, or it does not decode), of
another format version or built with another feedback lookback is ignored with a
warning: :func:`load_checkpoint` returns ``None`` and the caller folds the lake from the
start, as if there were none.

The manifest contract (:mod:`lake.manifest`) applies to a checkpoint as to any
incremental consumer: resuming reads the files registered after its watermarks, so the
compactor keeps the replaced files above :func:`oldest_watermarks` on storage. If one
is deleted anyway (its grace period ended first), the resumed aggregator meets a
replaced file that is gone and rebuilds from the lake as of one manifest id
(:func:`lake.manifest.files_as_of`: the compacted files instead of the ones they
replaced); keeping the files only saves that rebuild.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
from sqlalchemy import Connection, Engine, insert, select, update

from bandit.ipw import IpwStats
from bandit.stats import ArmStats
from lake.aggregates import AggregatorState, Entry, LakeAggregator
from lake.health import Health
from lake.manifest import lake_checkpoints
from lake.storage import LakeStorage
from lake.variants import ArmKey, VariantVersionStats

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "CheckpointInfo",
    "decode",
    "encode",
    "load_checkpoint",
    "oldest_watermarks",
    "resume",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION: Final = 1
_MAGIC: Final = b"BLCKPT\0\0"
_PREFIX: Final = struct.Struct("<8sII")
_IPC: Final = pa.ipc.IpcWriteOptions(compression="zstd")
_SECTIONS: Final = (
    "totals",
    "pending",
    "pending_order",
    "orphans",
    "orphan_order",
    "rewarded",
    "rewarded_order",
)
_IPW: Final = ("sum_w", "sum_wr", "sum_w2", "sum_w2r", "sum_w2r2", "max_w")

Progress = Callable[[], None] | None


class CheckpointError(ValueError):
    """A checkpoint's bytes are not a state this code can restore."""


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """What :func:`save_checkpoint` stored, and what it cost."""

    name: str
    watermarks: dict[str, int]
    bytes: int
    sha256: str
    rows: int
    encode_s: float
    write_s: float


# -- encoding ---------------------------------------------------------------------------


def _table(columns: dict[str, pa.Array]) -> pa.Table:
    return pa.table(columns)


def _dict_strings(values: list[str]) -> pa.Array:
    # Experiment, variant and role names repeat on every row: dictionary-encoded, they
    # cost an index each, and decode to a handful of shared strings.
    return pa.array(values, pa.string()).dictionary_encode()


def _order(order: deque[tuple[int, str]]) -> pa.Table:
    # Lists, not the tuples zip(*...) makes: pyarrow converts lists several times faster.
    ts = [t for t, _ in order]
    rid = [r for _, r in order]
    return _table({"ts": pa.array(ts, pa.int64()), "rid": pa.array(rid, pa.string())})


def _totals_table(totals: dict[ArmKey, VariantVersionStats]) -> pa.Table:
    keys = list(totals)
    parts = [totals[k] for k in keys]
    columns: dict[str, pa.Array] = {
        "experiment": pa.array([k.experiment for k in keys], pa.string()),
        "variant": pa.array([k.variant for k in keys], pa.string()),
        "role": pa.array([k.role for k in keys], pa.string()),
        "version": pa.array([k.version for k in keys], pa.int64()),
        # Counts are whole numbers in the totals; float64 keeps them exact below 2**53.
        "n": pa.array([float(p.rewards.n) for p in parts], pa.float64()),
        "sum": pa.array([p.rewards.sum for p in parts], pa.float64()),
        "sum_sq": pa.array([p.rewards.sum_sq for p in parts], pa.float64()),
        "ipw_n_total": pa.array([float(p.ipw.n_total) for p in parts], pa.float64()),
        "ipw_n": pa.array([float(p.ipw.n) for p in parts], pa.float64()),
    }
    for name in _IPW:
        columns[name] = pa.array([float(getattr(p.ipw, name)) for p in parts], pa.float64())
    columns["served"] = pa.array([p.health.served for p in parts], pa.int64())
    columns["errors"] = pa.array([p.health.errors for p in parts], pa.int64())
    columns["latency"] = pa.array([list(p.health.latency) for p in parts], pa.list_(pa.int64()))
    return _table(columns)


def _pending_table(pending: dict[str, tuple[Entry, ...]]) -> pa.Table:
    # One row per entry, the entries of one request consecutive and in their order.
    rids: list[str] = []
    entries: list[Entry] = []
    for rid, found in pending.items():
        for entry in found:
            rids.append(rid)
            entries.append(entry)
    exp, variant, role, version, propensity, prediction, ts = (
        [list(column) for column in zip(*entries, strict=True)] if entries else ([],) * 7
    )
    return _table(
        {
            "rid": pa.array(rids, pa.string()),
            "experiment": _dict_strings(exp),
            "variant": _dict_strings(variant),
            "role": _dict_strings(role),
            "version": pa.array(version, pa.int64()),
            "propensity": pa.array(propensity, pa.float64()),
            "prediction": pa.array(prediction, pa.float64()),
            "ts": pa.array(ts, pa.int64()),
        }
    )


def _orphans_table(orphans: dict[str, tuple[int, float | None, str | None]]) -> pa.Table:
    values = list(orphans.values())
    ts, reward, label = (
        [list(column) for column in zip(*values, strict=True)] if values else ([], [], [])
    )
    return _table(
        {
            "rid": pa.array(list(orphans), pa.string()),
            "ts": pa.array(ts, pa.int64()),
            "reward": pa.array(reward, pa.float64()),
            "label": pa.array(label, pa.string()),
        }
    )


def _rewarded_table(rewarded: dict[str, int]) -> pa.Table:
    return _table(
        {
            "rid": pa.array(list(rewarded), pa.string()),
            "ts": pa.array(list(rewarded.values()), pa.int64()),
        }
    )


def _ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC) as writer:
        writer.write_table(table)
    return sink.getvalue()


def encode(state: AggregatorState, *, progress: Progress = None) -> bytes:
    """The state as bytes (format :data:`FORMAT_VERSION`); ``progress`` between sections."""
    builders: dict[str, Callable[[], pa.Table]] = {
        "totals": lambda: _totals_table(state.totals),
        "pending": lambda: _pending_table(state.pending),
        "pending_order": lambda: _order(state.pending_order),
        "orphans": lambda: _orphans_table(state.orphans),
        "orphan_order": lambda: _order(state.orphan_order),
        "rewarded": lambda: _rewarded_table(state.rewarded),
        "rewarded_order": lambda: _order(state.rewarded_order),
    }
    sections = []
    for name in _SECTIONS:
        sections.append(_ipc(builders[name]()))
        if progress is not None:
            progress()
    header = json.dumps(
        {
            "lookback_us": state.lookback_us,
            "watermarks": state.watermarks,
            "rows": state.rows,
            "latest": state.latest,
            "sections": [[name, len(data)] for name, data in zip(_SECTIONS, sections, strict=True)],
        },
        separators=(",", ":"),
    ).encode()
    return b"".join([_PREFIX.pack(_MAGIC, FORMAT_VERSION, len(header)), header, *sections])


# -- decoding ---------------------------------------------------------------------------


def _strings(column: pa.ChunkedArray) -> list[Any]:
    column = column.combine_chunks()
    if isinstance(column, pa.DictionaryArray):
        names = column.dictionary.to_pylist()
        return [names[i] for i in column.indices.to_pylist()]
    values: list[Any] = column.to_pylist()
    return values


def _count(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def _columns(table: pa.Table, names: list[str]) -> list[list[Any]]:
    return [_strings(table.column(name)) for name in names]


def _read_totals(table: pa.Table) -> dict[ArmKey, VariantVersionStats]:
    names = ["experiment", "variant", "role", "version", "n", "sum", "sum_sq", "ipw_n_total"]
    names += ["ipw_n", *_IPW, "served", "errors", "latency"]
    totals = {}
    for exp, variant, role, version, n, total, sq, n_total, n_w, *rest in zip(
        *_columns(table, names), strict=True
    ):
        *ipw, served, errors, latency = rest
        totals[ArmKey(exp, variant, role, version)] = VariantVersionStats(
            ArmStats(n=_count(n), sum=total, sum_sq=sq),
            IpwStats(_count(n_total), _count(n_w), *ipw),
            Health(served, errors, tuple(latency)),
        )
    return totals


def _read_pending(table: pa.Table) -> dict[str, tuple[Entry, ...]]:
    names = ["experiment", "variant", "role", "version", "propensity", "prediction", "ts"]
    rids = table.column("rid").to_pylist()
    pending: dict[str, tuple[Entry, ...]] = {}
    for rid, entry in zip(rids, zip(*_columns(table, names), strict=True), strict=True):
        found = pending.get(rid)
        pending[rid] = (entry,) if found is None else (*found, entry)
    return pending


def _read_order(table: pa.Table) -> deque[tuple[int, str]]:
    return deque(zip(*_columns(table, ["ts", "rid"]), strict=True))


def _read_orphans(table: pa.Table) -> dict[str, tuple[int, float | None, str | None]]:
    rid, *values = _columns(table, ["rid", "ts", "reward", "label"])
    return dict(zip(rid, zip(*values, strict=True), strict=True))


def _read_rewarded(table: pa.Table) -> dict[str, int]:
    rid, ts = _columns(table, ["rid", "ts"])
    return dict(zip(rid, ts, strict=True))


def decode(data: bytes, *, progress: Progress = None) -> AggregatorState:
    """The state :func:`encode` wrote.

    Raises
    ------
    CheckpointError
        When ``data`` is not a checkpoint of format :data:`FORMAT_VERSION`.
    """
    try:
        magic, version, header_len = _PREFIX.unpack_from(data)
    except struct.error as exc:
        msg = f"The checkpoint is {len(data)} bytes long, too short for its header."
        raise CheckpointError(msg) from exc
    if magic != _MAGIC:
        msg = "The checkpoint does not start with the checkpoint signature."
        raise CheckpointError(msg)
    if version != FORMAT_VERSION:
        msg = f"The checkpoint has format version {version}; this code reads {FORMAT_VERSION}."
        raise CheckpointError(msg)
    try:
        start = _PREFIX.size
        header = json.loads(data[start : start + header_len])
        offset = start + header_len
        tables: dict[str, pa.Table] = {}
        for name, length in header["sections"]:
            with pa.ipc.open_stream(data[offset : offset + length]) as reader:
                tables[name] = reader.read_all()
            offset += length
        if offset != len(data) or set(tables) != set(_SECTIONS):
            msg = "The checkpoint's sections do not match its header."
            raise CheckpointError(msg)
        readers: dict[str, Callable[[pa.Table], Any]] = {
            "totals": _read_totals,
            "pending": _read_pending,
            "pending_order": _read_order,
            "orphans": _read_orphans,
            "orphan_order": _read_order,
            "rewarded": _read_rewarded,
            "rewarded_order": _read_order,
        }
        parts = {}
        for name in _SECTIONS:
            parts[name] = readers[name](tables.pop(name))
            if progress is not None:
                progress()
        return AggregatorState(
            lookback_us=int(header["lookback_us"]),
            watermarks={str(k): int(v) for k, v in header["watermarks"].items()},
            rows=int(header["rows"]),
            latest=int(header["latest"]),
            **parts,
        )
    except CheckpointError:
        raise
    except Exception as exc:
        # JSON, Arrow (OSError, ArrowException), missing keys, wrong types, values the
        # statistics refuse: whatever damaged bytes raise, they say the same thing.
        msg = f"The checkpoint does not decode: {exc}"
        raise CheckpointError(msg) from exc


# -- the SQL store ----------------------------------------------------------------------


def save_checkpoint(
    engine: Engine,
    name: str,
    state: AggregatorState,
    *,
    holder: str,
    fence: Callable[[Connection], bool] | None = None,
    progress: Progress = None,
) -> CheckpointInfo | None:
    """Store ``state`` as the checkpoint ``name`` (replacing the previous one).

    ``fence`` runs first in the writing transaction: when it returns ``False`` (the
    caller no longer holds its lease) nothing is written and ``None`` is returned.
    """
    t0 = time.perf_counter()
    data = encode(state, progress=progress)
    digest = hashlib.sha256(data).hexdigest()
    encode_s = time.perf_counter() - t0
    values = {
        "watermarks": dict(state.watermarks),
        "state": data,
        "state_sha256": digest,
        "rows": state.rows,
        "holder": holder,
        "created_at": datetime.now(UTC),
    }
    t1 = time.perf_counter()
    with engine.begin() as conn:
        if fence is not None and not fence(conn):
            return None
        changed = conn.execute(
            update(lake_checkpoints).where(lake_checkpoints.c.name == name).values(values)
        ).rowcount
        if changed != 1:
            conn.execute(insert(lake_checkpoints).values(name=name, **values))
    return CheckpointInfo(
        name=name,
        watermarks=dict(state.watermarks),
        bytes=len(data),
        sha256=digest,
        rows=state.rows,
        encode_s=encode_s,
        write_s=time.perf_counter() - t1,
    )


def load_checkpoint(
    engine: Engine, name: str, *, lookback_us: int | None = None, progress: Progress = None
) -> AggregatorState | None:
    """The state stored as ``name``, or ``None`` when there is none or it cannot be used.

    A checkpoint whose bytes do not match their SHA-256, that does not decode, or that was
    built with another lookback than ``lookback_us`` (when given) is ignored with a
    warning; the caller then folds the lake from the start.
    """
    with engine.connect() as conn:
        row = conn.execute(
            select(lake_checkpoints.c.state, lake_checkpoints.c.state_sha256).where(
                lake_checkpoints.c.name == name
            )
        ).first()
    if row is None:
        return None
    data, expected = bytes(row[0]), row[1]
    if hashlib.sha256(data).hexdigest() != expected:
        logger.warning(
            "checkpoint %r ignored: its %d bytes do not match their SHA-256; the statistics "
            "are rebuilt from the lake",
            name,
            len(data),
        )
        return None
    try:
        state = decode(data, progress=progress)
    except CheckpointError as exc:
        logger.warning("checkpoint %r ignored (%s); the statistics are rebuilt", name, exc)
        return None
    if lookback_us is not None and state.lookback_us != lookback_us:
        logger.warning(
            "checkpoint %r ignored: built with a feedback lookback of %d µs, not %d µs; the "
            "statistics are rebuilt from the lake",
            name,
            state.lookback_us,
            lookback_us,
        )
        return None
    return state


def oldest_watermarks(engine: Engine) -> dict[str, int]:
    """The lowest watermark per table over the stored checkpoints (empty when none).

    A replaced file with a manifest id above it may still be read by a holder that resumes
    from a checkpoint: a compactor's grace period must keep it on disk.
    """
    with engine.connect() as conn:
        rows = conn.execute(select(lake_checkpoints.c.watermarks)).scalars().all()
    out: dict[str, int] = {}
    for marks in rows:
        for table, mark in dict(marks).items():
            out[table] = min(out.get(table, int(mark)), int(mark))
    return out


def resume(
    engine: Engine,
    root: LakeStorage | Path | str,
    name: str,
    *,
    lookback: timedelta,
    progress: Progress = None,
) -> LakeAggregator:
    """An aggregator restored from the checkpoint ``name``, or a fresh one (watermark 0)
    when there is none or it cannot be used (:func:`load_checkpoint` says why)."""
    state = load_checkpoint(
        engine, name, lookback_us=lookback // timedelta(microseconds=1), progress=progress
    )
    if state is None:
        return LakeAggregator(engine, root, lookback=lookback)
    return LakeAggregator.from_state(engine, root, state)
