"""Retention: drop each experiment's predictions and feedback older than its cutoff.

An experiment's ``retention_days`` (the SQL store) becomes a cutoff, ``now - days``;
:func:`apply_retention` then makes every row of that experiment with ``ts < cutoff``
disappear from

* the manifest's live files, so from everything :func:`lake.open_lake` reads;
* the Delta tables: the current version holds exactly the rows of the manifest's live
  published files, as after a Delta ``DELETE``;
* storage, once the rewritten files' grace period is over (the vacuum).

Which rows belong to an experiment: a prediction names it (``experiment``, the
experiment's *name*); a feedback row does not, but its ``request_id`` starts with
``<experiment id>.`` (:mod:`api.serving.request_ids`), so ``cutoffs`` maps a name to
``(id, cutoff)``. Feedback whose request id names no experiment of ``cutoffs`` is kept.

How: a retention rewrite is a compaction
----------------------------------------

An *affected* file is a live file of the manifest, a compaction output or a flush file
not compacted yet, holding at least one expired row. Affected files are batched like
the compactor's inputs (:func:`lake.compaction._batches`) and each batch is rewritten by
the compactor's own machinery (:func:`lake.compaction._compact_batch` with a row
filter), so it has the same guarantees:

1. **Intent** rows in ``lake_compactions`` name the affected files as inputs (a file
   claimed by a running compaction is left for the next run, and a compactor never
   takes a file a retention rewrite has claimed).
2. **Files**: the kept rows, sorted by ``(experiment, ts)``, one file per date, written
   under the Delta table like any compaction output.
3. **Delta commit**: *one* commit removes the affected published files (``Remove``
   actions) and adds the rewritten ones (``Add``). That is exactly what a Delta
   ``DELETE`` commits; no version holds a kept row twice or misses one.
4. **Switch**: the rewritten files become live and the affected files ``replaced`` in
   one SQL transaction; only now do the manifest's readers stop seeing expired rows, and
   they see every kept row exactly once at every moment.

When nothing of a batch is kept, nothing is written: its one intent row names a
placeholder output (never written), the Delta commit only removes, and the switch only
replaces the inputs (``replaced_by`` null).

A crash at any step leaves ``started`` intent rows that the next run (of retention or of
compaction, both recover first) completes when the Delta commit happened and every input
is still live, and rolls back otherwise. Rolling back a commit that removed published
files adds them back (those still live) in the same Delta commit that removes the
rewritten ones, so the Delta table and the manifest agree again: the rows come back, to
be dropped by the next run. Between a crash after step 3 and that run, Delta readers see
the table without the expired rows while the manifest's readers still see them.

Deletion, and why not ``DeltaTable.vacuum``
-------------------------------------------

The affected files stay on storage for ``grace`` after the switch (a reader of an older
manifest snapshot, or of an older Delta version, may still be reading them), then
:func:`lake.compaction.remove_replaced` deletes them: a replaced flush file once the
statistics checkpoints have also passed it, a replaced published file after ``grace``
alone. That is the vacuum of the Delta table: its removed files are deleted.
``DeltaTable.vacuum`` is not called, on purpose:

* it knows nothing of the manifest: in ``full`` mode it deletes every file the current
  version does not reference, including the outputs a running compactor has written but
  not committed yet, which its commit would then reference while missing;
* even in the default (``lite``) mode, which deletes only removed files, it would delete
  the published inputs of a rewrite that is still to be rolled back (its Delta commit
  happened, its switch did not) once they are older than the retention it is given,
  and the rollback then could not add them back; the manifest's deletion only deletes a
  file whose switch is committed, which no rollback undoes;
* its retention is whole hours, and refuses less than 7 days unless told otherwise.

The Delta log keeps its history (time travel to a version before a rewrite then finds
its files deleted, as after a vacuum).

Statistics are not changed
--------------------------

A running incremental consumer (:mod:`lake.aggregates`) folds each flush file once,
whatever its status, and never a compaction output. A retention rewrite's outputs are
compaction outputs, and the flush files it replaces stay on storage until the
checkpointed consumers have passed them, so retention does not change the reallocator's
running statistics: it removes data from the lake, not from statistics already
computed. Only a consumer that starts from nothing afterwards reads the lake as it is
then, without the expired rows (a file replaced by a rewrite that kept nothing has
``replaced_by`` null: replaced by nothing).

Cost: a run reads the key columns (``experiment`` or ``request_id``, and ``ts``) of every
live file whose oldest row is older than the latest cutoff; only affected files are read
whole and rewritten.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine

from lake.compaction import (
    DEFAULT_GRACE,
    DEFAULT_RECOVER_AFTER,
    MAX_FILE_ROWS,
    TARGET_FILE_BYTES,
    CompactionProgress,
    DropRows,
    _batches,
    _claimed_inputs,
    _compact_batch,
    recover,
    remove_replaced,
)
from lake.errors import LakeConfigError
from lake.manifest import FileEntry, live_files
from lake.schemas import TABLES, TableName
from lake.storage import LakeStorage

__all__ = [
    "Cutoffs",
    "RetentionSummary",
    "apply_retention",
    "expired_rows",
    "retention_cutoffs",
]

logger = logging.getLogger(__name__)

Cutoffs = Mapping[str, tuple[int, datetime]]
"""Experiment name -> (experiment id, cutoff, timezone-aware): rows with ``ts < cutoff``
expire."""


@dataclass(slots=True)
class RetentionSummary:
    """What one :func:`apply_retention` run did."""

    # Affected files rewritten (replaced), and the files written in their place.
    files_rewritten: int = 0
    files_out: int = 0
    rows_dropped: dict[str, int] = field(default_factory=dict)
    rows_kept: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    rewrites: int = 0
    # Latest Delta version each table's rewrites reached (None: no commit).
    delta_versions: dict[str, int | None] = field(default_factory=dict)
    # The cutoffs applied, ISO 8601 UTC, by experiment name.
    cutoffs: dict[str, str] = field(default_factory=dict)
    recovered_committed: int = 0
    recovered_rolled_back: int = 0
    # Batches skipped: claimed by a concurrent compactor, or no longer expired.
    skipped: int = 0
    replaced_deleted: int = 0
    replaced_deleted_bytes: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def retention_cutoffs(
    retention_days: Mapping[str, tuple[int, int | None]], now: datetime
) -> dict[str, tuple[int, datetime]]:
    """The cutoffs of the experiments that have a retention.

    Parameters
    ----------
    retention_days
        Experiment name -> (experiment id, ``retention_days``; None keeps rows forever).
    now
        The current time, timezone-aware.

    Returns
    -------
    dict[str, tuple[int, datetime]]
        Name -> (id, ``now - days``, UTC), for :func:`apply_retention`.

    Raises
    ------
    LakeConfigError
        For a naive ``now`` or a retention below one day.
    """
    if now.tzinfo is None:
        msg = "now must be timezone-aware."
        raise LakeConfigError(msg)
    out: dict[str, tuple[int, datetime]] = {}
    for name, (experiment_id, days) in retention_days.items():
        if days is None:
            continue
        if days < 1:
            msg = f"The retention of {name!r} must be at least 1 day, not {days}."
            raise LakeConfigError(msg)
        out[name] = (int(experiment_id), (now - timedelta(days=days)).astimezone(UTC))
    return out


def expired_rows(table: TableName, cutoffs: Cutoffs) -> DropRows:
    """A function of a table's rows: True for each row expired under ``cutoffs``."""

    def expired(rows: pa.Table) -> Any:
        ts = rows["ts"]
        mask = pa.array([False] * rows.num_rows, pa.bool_())
        for name, (experiment_id, cutoff) in cutoffs.items():
            if table == "predictions":
                owned = pc.equal(rows["experiment"], name)
            else:
                owned = pc.starts_with(rows["request_id"], f"{experiment_id}.")
            old = pc.less(ts, pa.scalar(cutoff, type=ts.type))
            mask = pc.or_(mask, pc.and_(owned, old))
        return mask

    return expired


def _affected(
    engine: Engine, storage: LakeStorage, table: TableName, cutoffs: Cutoffs, drop: DropRows
) -> list[FileEntry]:
    """The live files of ``table`` holding an expired row (key columns read only)."""
    latest = max(cutoff for _id, cutoff in cutoffs.values())
    claimed = _claimed_inputs(engine, table)
    key = "experiment" if table == "predictions" else "request_id"
    out: list[FileEntry] = []
    for entry in live_files(engine, table):
        if entry.id in claimed or entry.min_ts is None or entry.min_ts >= latest:
            continue
        try:
            rows = storage.read_table(entry.path, columns=[key, "ts"])
        except FileNotFoundError:
            logger.warning("Lake file %s is live but missing; retention skips it.", entry.path)
            continue
        if pc.any(drop(rows)).as_py():
            out.append(entry)
    return out


def apply_retention(
    engine: Engine,
    storage: LakeStorage,
    cutoffs: Cutoffs,
    *,
    grace: timedelta = DEFAULT_GRACE,
    after_step: Callable[[str], None] | None = None,
    progress: Callable[[CompactionProgress], None] | None = None,
    tables: Sequence[TableName] = TABLES,
    recover_after: timedelta = DEFAULT_RECOVER_AFTER,
    max_file_rows: int = MAX_FILE_ROWS,
    target_file_bytes: int = TARGET_FILE_BYTES,
) -> RetentionSummary:
    """Drop every row older than its experiment's cutoff from the lake (module docstring).

    Parameters
    ----------
    engine
        The SQL store with the manifest tables (``lake_files``, ``lake_compactions``,
        ``lake_checkpoints``).
    storage
        The lake's storage.
    cutoffs
        Experiment name -> (experiment id, cutoff, timezone-aware); see
        :func:`retention_cutoffs`. Experiments not named keep every row.
    grace
        Replaced files (these rewrites' and earlier compactions') are deleted this long
        after their replacement.
    after_step
        Called with each step completed by each rewrite (``intent``, ``files``,
        ``delta``, ``recorded``, ``switch``), as in :func:`lake.compaction.compact`: a
        hook to renew a lease, or a test's simulated crash.
    progress
        Called with a :class:`lake.compaction.CompactionProgress` after each rewrite.
    tables
        The lake tables to apply retention to.
    recover_after
        Age after which an unfinished compaction or rewrite is taken for abandoned.
    max_file_rows, target_file_bytes
        Batch limits, as for compaction.

    Returns
    -------
    RetentionSummary

    Raises
    ------
    LakeConfigError
        For a naive cutoff, a negative duration or a limit below 1.
    """
    for name, (_id, cutoff) in cutoffs.items():
        if cutoff.tzinfo is None:
            msg = f"The cutoff of {name!r} must be timezone-aware, not {cutoff!r}."
            raise LakeConfigError(msg)
    for label, value in (("grace", grace), ("recover_after", recover_after)):
        if value < timedelta(0):
            msg = f"{label} must not be negative, but is {value}."
            raise LakeConfigError(msg)
    if max_file_rows < 1 or target_file_bytes < 1:
        msg = "max_file_rows and target_file_bytes must be at least 1."
        raise LakeConfigError(msg)
    start = time.perf_counter()
    summary = RetentionSummary(
        rows_dropped={t: 0 for t in tables},
        delta_versions={t: None for t in tables},
        cutoffs={n: c.astimezone(UTC).isoformat() for n, (_i, c) in sorted(cutoffs.items())},
    )
    summary.recovered_committed, summary.recovered_rolled_back = recover(
        engine, storage, older_than=recover_after
    )
    for table in tables if cutoffs else ():
        drop = expired_rows(table, cutoffs)
        affected = _affected(engine, storage, table, cutoffs, drop)
        batches = _batches(affected, max_rows=max_file_rows, max_bytes=target_file_bytes)
        total = sum(len(b) for b in batches)
        done = 0
        for batch in batches:
            result = _compact_batch(
                engine,
                storage,
                table,
                batch,
                max_rows=max_file_rows,
                after_step=after_step,
                drop=drop,
            )
            done += len(batch)
            if result is None:
                summary.skipped += 1
            else:
                read, outputs, version, dropped = result
                summary.rewrites += 1
                summary.files_rewritten += len(read)
                summary.files_out += len(outputs)
                summary.rows_dropped[table] += dropped
                summary.rows_kept += sum(o.rows for o in outputs)
                summary.bytes_in += sum(e.bytes for e in read)
                summary.bytes_out += sum(o.bytes for o in outputs)
                if version is not None:
                    current = summary.delta_versions.get(table)
                    summary.delta_versions[table] = max(version, current or 0)
            if progress is not None:
                progress(
                    CompactionProgress(
                        table, done, total, summary.rows_kept, summary.bytes_in, summary.bytes_out
                    )
                )
    files, size = remove_replaced(engine, storage, grace=grace, tables=tables)
    summary.replaced_deleted, summary.replaced_deleted_bytes = files, size
    summary.seconds = time.perf_counter() - start
    if summary.rewrites:
        logger.info(
            "Retention rewrote %d files into %d, dropping %s rows.",
            summary.files_rewritten,
            summary.files_out,
            summary.rows_dropped,
        )
    return summary
