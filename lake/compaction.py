"""Compaction: many small flush files rewritten as large sorted files of a Delta table.

Writers flush a small Parquet file every second or so. The compactor takes a table's live
flush files registered at least ``min_age`` ago and rewrites them as large files, sorted
by ``(experiment, ts)``, in a Delta table per lake table::

    <lake>/delta/<table>/_delta_log/…
    <lake>/delta/<table>/dt=YYYY-MM-DD/part-<token>-<seq:03d>.parquet

``dt`` is the rows' UTC date (from ``ts``), the Delta partition column. As Delta
requires, it lives only in the Delta log and the path, not in the Parquet file: a
compacted file holds exactly the lake schema (:mod:`lake.schemas`), so the manifest's
readers (``Lake``, DuckDB ``read_parquet(hive_partitioning = false)``, polars) read it
like any flush file, while Delta readers (``polars.scan_delta``, ``deltalake``, Spark
over ``DeltaTable.file_uris()``) see the lake columns plus ``dt``.

Sizes (:data:`ROW_GROUP_ROWS`, :data:`TARGET_FILE_BYTES`, :data:`MAX_FILE_ROWS`): inputs
are batched until their bytes reach about 128 MB or their rows the row cap; one batch
becomes one compaction, writing one file per date its rows fall on (a batch is cut in
date order, so that is normally one file).

One compaction, and how a crash at any point is undone or completed
--------------------------------------------------------------------

1. **Intent.** One ``lake_compactions`` row per output (status ``started``, the input
   ids, the output path, its rows) in one transaction, before anything is written.
   Inputs named by another compaction still ``started`` are never chosen; if two
   compactors claimed overlapping inputs at the same moment, each sees the other's rows
   once its own are committed and the one that sees an overlap backs off (possibly
   both: nothing is written, the next run tries again). So two compactors never write
   the same rows.
2. **Files.** The outputs, written whole through :mod:`lake.storage` (never replacing
   a file).
3. **Delta commit.** One Delta transaction adds every output (delta-rs's optimistic
   commit, safe beside a concurrent compactor of the same table); its version is then
   recorded on the intent rows.
4. **Switch.** :func:`lake.manifest.register_compactions`: the outputs become live, the
   inputs ``replaced`` and the intent rows ``committed``, in one SQL transaction. Only
   now do the manifest's readers see the new files, and never with their inputs.

A run first recovers the compactions left ``started`` (or ``rolling_back``) for longer
than ``recover_after`` by a run that died: if their outputs are in the Delta table,
the switch is done now when every input is still live; otherwise (outputs not in Delta,
or inputs no longer live) the compaction is rolled back: marked ``rolling_back``, its
outputs removed from Delta with remove actions and deleted, then ``rolled_back``. A
compaction that fails in-process is recovered at once the same way. So every row is
visible exactly once through the manifest at every moment, and the Delta tables hold
exactly the rows of the live compacted files, except between a crash after step 3 and
the next run.

Retention (:mod:`lake.retention`) rewrites files through the same steps, with a row
filter: its inputs may be published files, which the Delta commit of step 3 removes in
the commit that adds the outputs (a rollback adds them back), and it may keep no row at
all (no output: the switch only replaces the inputs). A replaced published file is
deleted after ``grace`` like a flush file.

Cleanup, and the incremental consumers' contract
------------------------------------------------

A replaced flush file stays on storage for ``grace`` after its replacement (default one
hour, longer than the longest read of a snapshot), then the compactor deletes it. The
incremental consumers (:mod:`lake.aggregates`) fold every flush file, replaced or not,
and stop at one that is missing: so a file is also kept while any statistics checkpoint
(``lake_checkpoints``) has a watermark for its table below its id. An in-memory
consumer without a checkpoint (the report, the reallocation loop between checkpoints)
must pass a file within ``grace`` of its replacement; both update every few seconds.
The manifest keeps the rows of deleted files (status ``replaced``, with ``replaced_by``),
so the ids stay dense. A consumer that starts from nothing never reads a replaced file: it
folds the lake as it was at one manifest id (:func:`lake.manifest.files_as_of`, compacted
files included), then goes on incrementally. One that meets a deleted replaced file (a
checkpoint older than the deletion, a consumer more than ``grace`` behind) starts again
that way: keeping files for the checkpoints saves that rebuild, it is not needed for
correctness.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from deltalake import DeltaTable, Field
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.schema import PrimitiveType
from deltalake.transaction import AddAction, CommitProperties, RemoveAction
from sqlalchemy import Engine, insert, select, update

from lake.errors import LakeConfigError
from lake.failpoints import failpoint
from lake.manifest import (
    COMPACTION_WRITER_ID,
    FileEntry,
    lake_checkpoints,
    lake_compactions,
    lake_files,
    live_files,
    register_compactions,
)
from lake.modes import with_mode
from lake.schemas import SCHEMAS, TABLES, TableName
from lake.storage import LakeStorage

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_MIN_AGE",
    "DEFAULT_RECOVER_AFTER",
    "DELTA_DIR",
    "MAX_FILE_ROWS",
    "ROW_GROUP_ROWS",
    "TARGET_FILE_BYTES",
    "CompactionProgress",
    "CompactionSummary",
    "DropRows",
    "compact",
    "delta_schema",
    "delta_storage_options",
    "delta_uri",
    "recover",
    "remove_replaced",
]

logger = logging.getLogger(__name__)

ROW_GROUP_ROWS: Final = 128 * 1024
"""Rows per Parquet row group of a compacted file: large enough for efficient scans,
small enough that a reader of one experiment skips most of a file by its statistics."""
TARGET_FILE_BYTES: Final = 128 * 1024 * 1024
"""Inputs are batched until their Parquet bytes reach this (about one output's size:
sorted rows compress at least as well as the flush files did)."""
MAX_FILE_ROWS: Final = 2_000_000
"""Row cap of one batch (and of one output): bounds the compactor's memory when rows are
small, since a batch is sorted in memory."""
DELTA_DIR: Final = "delta"
"""Directory of the Delta tables under the lake root: ``delta/<table>``."""
DEFAULT_MIN_AGE: Final = timedelta(hours=1)
DEFAULT_GRACE: Final = timedelta(hours=1)
DEFAULT_RECOVER_AFTER: Final = timedelta(minutes=30)
"""A ``started`` compaction older than this is taken for one whose run died. Keep it
well above the longest compaction (seconds per 128 MB)."""

_PARTITION: Final = "dt"
# Feedback has no experiment: it is sorted by ts alone.
_SORT: Final = [("experiment", "ascending"), ("ts", "ascending")]
# Custom commit metadata naming the compaction (its token) in the Delta history.
_TOKEN_KEY: Final = "banditlake.compaction"
_ACTIVE: Final = ("started", "rolling_back")
# Delta commits searched back for a compaction's own (concurrent compactors add a few).
_HISTORY_SCAN: Final = 200
_COMMIT_ATTEMPTS: Final = 5
# Delta's names of the types of the columns added to the lake schema after its first files.
_DELTA_TYPES: Final = {pa.string(): PrimitiveType("string")}
# Parent directory of the placeholder output path of a rewrite that keeps no row.
_NO_OUTPUT_DIR: Final = "_no_output"


@dataclass(frozen=True, slots=True)
class CompactionProgress:
    """Where a run stands, passed to ``progress`` after every compaction."""

    table: str
    files_done: int
    files_total: int
    rows: int
    bytes_in: int
    bytes_out: int


@dataclass(slots=True)
class CompactionSummary:
    """What one :func:`compact` run did."""

    files_in: int = 0
    files_out: int = 0
    rows: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    compactions: int = 0
    # Latest Delta version each table's commits reached in this run (None: no commit).
    delta_versions: dict[str, int | None] = field(default_factory=dict)
    recovered_committed: int = 0
    recovered_rolled_back: int = 0
    # Batches skipped because another compactor had claimed some of their files.
    lost_claims: int = 0
    replaced_deleted: int = 0
    replaced_deleted_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Output:
    path: str  # relative to the lake root
    day: date
    table: pa.Table


@dataclass(frozen=True, slots=True)
class _Intent:
    id: int
    table: TableName
    path: str
    inputs: tuple[int, ...]
    rows: int
    status: str


DropRows = Callable[[pa.Table], Any]
"""Given the rows of a batch, a boolean array: True for a row to leave out (retention)."""


def _no_output_path(table: str, token: str) -> str:
    """The ``output_path`` of the one intent row of a rewrite that keeps no row at all.

    Never written: it only names the compaction (its token) in ``lake_compactions``,
    whose ``output_path`` is required and unique.
    """
    return f"{DELTA_DIR}/{table}/{_NO_OUTPUT_DIR}/part-{token}-000"


def _is_no_output(path: str) -> bool:
    return PurePosixPath(path).parent.name == _NO_OUTPUT_DIR


# -- Delta tables ----------------------------------------------------------------------


def delta_uri(storage: LakeStorage, table: str) -> str:
    """The URI of a lake table's Delta table (a local path or ``s3://…``)."""
    return storage.url(f"{DELTA_DIR}/{table}")


def delta_storage_options(storage: LakeStorage) -> dict[str, str] | None:
    """``storage_options`` for deltalake and ``polars.scan_delta`` on this storage."""
    options = getattr(storage, "polars_options", None)
    return options() if callable(options) else None


def delta_schema(table: TableName) -> pa.Schema:
    """The Delta table's schema: the lake schema, then the partition column ``dt``."""
    return SCHEMAS[table].append(pa.field(_PARTITION, pa.date32(), nullable=False))


def _existing_delta(storage: LakeStorage, table: str) -> DeltaTable | None:
    # Not DeltaTable.is_deltatable: it holds the GIL through its requests, which starves
    # an S3 server in the same process (moto in the tests) until the request times out.
    try:
        return DeltaTable(delta_uri(storage, table), storage_options=delta_storage_options(storage))
    except TableNotFoundError:
        return None


def _open_delta(storage: LakeStorage, table: TableName) -> DeltaTable:
    uri = delta_uri(storage, table)
    options = delta_storage_options(storage)
    existing = _existing_delta(storage, table)
    if existing is not None:
        return _with_new_columns(storage, table, existing)
    try:
        DeltaTable.create(
            uri,
            delta_schema(table),
            partition_by=[_PARTITION],
            mode="ignore",
            name=f"banditlake_{table}",
            storage_options=options,
        )
    except Exception:
        # A concurrent compactor created it first: opening it below decides.
        logger.debug("Creating the Delta table %s failed; opening it.", uri, exc_info=True)
    return DeltaTable(uri, storage_options=options)


def _with_new_columns(storage: LakeStorage, table: TableName, dt: DeltaTable) -> DeltaTable:
    """``dt`` with the lake columns added since it was created (``mode``), as nullable.

    Delta cannot give a new column a default, so in files committed before it the
    column is NULL; for ``mode`` that means ``"online"`` (:mod:`lake.modes`).
    """
    present = {field.name for field in dt.schema().fields}
    missing = [f for f in SCHEMAS[table] if f.name not in present]
    if not missing:
        return dt
    try:
        dt.alter.add_columns([Field(f.name, _DELTA_TYPES[f.type], nullable=True) for f in missing])
    except Exception:
        # Another compactor added them first: reopening below decides.
        logger.debug("Adding %s to the Delta table %s failed.", missing, table, exc_info=True)
    return DeltaTable(delta_uri(storage, table), storage_options=delta_storage_options(storage))


def _delta_relative(path: str, table: str) -> str:
    return PurePosixPath(path).relative_to(f"{DELTA_DIR}/{table}").as_posix()


def _stats(out: pa.Table) -> str:
    def iso(value: datetime) -> str:
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    ts = pc.min_max(out["ts"])
    stats: dict[str, Any] = {"numRecords": out.num_rows}
    if out.num_rows:
        experiment = pc.min_max(out["experiment"]) if "experiment" in out.column_names else None
        stats["minValues"] = {"ts": iso(ts["min"].as_py())}
        stats["maxValues"] = {"ts": iso(ts["max"].as_py())}
        stats["nullCount"] = {"ts": 0}
        if experiment is not None:
            stats["minValues"]["experiment"] = experiment["min"].as_py()
            stats["maxValues"]["experiment"] = experiment["max"].as_py()
            stats["nullCount"]["experiment"] = 0
    return json.dumps(stats)


def _day_of(path: str) -> str:
    part = PurePosixPath(path).parent.name
    return part.removeprefix(f"{_PARTITION}=")


def _size(storage: LakeStorage, path: str) -> int:
    info = storage.filesystem.get_file_info(storage.location(path))
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(storage.url(path))
    return int(info.size or 0)


def _delta_add(
    storage: LakeStorage,
    table: TableName,
    token: str,
    outputs: Sequence[tuple[str, int, str]],
    removes: Sequence[tuple[str, int | None]] = (),
) -> int | None:
    """Add ``(path, size, stats)`` files and remove ``(path, size)`` files in one Delta
    commit; return its version (None when there is nothing to commit).

    A compaction only adds; a retention rewrite (:mod:`lake.retention`) also removes the
    published files it rewrote, in the same commit: that is what a Delta ``DELETE``
    commits, so no Delta version holds a row twice or misses a kept one.
    """
    if not outputs and not removes:
        return None
    dt = _open_delta(storage, table)
    now_ms = int(time.time() * 1000)
    actions: list[AddAction | RemoveAction] = [
        AddAction(
            _delta_relative(path, table),
            size,
            {_PARTITION: _day_of(path)},
            now_ms,
            True,
            stats,
        )
        for path, size, stats in outputs
    ]
    actions += [
        RemoveAction(
            path=_delta_relative(path, table),
            data_change=True,
            deletion_timestamp=now_ms,
            size=size,
            partition_values={_PARTITION: _day_of(path)},
        )
        for path, size in removes
    ]
    return _commit(storage, table, dt, actions, token)


def _commit(
    storage: LakeStorage,
    table: TableName,
    dt: DeltaTable,
    actions: Sequence[AddAction | RemoveAction],
    token: str,
) -> int | None:
    """Commit ``actions`` as one Delta transaction named ``token``; return its version.

    delta-rs retries a commit that races another, but refuses one whose snapshot a
    concurrent remove (a rollback) touched: that is retried here on a fresh snapshot,
    which is safe because our actions touch only our own files.
    """
    for attempt in range(_COMMIT_ATTEMPTS):
        try:
            dt.create_write_transaction(
                list(actions),
                mode="append",
                schema=delta_schema(table),
                partition_by=[_PARTITION],
                commit_properties=CommitProperties(custom_metadata={_TOKEN_KEY: token}),
            )
            break
        except CommitFailedError:
            if attempt + 1 == _COMMIT_ATTEMPTS:
                raise
            logger.info("Delta commit %s of %s conflicted; retrying.", token, table)
            dt = _open_delta(storage, table)
    return _delta_version_of(storage, table, token)


def _delta_version_of(storage: LakeStorage, table: TableName, token: str) -> int | None:
    """The version of the Delta commit that names ``token`` in its commit info.

    Read from the log's JSON files through the lake's storage, newest first (not with
    ``DeltaTable.history``, which holds the GIL through its requests).
    """
    dt = _existing_delta(storage, table)
    if dt is None:
        return None
    latest = dt.version()
    for version in range(latest, max(latest - _HISTORY_SCAN, -1), -1):
        path = f"{DELTA_DIR}/{table}/_delta_log/{version:020d}.json"
        try:
            text = storage.read_bytes(path).decode()
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            info = json.loads(line).get("commitInfo") if line.strip() else None
            if isinstance(info, dict) and info.get(_TOKEN_KEY) == token:
                return version
    return None


def _delta_active(storage: LakeStorage, table: TableName) -> set[str]:
    """The paths (relative to the lake root) of the files in the Delta table now."""
    dt = _existing_delta(storage, table)
    if dt is None:
        return set()
    prefix = f"{DELTA_DIR}/{table}"
    return {
        f"{prefix}/{path}" for path in pa.table(dt.get_add_actions()).column("path").to_pylist()
    }


def _delta_remove(
    storage: LakeStorage,
    table: TableName,
    paths: Sequence[str],
    token: str,
    restore: Sequence[str] = (),
) -> int | None:
    """Undo a compaction's Delta commit: remove its outputs ``paths`` and add back the
    published inputs ``restore`` that it removed (a retention rewrite), in one commit.

    Only what needs it is touched (outputs still in the table, inputs missing from it),
    so undoing a commit that never happened, or undoing twice, commits nothing.
    """
    active = _delta_active(storage, table)
    gone = [p for p in paths if p in active]
    back: list[tuple[str, int, str]] = []
    for path in restore:
        if path in active:
            continue
        size = _size_or_none(storage, path)
        if size is None:
            logger.error("Published file %s is live but missing; not added back.", path)
            continue
        columns = ["ts", "experiment"] if "experiment" in SCHEMAS[table].names else ["ts"]
        back.append((path, size, _stats(storage.read_table(path, columns=columns))))
    if not gone and not back:
        return None
    dt = _open_delta(storage, table)
    now_ms = int(time.time() * 1000)
    actions: list[AddAction | RemoveAction] = [
        RemoveAction(
            path=_delta_relative(path, table),
            data_change=True,
            deletion_timestamp=now_ms,
            size=_size_or_none(storage, path),
            partition_values={_PARTITION: _day_of(path)},
        )
        for path in gone
    ]
    actions += [
        AddAction(
            _delta_relative(path, table), size, {_PARTITION: _day_of(path)}, now_ms, True, stats
        )
        for path, size, stats in back
    ]
    return _commit(storage, table, dt, actions, f"{token}:rollback")


def _size_or_none(storage: LakeStorage, path: str) -> int | None:
    try:
        return _size(storage, path)
    except FileNotFoundError:
        return None


# -- planning --------------------------------------------------------------------------


def _claimed_inputs(engine: Engine, table: str) -> set[int]:
    query = select(lake_compactions.c.inputs).where(
        lake_compactions.c.table_name == table, lake_compactions.c.status.in_(_ACTIVE)
    )
    with engine.connect() as conn:
        return {int(i) for (inputs,) in conn.execute(query) for i in inputs}


def _batches(
    candidates: Sequence[FileEntry], *, max_rows: int, max_bytes: int
) -> list[list[FileEntry]]:
    # Date order (then registration order), so a batch's rows mostly share one date.
    def key(entry: FileEntry) -> tuple[date, int]:
        day = entry.min_ts.astimezone(UTC).date() if entry.min_ts else date.min
        return day, int(entry.id or 0)

    batches: list[list[FileEntry]] = []
    batch: list[FileEntry] = []
    rows = size = 0
    for entry in sorted(candidates, key=key):
        if batch and (rows + entry.rows > max_rows or size + entry.bytes > max_bytes):
            batches.append(batch)
            batch, rows, size = [], 0, 0
        batch.append(entry)
        rows += entry.rows
        size += entry.bytes
    if batch:
        batches.append(batch)
    return batches


def _token() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(6)}"


def _token_of(path: str) -> str:
    return PurePosixPath(path).name.removeprefix("part-").rsplit("-", 1)[0]


def _build(
    storage: LakeStorage,
    table: TableName,
    inputs: Sequence[FileEntry],
    token: str,
    max_rows: int,
    drop: DropRows | None = None,
) -> tuple[list[FileEntry], list[_Output], int]:
    """Read ``inputs`` and cut them into sorted outputs, one or more per date.

    Returns the inputs actually read (a live file missing on storage is left out, and
    stays live), the outputs, and the rows left out because ``drop`` marked them (a
    retention rewrite, :mod:`lake.retention`; none without ``drop``).
    """
    schema = SCHEMAS[table]
    read: list[FileEntry] = []
    parts: list[pa.Table] = []
    for entry in inputs:
        try:
            data = storage.read_table(entry.path)
        except FileNotFoundError:
            logger.warning("Lake file %s is live but missing; not compacted.", entry.path)
            continue
        read.append(entry)
        if table == "predictions":
            data = with_mode(data)  # a file from before the mode column: online rows
        parts.append(data.select(schema.names).cast(schema))
    if not parts:
        return read, [], 0
    rows = pa.concat_tables(parts)
    dropped = 0
    if drop is not None:
        doomed = drop(rows)
        dropped = int(pc.sum(pc.cast(doomed, pa.int64())).as_py() or 0)
        rows = rows.filter(pc.invert(doomed))
    days = pc.cast(rows["ts"], pa.date32())
    outputs: list[_Output] = []
    seq = 0
    for day in sorted(d for d in pc.unique(days).to_pylist() if d is not None):
        selected = rows.filter(pc.equal(days, pa.scalar(day, pa.date32())))
        selected = selected.sort_by([(k, o) for k, o in _SORT if k in schema.names])
        for start in range(0, selected.num_rows, max_rows):
            seq += 1
            path = f"{DELTA_DIR}/{table}/{_PARTITION}={day:%Y-%m-%d}/part-{token}-{seq:03d}.parquet"
            outputs.append(_Output(path, day, selected.slice(start, max_rows)))
    return read, outputs, dropped


# -- the steps of one compaction ---------------------------------------------------------


def _write_intents(
    engine: Engine, table: TableName, inputs: Sequence[int], outputs: Sequence[_Output]
) -> list[int]:
    now = datetime.now(UTC)
    ids: list[int] = []
    with engine.begin() as conn:
        for out in outputs:
            result = conn.execute(
                insert(lake_compactions).values(
                    table_name=table,
                    output_path=out.path,
                    inputs=sorted(inputs),
                    rows=out.table.num_rows,
                    status="started",
                    started_at=now,
                )
            )
            key = result.inserted_primary_key
            if key is None:
                msg = f"The manifest returned no id for the compaction of {out.path!r}."
                raise RuntimeError(msg)
            ids.append(int(key[0]))
    return ids


def _overlaps_another(engine: Engine, table: str, ids: Sequence[int], inputs: set[int]) -> bool:
    query = select(lake_compactions.c.id, lake_compactions.c.inputs).where(
        lake_compactions.c.table_name == table,
        lake_compactions.c.status.in_(_ACTIVE),
        lake_compactions.c.id.not_in(list(ids)),
    )
    with engine.connect() as conn:
        return any(inputs & {int(i) for i in other} for _id, other in conn.execute(query))


def _all_live(engine: Engine, ids: Sequence[int]) -> bool:
    query = select(lake_files.c.id).where(
        lake_files.c.id.in_(list(ids)), lake_files.c.status == "live"
    )
    with engine.connect() as conn:
        return len(conn.execute(query).all()) == len(set(ids))


def _set_status(
    engine: Engine, ids: Sequence[int], status: str, *, only_from: Sequence[str]
) -> int:
    with engine.begin() as conn:
        return conn.execute(
            update(lake_compactions)
            .where(lake_compactions.c.id.in_(list(ids)), lake_compactions.c.status.in_(only_from))
            .values(
                status=status,
                finished_at=datetime.now(UTC) if status == "rolled_back" else None,
            )
        ).rowcount


def _record_delta_version(engine: Engine, ids: Sequence[int], version: int | None) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(lake_compactions)
            .where(lake_compactions.c.id.in_(list(ids)))
            .values(delta_version=version)
        )


def _entry_of(storage: LakeStorage, table: TableName, path: str, size: int) -> FileEntry:
    ts = storage.read_table(path, columns=["ts"])["ts"]
    bounds = pc.min_max(ts)
    return FileEntry(
        table=table,
        path=path,
        rows=len(ts),
        bytes=size,
        writer_id=COMPACTION_WRITER_ID,
        min_ts=bounds["min"].as_py(),
        max_ts=bounds["max"].as_py(),
        created_at=datetime.now(UTC),
    )


def _published_inputs(engine: Engine, ids: Sequence[int]) -> dict[str, str]:
    """The inputs among ``ids`` that are compaction outputs (in Delta): path -> status.

    Only a retention rewrite has any; a compaction's inputs are flush files.
    """
    query = select(lake_files.c.path, lake_files.c.status).where(
        lake_files.c.id.in_(list(ids)), lake_files.c.writer_id == COMPACTION_WRITER_ID
    )
    with engine.connect() as conn:
        return {str(path): str(status) for path, status in conn.execute(query)}


def _register_no_output(
    engine: Engine, inputs: Sequence[int], compaction_ids: Sequence[int], delta_version: int | None
) -> None:
    """Switch a rewrite that kept no row: its inputs ``replaced`` (by nothing, so
    ``replaced_by`` stays null) and its intent row ``committed``, in one transaction.

    The counterpart of :func:`lake.manifest.register_compactions`, which requires an
    output. Raises LakeConfigError, changing nothing, when an intent row is no longer
    ``started`` or an input is no longer live.
    """
    wanted = sorted(set(inputs))
    now = datetime.now(UTC)
    with engine.begin() as conn:
        claimed = conn.execute(
            update(lake_compactions)
            .where(
                lake_compactions.c.id.in_(list(compaction_ids)),
                lake_compactions.c.status == "started",
            )
            .values(status="committed", finished_at=now, delta_version=delta_version)
        ).rowcount
        if claimed != len(set(compaction_ids)):
            msg = f"The compaction rows {list(compaction_ids)!r} are not all 'started' any more."
            raise LakeConfigError(msg)
        marked = conn.execute(
            update(lake_files)
            .where(lake_files.c.id.in_(wanted), lake_files.c.status == "live")
            .values(status="replaced", replaced_at=now, replaced_by=None)
        ).rowcount
        if marked != len(wanted):
            msg = f"Some of the files {wanted!r} are not live any more; nothing was replaced."
            raise LakeConfigError(msg)


def _rollback(storage: LakeStorage, engine: Engine, intents: Sequence[_Intent]) -> bool:
    """Undo a compaction that will not be registered; False when another run owns it.

    Its outputs leave the Delta table and storage; the published inputs a retention
    rewrite removed from the Delta table are added back (those still live), in the same
    Delta commit.
    """
    ids = [i.id for i in intents]
    claimed = _set_status(engine, ids, "rolling_back", only_from=_ACTIVE)
    if claimed == 0:
        return False
    table = intents[0].table
    token = _token_of(intents[0].path)
    paths = [i.path for i in intents if not _is_no_output(i.path)]
    restore = [
        path
        for path, status in _published_inputs(engine, intents[0].inputs).items()
        if status == "live"
    ]
    _delta_remove(storage, table, paths, token, restore)
    for path in paths:
        storage.delete(path)
    _set_status(engine, ids, "rolled_back", only_from=("rolling_back",))
    logger.info("Rolled back compaction %s of %s.", token, table)
    return True


def _in_delta(engine: Engine, storage: LakeStorage, intents: Sequence[_Intent]) -> bool:
    """Whether the compaction's Delta commit happened: its outputs are in the table and
    the published inputs it rewrote (a retention rewrite) are not."""
    active = _delta_active(storage, intents[0].table)
    outputs = [i.path for i in intents if not _is_no_output(i.path)]
    published = _published_inputs(engine, intents[0].inputs)
    return all(p in active for p in outputs) and not any(p in active for p in published)


def _finish(storage: LakeStorage, engine: Engine, intents: Sequence[_Intent]) -> bool:
    """Complete or roll back a compaction found unfinished; True when it was registered."""
    table = intents[0].table
    if any(i.status != "started" for i in intents):
        _rollback(storage, engine, intents)
        return False
    if not _in_delta(engine, storage, intents):
        _rollback(storage, engine, intents)
        return False
    token = _token_of(intents[0].path)
    ids = [i.id for i in intents]
    version = _delta_version_of(storage, table, token)
    try:
        if all(_is_no_output(i.path) for i in intents):
            _register_no_output(engine, intents[0].inputs, ids, version)
        else:
            outputs = [_entry_of(storage, table, i.path, _size(storage, i.path)) for i in intents]
            register_compactions(
                engine, outputs, intents[0].inputs, compaction_ids=ids, delta_version=version
            )
    except LakeConfigError:
        # Its inputs are no longer all live (or another run took the rows): undo it.
        _rollback(storage, engine, intents)
        return False
    logger.info("Completed compaction %s of %s left by an earlier run.", token, table)
    return True


def _unfinished(engine: Engine, older_than: timedelta) -> dict[str, list[_Intent]]:
    cutoff = datetime.now(UTC) - older_than
    query = (
        select(lake_compactions)
        .where(lake_compactions.c.status.in_(_ACTIVE))
        .order_by(lake_compactions.c.id)
    )
    groups: dict[str, list[_Intent]] = {}
    with engine.connect() as conn:
        rows = [r._mapping for r in conn.execute(query)]
    stale: set[str] = set()
    for m in rows:
        token = _token_of(m["output_path"])
        intent = _Intent(
            id=m["id"],
            table=m["table_name"],
            path=m["output_path"],
            inputs=tuple(int(i) for i in m["inputs"]),
            rows=m["rows"],
            status=m["status"],
        )
        groups.setdefault(token, []).append(intent)
        started = m["started_at"]
        started = started.replace(tzinfo=UTC) if started.tzinfo is None else started
        if started <= cutoff:
            stale.add(token)
    return {token: group for token, group in groups.items() if token in stale}


def recover(
    engine: Engine, storage: LakeStorage, *, older_than: timedelta = DEFAULT_RECOVER_AFTER
) -> tuple[int, int]:
    """Complete or roll back the compactions left unfinished by runs that died.

    Parameters
    ----------
    engine, storage
        The manifest's SQL store and the lake's storage.
    older_than
        Only compactions started at least this long ago are touched (a younger one may
        belong to a compactor still running).

    Returns
    -------
    tuple[int, int]
        Compactions completed, compactions rolled back.
    """
    done = undone = 0
    for intents in _unfinished(engine, older_than).values():
        if _finish(storage, engine, intents):
            done += 1
        else:
            undone += 1
    return done, undone


def _compact_batch(
    engine: Engine,
    storage: LakeStorage,
    table: TableName,
    batch: Sequence[FileEntry],
    *,
    max_rows: int,
    after_step: Callable[[str], None] | None,
    drop: DropRows | None = None,
) -> tuple[list[FileEntry], list[FileEntry], int | None, int] | None:
    """One compaction; returns (inputs, outputs, Delta version, rows dropped), None when
    it backed off or (with ``drop``, a retention rewrite) found no row to drop.

    A retention rewrite may keep no row: its one intent row then names a placeholder
    output (:func:`_no_output_path`), nothing is written, and the switch only replaces
    the inputs. Its published inputs leave the Delta table in the commit that adds the
    outputs.
    """
    token = _token()
    # The candidates were listed before earlier batches ran, maybe beside a concurrent
    # compactor: drop the files taken since, before reading anything.
    live = {e.id for e in live_files(engine, table)} - _claimed_inputs(engine, table)
    batch = [e for e in batch if e.id in live]
    if not batch:
        return None
    read, outputs, dropped = _build(storage, table, batch, token, max_rows, drop)
    if (drop is not None and dropped == 0) or not (outputs or dropped):
        return None
    inputs = [int(e.id or 0) for e in read]
    planned = outputs or [
        _Output(_no_output_path(table, token), date.min, SCHEMAS[table].empty_table())
    ]
    ids = _write_intents(engine, table, inputs, planned)
    # Checked after our claim is committed: a compactor that claimed or replaced any of
    # these files before is seen here (its switch flips both at once), and one that
    # claims after sees ours.
    if _overlaps_another(engine, table, ids, set(inputs)) or not _all_live(engine, inputs):
        _set_status(engine, ids, "rolled_back", only_from=("started",))
        return None

    def step(name: str) -> None:
        failpoint(f"compaction.after_{name}")
        if after_step is not None:
            after_step(name)

    step("intent")
    intents = [
        _Intent(i, table, o.path, tuple(sorted(inputs)), o.table.num_rows, "started")
        for i, o in zip(ids, planned, strict=True)
    ]
    published = [(e.path, e.bytes) for e in read if e.writer_id == COMPACTION_WRITER_ID]
    try:
        entries: list[FileEntry] = []
        delta_files: list[tuple[str, int, str]] = []
        for out in outputs:
            size = storage.write_new(out.path, out.table, row_group_size=ROW_GROUP_ROWS)
            bounds = pc.min_max(out.table["ts"])
            entries.append(
                FileEntry(
                    table=table,
                    path=out.path,
                    rows=out.table.num_rows,
                    bytes=size,
                    writer_id=COMPACTION_WRITER_ID,
                    min_ts=bounds["min"].as_py(),
                    max_ts=bounds["max"].as_py(),
                    created_at=datetime.now(UTC),
                )
            )
            delta_files.append((out.path, size, _stats(out.table)))
        step("files")
        version = _delta_add(storage, table, token, delta_files, published)
        step("delta")
        _record_delta_version(engine, ids, version)
        step("recorded")
        if entries:
            register_compactions(engine, entries, inputs, compaction_ids=ids, delta_version=version)
        else:
            _register_no_output(engine, inputs, ids, version)
    except LakeConfigError:
        # Lost to a recovery run or a concurrent compactor: nothing of ours is live.
        _rollback(storage, engine, intents)
        return None
    except Exception:
        # Undo (or complete) it now rather than after recover_after.
        try:
            _finish(storage, engine, intents)
        except Exception:
            logger.exception("Could not clean up compaction %s; the next run will.", token)
        raise
    step("switch")
    return read, entries, version, dropped


def compact(
    engine: Engine,
    storage: LakeStorage,
    *,
    min_age: timedelta = DEFAULT_MIN_AGE,
    grace: timedelta = DEFAULT_GRACE,
    progress: Callable[[CompactionProgress], None] | None = None,
    tables: Sequence[TableName] = TABLES,
    recover_after: timedelta = DEFAULT_RECOVER_AFTER,
    max_file_rows: int = MAX_FILE_ROWS,
    target_file_bytes: int = TARGET_FILE_BYTES,
    after_step: Callable[[str], None] | None = None,
) -> CompactionSummary:
    """Recover unfinished compactions, compact old flush files, delete expired ones.

    Parameters
    ----------
    engine
        The SQL store with ``lake_files`` and ``lake_compactions`` (migration 0004).
    storage
        The lake's storage (:func:`lake.storage.open_storage`).
    min_age
        Only flush files registered at least this long ago are compacted; ``0`` takes
        every file committed so far.
    grace
        Replaced files are deleted this long after their replacement (and only once the
        checkpointed consumers have passed them; see the module docstring).
    progress
        Called with a :class:`CompactionProgress` after every compaction.
    tables
        The lake tables to compact.
    recover_after
        Age after which a ``started`` compaction is taken for an abandoned one.
    max_file_rows, target_file_bytes
        Batch limits (:data:`MAX_FILE_ROWS`, :data:`TARGET_FILE_BYTES`).
    after_step
        Called with the name of each step completed (``intent``, ``files``, ``delta``,
        ``recorded``, ``switch``): a test hook that can simulate a crash by raising.

    Returns
    -------
    CompactionSummary

    Raises
    ------
    LakeConfigError
        For a negative duration or a limit below 1.
    """
    for name, value in (("min_age", min_age), ("grace", grace), ("recover_after", recover_after)):
        if value < timedelta(0):
            msg = f"{name} must not be negative, but is {value}."
            raise LakeConfigError(msg)
    if max_file_rows < 1 or target_file_bytes < 1:
        msg = "max_file_rows and target_file_bytes must be at least 1."
        raise LakeConfigError(msg)
    start = time.perf_counter()
    summary = CompactionSummary(delta_versions={t: None for t in tables})
    summary.recovered_committed, summary.recovered_rolled_back = recover(
        engine, storage, older_than=recover_after
    )
    cutoff = datetime.now(UTC) - min_age
    for table in tables:
        claimed = _claimed_inputs(engine, table)
        candidates = [
            e
            for e in live_files(engine, table)
            if e.writer_id != COMPACTION_WRITER_ID
            and e.created_at <= cutoff
            and e.id not in claimed
        ]
        batches = _batches(candidates, max_rows=max_file_rows, max_bytes=target_file_bytes)
        total = sum(len(b) for b in batches)
        done = 0
        for batch in batches:
            result = _compact_batch(
                engine, storage, table, batch, max_rows=max_file_rows, after_step=after_step
            )
            done += len(batch)
            if result is None:
                summary.lost_claims += 1
            else:
                read, outputs, version, _dropped = result
                summary.compactions += 1
                summary.files_in += len(read)
                summary.files_out += len(outputs)
                summary.rows += sum(o.rows for o in outputs)
                summary.bytes_in += sum(e.bytes for e in read)
                summary.bytes_out += sum(o.bytes for o in outputs)
                if version is not None:
                    current = summary.delta_versions.get(table)
                    summary.delta_versions[table] = max(version, current or 0)
            if progress is not None:
                progress(
                    CompactionProgress(
                        table, done, total, summary.rows, summary.bytes_in, summary.bytes_out
                    )
                )
    files, size = remove_replaced(engine, storage, grace=grace, tables=tables)
    summary.replaced_deleted, summary.replaced_deleted_bytes = files, size
    summary.seconds = time.perf_counter() - start
    return summary


def _checkpoint_floor(engine: Engine, table: str) -> int | None:
    """The lowest watermark any statistics checkpoint holds for ``table``."""
    with engine.connect() as conn:
        marks = [w for (w,) in conn.execute(select(lake_checkpoints.c.watermarks))]
    values = [int(m[table]) for m in marks if isinstance(m, dict) and table in m]
    return min(values) if values else None


def remove_replaced(
    engine: Engine,
    storage: LakeStorage,
    *,
    grace: timedelta = DEFAULT_GRACE,
    tables: Sequence[TableName] = TABLES,
) -> tuple[int, int]:
    """Delete replaced flush files whose grace period is over; return (files, bytes).

    A file is deleted once it was replaced at least ``grace`` ago and every statistics
    checkpoint's watermark for its table has reached its id. Its manifest row stays.

    A replaced compaction output (rewritten by retention, :mod:`lake.retention`) is
    deleted after ``grace`` alone: no incremental consumer folds it. It left the Delta
    table in the commit that replaced it, so this is the Delta table's vacuum too.
    """
    horizon = datetime.now(UTC) - grace
    files = size = 0
    for table in tables:
        floor = _checkpoint_floor(engine, table)
        query = select(
            lake_files.c.id, lake_files.c.path, lake_files.c.replaced_at, lake_files.c.writer_id
        ).where(lake_files.c.table_name == table, lake_files.c.status == "replaced")
        with engine.connect() as conn:
            replaced = list(conn.execute(query))
        if not replaced:
            continue
        # One listing instead of a request per replaced file of the lake's history.
        present = {f.path: f.size for f in storage.list_files(table)}
        if any(writer == COMPACTION_WRITER_ID for *_rest, writer in replaced):
            present.update({f.path: f.size for f in storage.list_files(f"{DELTA_DIR}/{table}")})
        for file_id, path, replaced_at, writer in replaced:
            if path not in present or replaced_at is None:
                continue
            at = replaced_at.replace(tzinfo=UTC) if replaced_at.tzinfo is None else replaced_at
            folded = writer == COMPACTION_WRITER_ID or floor is None or file_id <= floor
            if at > horizon or not folded:
                continue
            if storage.delete(path):
                files += 1
                size += present[path]
    if files:
        logger.info("Deleted %d replaced lake files (%d bytes).", files, size)
    return files, size
