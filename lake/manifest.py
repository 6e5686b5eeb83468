"""The manifest: the SQL table that lists the lake's files.

A Parquet file is part of the lake when, and only when, it has a ``live`` row in
``lake_files``. Writers add a row in one transaction after the file is durably in place;
a compactor marks its inputs ``replaced`` and its output ``live`` in one transaction
(:func:`register_compaction`); readers take the live list as a snapshot. So a reader never
sees a half-written file, and never a row twice.

Incremental consumers (the aggregates) follow one contract instead. A consumer that
starts from nothing takes the lake as it was at one manifest id ``M`` (the highest id when
it starts, :func:`last_file_ids`): the files :func:`files_as_of` returns, those registered
up to ``M`` that were live then, compaction outputs included (``replaced_by``, the id of
the file that replaced one, says when it stopped being live). It folds them, keeps ``M``
as its watermark, and from then on folds every file :func:`files_since` returns, *whatever
its status*, except compaction outputs (:func:`is_compaction_output`): an output holds
only rows of files registered before it, either up to ``M`` and live at ``M`` (folded at
the start) or after ``M`` (folded from them). Each row is then folded exactly once,
however compaction and the consumer's updates interleave, and a consumer starting from
nothing never needs a replaced file. It asks one thing of the compactor: a replaced file
stays on disk until every running consumer has passed it (its grace period). A consumer
that meets a listed file missing on disk stops there (:class:`lake.errors.LakeReadError`)
rather than move past rows it never read, unless that file is ``replaced``: its rows are
then in a live file (or were dropped on purpose), so the consumer starts again from
nothing (a checkpoint older than the deletion, a consumer left behind for longer than
the grace period).

``metadata`` is shared with the service's ORM models (their ``DeclarativeBase`` uses this
object), so Alembic sees one schema. The functions here use SQLAlchemy Core only and run
identically on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    String,
    Table,
    func,
    insert,
    select,
    update,
)

from lake.errors import LakeConfigError

__all__ = [
    "COMPACTION_WRITER_ID",
    "NAMING_CONVENTION",
    "FileEntry",
    "FileStatus",
    "files_as_of",
    "files_since",
    "is_compaction_output",
    "is_registered",
    "lake_checkpoints",
    "lake_compactions",
    "lake_files",
    "last_file_ids",
    "live_files",
    "metadata",
    "register_compaction",
    "register_compactions",
    "register_file",
    "register_files",
]

NAMING_CONVENTION: Final[dict[str, str]] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata: Final = MetaData(naming_convention=NAMING_CONVENTION)

lake_files: Final = Table(
    "lake_files",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("table_name", String(32), nullable=False),
    Column("path", String(1024), nullable=False, unique=True),
    Column("rows", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("writer_id", String(64), nullable=False),
    Column("min_ts", DateTime(timezone=True), nullable=True),
    Column("max_ts", DateTime(timezone=True), nullable=True),
    Column("status", String(16), nullable=False, server_default="live"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("replaced_at", DateTime(timezone=True), nullable=True),
    # For a replaced file: the manifest id of the compacted file that holds its rows now.
    Column("replaced_by", Integer, nullable=True),
    # Serves the readers' one query: the live files of a table, in id order.
    Index("ix_lake_files_table_name_status_id", "table_name", "status", "id"),
)

# One row per compaction, written before its output exists: a run that dies part-way
# leaves a "started" row that the next run completes or rolls back (lake.compaction).
lake_compactions: Final = Table(
    "lake_compactions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("table_name", String(32), nullable=False),
    Column("output_path", String(1024), nullable=False, unique=True),
    # Manifest ids of the files the output replaces.
    Column("inputs", JSON, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    # The Delta table version that added the output, once committed there.
    Column("delta_version", BigInteger, nullable=True),
    Column("output_id", Integer, nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Index("ix_lake_compactions_status_id", "status", "id"),
)

# The reallocator's sufficient statistics with the manifest watermarks they cover,
# checkpointed after each pass, so a new lease holder resumes instead of re-reading the
# lake (lake.checkpoints).
lake_checkpoints: Final = Table(
    "lake_checkpoints",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("watermarks", JSON, nullable=False),
    Column("state", LargeBinary, nullable=False),
    Column("state_sha256", String(64), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("holder", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

FileStatus = Literal["live", "replaced"]

# The writer id of compaction outputs. A LakeWriter's id must start with a letter or a
# digit (lake.layout.is_valid_writer_id), so no flush file can be taken for one.
COMPACTION_WRITER_ID: Final = "_compaction"


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of the lake, as listed in the manifest.

    Parameters
    ----------
    table
        Table the file belongs to (``"predictions"`` or ``"feedback"``).
    path
        Path relative to the lake root, POSIX separators.
    rows, bytes
        Row count and file size.
    writer_id
        Writer that produced the file.
    min_ts, max_ts
        Range of the rows' ``ts`` (UTC), ``None`` for an empty file.
    created_at
        When the file was registered (UTC).
    status
        ``"live"`` (readable) or ``"replaced"`` (superseded by a compacted file).
    replaced_at
        When the file was replaced, if it was.
    id
        Manifest id, increasing with registration order; ``None`` before registration.
    """

    table: str
    path: str
    rows: int
    bytes: int
    writer_id: str
    min_ts: datetime | None
    max_ts: datetime | None
    created_at: datetime
    status: FileStatus = "live"
    replaced_at: datetime | None = None
    id: int | None = None


def _to_db(value: datetime | None) -> datetime | None:
    # SQLite drops the offset when storing, so every value is stored as UTC.
    return None if value is None else value.astimezone(UTC)


def _from_db(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    # SQLite gives back naive values (stored as UTC); PostgreSQL gives aware ones.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _entry(row: Row[tuple[object, ...]]) -> FileEntry:
    m = row._mapping
    created_at = _from_db(m["created_at"])
    assert created_at is not None  # the column is NOT NULL
    return FileEntry(
        id=m["id"],
        table=m["table_name"],
        path=m["path"],
        rows=m["rows"],
        bytes=m["bytes"],
        writer_id=m["writer_id"],
        min_ts=_from_db(m["min_ts"]),
        max_ts=_from_db(m["max_ts"]),
        status=m["status"],
        created_at=created_at,
        replaced_at=_from_db(m["replaced_at"]),
    )


def _values(entry: FileEntry) -> dict[str, object]:
    return {
        "table_name": entry.table,
        "path": entry.path,
        "rows": entry.rows,
        "bytes": entry.bytes,
        "writer_id": entry.writer_id,
        "min_ts": _to_db(entry.min_ts),
        "max_ts": _to_db(entry.max_ts),
        "status": entry.status,
        "created_at": _to_db(entry.created_at),
        "replaced_at": _to_db(entry.replaced_at),
    }


def register_file(engine: Engine, entry: FileEntry) -> int:
    """Add a file to the manifest, in one transaction.

    Parameters
    ----------
    engine
        Engine of the SQL store holding ``lake_files``.
    entry
        The file; its ``id`` is ignored.

    Returns
    -------
    int
        The new row's id.

    Raises
    ------
    sqlalchemy.exc.IntegrityError
        When ``entry.path`` is already registered.
    sqlalchemy.exc.SQLAlchemyError
        When the store cannot be reached or written.
    """
    with engine.begin() as conn:
        result = conn.execute(insert(lake_files).values(_values(entry)))
        new_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
    if not isinstance(new_id, int):
        msg = f"The manifest returned no id for the new file {entry.path!r}."
        raise RuntimeError(msg)
    return new_id


def register_files(engine: Engine, entries: Sequence[FileEntry]) -> list[int]:
    """Add several files to the manifest in one transaction: all of them or none.

    For a writer whose files make sense only together (a batch scoring run, registered
    once it has scored every row). Raises as :func:`register_file`.
    """
    ids: list[int] = []
    with engine.begin() as conn:
        for entry in entries:
            result = conn.execute(insert(lake_files).values(_values(entry)))
            new_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
            if not isinstance(new_id, int):
                msg = f"The manifest returned no id for the new file {entry.path!r}."
                raise RuntimeError(msg)
            ids.append(new_id)
    return ids


def is_compaction_output(entry: FileEntry) -> bool:
    """Tell whether a file was written by compaction (its rows are in earlier files too)."""
    return entry.writer_id == COMPACTION_WRITER_ID


def register_compaction(
    engine: Engine,
    output: FileEntry,
    inputs: Sequence[int],
    *,
    at: datetime | None = None,
    compaction_ids: Sequence[int] = (),
    delta_version: int | None = None,
) -> int:
    """Add a compacted file and mark the files it merged ``replaced``, in one transaction.

    Parameters
    ----------
    engine
        Engine of the SQL store holding ``lake_files``.
    output
        The compacted file, durably in place; it is registered ``live`` with the writer
        id :data:`COMPACTION_WRITER_ID`, whatever ``output`` says.
    inputs
        Manifest ids of the live files of ``output.table`` whose rows, all of them and
        nothing else, ``output`` holds.
    at
        When the inputs were replaced (UTC); default now.
    compaction_ids
        The ``lake_compactions`` rows (intent log) of this compaction, if any: they must
        still be ``started``, and are marked ``committed`` in the same transaction.
    delta_version
        Recorded on those rows: the Delta table version that added the output.

    Returns
    -------
    int
        The output's id, greater than every input's.

    Raises
    ------
    LakeConfigError
        When ``inputs`` is empty or names a file that is not a live file of the table,
        or a compaction row is no longer ``started``; the manifest is then left unchanged.
    """
    ids = register_compactions(
        engine,
        [output],
        inputs,
        at=at,
        compaction_ids=compaction_ids,
        delta_version=delta_version,
    )
    return ids[0]


def register_compactions(
    engine: Engine,
    outputs: Sequence[FileEntry],
    inputs: Sequence[int],
    *,
    at: datetime | None = None,
    compaction_ids: Sequence[int] = (),
    delta_version: int | None = None,
) -> list[int]:
    """Register the outputs of one compaction and replace its inputs, in one transaction.

    A compaction may write several files from one set of inputs (one per date partition,
    or more under a row cap): they become live, and the inputs ``replaced``, together.
    Each input's ``replaced_by`` is set to the first output's id (all outputs of the
    compaction are its ``lake_compactions`` rows' ``output_id``).

    ``compaction_ids`` (the compaction's ``lake_compactions`` rows, one per output, in the
    order of ``outputs``) must all still be ``started``: they are marked ``committed``
    with their ``output_id`` and ``delta_version`` in the same transaction, so a
    compaction that a recovery run has meanwhile rolled back cannot also be registered.

    Returns
    -------
    list[int]
        The outputs' ids, in the order of ``outputs``, each greater than every input's.

    Raises
    ------
    LakeConfigError
        When ``outputs`` or ``inputs`` is empty, the outputs are not all of one table,
        an input is not a live file of that table, or a compaction row is not
        ``started``; nothing is changed then.
    """
    wanted = sorted(set(inputs))
    if not outputs:
        msg = "A compaction must register at least one output file, but none was given."
        raise LakeConfigError(msg)
    table = outputs[0].table
    if any(o.table != table for o in outputs):
        msg = f"The outputs of one compaction must belong to one table, not {outputs!r}."
        raise LakeConfigError(msg)
    if not wanted:
        msg = (
            "A compaction must replace at least one file, but none was given for "
            f"{outputs[0].path!r}."
        )
        raise LakeConfigError(msg)
    if compaction_ids and len(compaction_ids) != len(outputs):
        msg = (
            f"A compaction with {len(outputs)} outputs needs as many compaction rows, "
            f"not {len(compaction_ids)}."
        )
        raise LakeConfigError(msg)
    now = at if at is not None else datetime.now(UTC)
    replaced_at = _to_db(now)
    with engine.begin() as conn:
        if compaction_ids:
            # Taken first: a concurrent rollback of the same rows waits or loses here.
            claimed = conn.execute(
                update(lake_compactions)
                .where(
                    lake_compactions.c.id.in_(list(compaction_ids)),
                    lake_compactions.c.status == "started",
                )
                .values(status="committed", finished_at=replaced_at, delta_version=delta_version)
            ).rowcount
            if claimed != len(set(compaction_ids)):
                msg = (
                    f"The compaction rows {list(compaction_ids)!r} are not all 'started' any "
                    "more (a recovery run rolled them back); nothing was registered."
                )
                raise LakeConfigError(msg)
        new_ids: list[int] = []
        for output in outputs:
            values = _values(replace(output, writer_id=COMPACTION_WRITER_ID, status="live"))
            result = conn.execute(insert(lake_files).values(values))
            new_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
            if not isinstance(new_id, int):
                msg = f"The manifest returned no id for the compacted file {output.path!r}."
                raise RuntimeError(msg)
            new_ids.append(new_id)
        marked = conn.execute(
            update(lake_files)
            .where(
                lake_files.c.id.in_(wanted),
                lake_files.c.table_name == table,
                lake_files.c.status == "live",
            )
            .values(status="replaced", replaced_at=replaced_at, replaced_by=new_ids[0])
        ).rowcount
        if marked != len(wanted):
            # Raising inside the block rolls the transaction back: nothing is marked.
            msg = (
                f"A compaction can only replace live files of {table!r}, but some of "
                f"the files {wanted!r} are not."
            )
            raise LakeConfigError(msg)
        for compaction_id, output_id in zip(compaction_ids, new_ids, strict=False):
            conn.execute(
                update(lake_compactions)
                .where(lake_compactions.c.id == compaction_id)
                .values(output_id=output_id)
            )
    return new_ids


def is_registered(engine: Engine, path: str) -> bool:
    """Tell whether a path (relative to the lake root) is in the manifest, in any status.

    Parameters
    ----------
    engine
        Engine of the SQL store.
    path
        Path relative to the lake root, POSIX separators.

    Returns
    -------
    bool
    """
    with engine.connect() as conn:
        found = conn.execute(select(lake_files.c.id).where(lake_files.c.path == path)).first()
    return found is not None


def live_files(engine: Engine, table: str) -> list[FileEntry]:
    """Return the live files of a table, ordered by id (registration order).

    Parameters
    ----------
    engine
        Engine of the SQL store.
    table
        Table name.

    Returns
    -------
    list[FileEntry]
        A consistent snapshot: the result of one query.
    """
    query = (
        select(lake_files)
        .where(lake_files.c.table_name == table, lake_files.c.status == "live")
        .order_by(lake_files.c.id)
    )
    with engine.connect() as conn:
        return [_entry(row) for row in conn.execute(query)]


def files_since(engine: Engine, table: str, after_id: int) -> list[FileEntry]:
    """Return the files of a table registered after ``after_id``, ordered by id.

    Meant for incremental aggregates: keep the largest id seen as a watermark and ask for
    the files added since. Files are returned whatever their status, so a flush file that
    a compactor has since replaced is still returned once; a consumer counts each row once
    by folding every file returned except compaction outputs (:func:`is_compaction_output`;
    the module docstring states the contract).

    Parameters
    ----------
    engine
        Engine of the SQL store.
    table
        Table name.
    after_id
        Watermark; ``0`` returns every file.

    Returns
    -------
    list[FileEntry]
    """
    query = (
        select(lake_files)
        .where(lake_files.c.table_name == table, lake_files.c.id > after_id)
        .order_by(lake_files.c.id)
    )
    with engine.connect() as conn:
        return [_entry(row) for row in conn.execute(query)]


def last_file_ids(engine: Engine) -> dict[str, int]:
    """Return the highest manifest id of each table, whatever the file's status.

    One query: a consistent snapshot. Tables without a file are left out; the largest value
    is the manifest's highest id (ids are shared by the tables).

    Parameters
    ----------
    engine
        Engine of the SQL store.

    Returns
    -------
    dict[str, int]
    """
    query = select(lake_files.c.table_name, func.max(lake_files.c.id)).group_by(
        lake_files.c.table_name
    )
    with engine.connect() as conn:
        return {str(table): int(top) for table, top in conn.execute(query) if top is not None}


def files_as_of(engine: Engine, table: str, as_of: int) -> list[FileEntry]:
    """Return the files of a table that were live when ``as_of`` was the highest id.

    Those registered up to ``as_of`` and not yet replaced then: ``live`` now, or
    ``replaced`` by a file registered after ``as_of`` (``replaced_by``; a compaction's
    outputs always get larger ids than its inputs). Compaction outputs are included. Their
    rows are the rows of the lake at that point, each once: what a consumer starting from
    nothing folds (the module docstring states the contract). A replaced file without
    ``replaced_by`` (replaced by nothing, as when a retention rewrite kept none of its rows)
    counts as replaced at every id.

    Parameters
    ----------
    engine
        Engine of the SQL store.
    table
        Table name.
    as_of
        A manifest id, normally the highest one (:func:`last_file_ids`) read just before:
        the files a compaction replaced in between are still returned, and its outputs not.

    Returns
    -------
    list[FileEntry]
        Ordered by id.
    """
    c = lake_files.c
    query = (
        select(lake_files)
        .where(
            c.table_name == table,
            c.id <= as_of,
            (c.status == "live") | ((c.status == "replaced") & (c.replaced_by > as_of)),
        )
        .order_by(c.id)
    )
    with engine.connect() as conn:
        return [_entry(row) for row in conn.execute(query)]
