"""Removing what a crashed writer leaves behind.

A writer that dies between creating its temp file and moving it into place leaves a
``.tmp-`` file in a partition directory (a local lake only: an object-storage upload
appears whole or not at all, but a start-up probe of the store that died half-way may
leave its ``.tmp-probe-`` object). Such files are never listed in the manifest, so
readers never see them; the janitor only reclaims their space.

That margin (an hour by default) is for other processes' files, which may belong to a
live writer. A replica's own dead processes are known exactly (:mod:`lake.ledger`), so
:func:`clean_up_dead_writers` handles their leftovers at once, whatever their age:

============================================  =========================================
left behind by a dead writer                  at the next start
============================================  =========================================
temp file ``.tmp-part-<writer>-…``            deleted
data file ``part-<writer>-…`` not in the      registered, when it is a whole Parquet
manifest (died between the rename and the     file of its table's schema with rows not
registration)                                 already in a registered file of the same
                                              writer; deleted otherwise
============================================  =========================================

The last check is for a registration that failed while the writer lived: the writer
then deletes the file and retries its rows in a later file, and when that delete failed
too, the old file holds rows the manifest already lists.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from lake.layout import TEMP_PREFIX
from lake.ledger import dead_writer_ids
from lake.manifest import FileEntry, is_registered, lake_files, register_file
from lake.modes import with_mode
from lake.schemas import SCHEMAS, TABLES, TableName
from lake.storage import LakeStorage, StoredFile, open_storage

__all__ = ["DeadWriterCleanup", "clean_up_dead_writers", "janitor", "recover_dead_writers"]

logger = logging.getLogger(__name__)


def janitor(root: LakeStorage | Path | str, older_than_s: float = 3600.0) -> list[str]:
    """Delete temp files under the lake root that were last modified long enough ago.

    Parameters
    ----------
    root
        The lake root (a storage, a directory or an ``s3://`` URI); a missing root has
        nothing to clean.
    older_than_s
        Only files whose modification time is at least this many seconds old are
        removed. Keep it well above the longest flush, so a temp file that a live writer
        is still writing is never touched.

    Returns
    -------
    list[str]
        The files removed, relative to the lake root.
    """
    storage = open_storage(root)
    cutoff = datetime.now(UTC).timestamp() - older_than_s
    removed: list[str] = []
    for stored in storage.list_files():
        if not PurePosixPath(stored.path).name.startswith(TEMP_PREFIX):
            continue
        if stored.mtime is not None and stored.mtime.timestamp() > cutoff:
            continue
        try:
            if storage.delete(stored.path):
                removed.append(stored.path)
        except (OSError, pa.ArrowException) as exc:
            logger.warning("Janitor could not remove %s: %s", stored.path, exc)
    if removed:
        logger.info("Janitor removed %d stale temp files under %s.", len(removed), storage.uri)
    return removed


@dataclass(frozen=True, slots=True)
class DeadWriterCleanup:
    """What :func:`clean_up_dead_writers` did, as paths relative to the lake root."""

    writer_ids: tuple[str, ...] = ()
    temp_removed: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    """Data files deleted: unreadable, of another schema, empty, or already registered rows."""
    kept: list[str] = field(default_factory=list)
    """Data files left as they were because a check could not be made (logged)."""

    def __bool__(self) -> bool:
        return bool(self.temp_removed or self.registered or self.removed or self.kept)


def _dead_writer_name(writer_ids: Collection[str]) -> re.Pattern[str]:
    # Longest first, so that an id that is a prefix of another never takes its files.
    ids = "|".join(re.escape(w) for w in sorted(writer_ids, key=len, reverse=True))
    return re.compile(rf"part-(?P<writer>{ids})-\d{{8}}(?:-[0-9a-f]+)*\.parquet")


def _already_written(
    storage: LakeStorage, engine: Engine, writer_id: str, table: str, data: pa.Table
) -> bool | None:
    """Whether the rows of ``data`` are in a registered file of the same writer that
    covers their time range; None when such a file cannot be read to tell."""
    ts = pc.min_max(data["ts"])
    stmt = select(lake_files.c.path).where(
        lake_files.c.table_name == table,
        lake_files.c.writer_id == writer_id,
        lake_files.c.min_ts <= ts["min"].as_py(),
        lake_files.c.max_ts >= ts["max"].as_py(),
    )
    with engine.connect() as conn:
        covering = list(conn.execute(stmt).scalars())
    ids = set(data["request_id"].to_pylist())
    for path in covering:
        try:
            written = storage.read_table(path, columns=["request_id"])
        except (OSError, pa.ArrowException):
            return None  # compacted away, or unreadable: cannot tell
        if ids & set(written["request_id"].to_pylist()):
            return True
    return False


def _settle_data_file(
    storage: LakeStorage, engine: Engine, stored: StoredFile, writer_id: str, table: TableName
) -> str:
    """Register or delete one unregistered data file; the outcome's name."""
    try:
        data = storage.read_table(stored.path)
    except (OSError, pa.ArrowException) as exc:
        logger.warning("Dead writer's file %s is not readable Parquet (%s).", stored.path, exc)
        return "removed"
    if table == "predictions":
        data = with_mode(data)  # written before the mode column: online rows
    if not data.schema.equals(SCHEMAS[table], check_metadata=False) or data.num_rows == 0:
        logger.warning("Dead writer's file %s does not hold %s rows.", stored.path, table)
        return "removed"
    written = _already_written(storage, engine, writer_id, table, data)
    if written is None:
        return "kept"
    if written:
        return "removed"
    ts = pc.min_max(data["ts"])
    entry = FileEntry(
        table=table,
        path=stored.path,
        rows=data.num_rows,
        bytes=stored.size,
        writer_id=writer_id,
        min_ts=ts["min"].as_py(),
        max_ts=ts["max"].as_py(),
        created_at=datetime.now(UTC),
    )
    # Registered meanwhile is the same outcome.
    with contextlib.suppress(IntegrityError):
        register_file(engine, entry)
    return "registered"


def clean_up_dead_writers(
    root: LakeStorage | Path | str, engine: Engine, writer_ids: Collection[str]
) -> DeadWriterCleanup:
    """Settle the lake files of writers known to be dead, whatever their age.

    Parameters
    ----------
    root
        The lake root (a storage, a directory or an ``s3://`` URI).
    engine
        Engine of the SQL store holding the manifest.
    writer_ids
        Writers that will never write again (their process is gone): from
        :func:`lake.ledger.dead_writer_ids`, never a live writer's id.

    Returns
    -------
    DeadWriterCleanup
        The files deleted and registered; see the module docstring for the rules.
    """
    storage = open_storage(root)
    done = DeadWriterCleanup(writer_ids=tuple(writer_ids))
    if not writer_ids:
        return done
    name = _dead_writer_name(writer_ids)
    for stored in storage.list_files():
        path = PurePosixPath(stored.path)
        temp = path.name.startswith(TEMP_PREFIX)
        found = name.match(path.name.removeprefix(TEMP_PREFIX))
        table = next((t for t in TABLES if t == path.parts[0]), None)
        if found is None or table is None:
            continue
        if temp:
            outcome = "temp_removed"
        elif is_registered(engine, stored.path):
            continue
        else:
            outcome = _settle_data_file(storage, engine, stored, found["writer"], table)
        if outcome in ("temp_removed", "removed"):
            try:
                storage.delete(stored.path)
            except (OSError, pa.ArrowException) as exc:
                logger.warning("Could not remove dead writer's file %s: %s", stored.path, exc)
                outcome = "kept"
        getattr(done, outcome).append(stored.path)
    if done:
        logger.info(
            "Cleaned up after dead writers %s under %s: removed %d temp files, registered "
            "%d data files, removed %d, kept %d.",
            ", ".join(done.writer_ids),
            storage.uri,
            len(done.temp_removed),
            len(done.registered),
            len(done.removed),
            len(done.kept),
        )
    return done


def recover_dead_writers(
    root: LakeStorage | Path | str, engine: Engine, ledgers: Path
) -> DeadWriterCleanup:
    """:func:`clean_up_dead_writers` for the dead processes whose ledgers are in ``ledgers``.

    A ledger is deleted once its writers' files are settled; when the cleanup fails (the
    store is down) the ledgers stay, and the next start tries again.
    """
    with dead_writer_ids(ledgers) as writer_ids:
        return clean_up_dead_writers(root, engine, writer_ids)
