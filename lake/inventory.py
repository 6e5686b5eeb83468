"""What the lake holds, per table, from the manifest alone: one query, no file read.

For ``/metrics``, ``/v1/lake`` and the dashboard: how many files and bytes are live,
how many of them are the writers' small flush files still waiting for compaction and
how many are published (compacted, in the Delta table), how many replaced files await
deletion after their grace period, and the Delta table's latest version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, case, func, select

from lake.manifest import COMPACTION_WRITER_ID, lake_compactions, lake_files
from lake.schemas import TABLES

__all__ = ["TableInventory", "lake_inventory"]


@dataclass(frozen=True, slots=True)
class TableInventory:
    """One lake table as the manifest lists it."""

    table: str
    live_files: int = 0
    live_rows: int = 0
    live_bytes: int = 0
    small_files: int = 0
    """Live flush files not compacted yet."""
    published_files: int = 0
    """Live compacted files, each also in the table's Delta log."""
    published_rows: int = 0
    replaced_files: int = 0
    """Replaced by a compacted file, kept until their grace period ends."""
    delta_version: int | None = None
    """The Delta table's latest version written by a committed compaction."""
    last_compaction_at: datetime | None = None
    compactions: tuple[tuple[str, int], ...] = ()
    """Compactions of this table by status (committed, rolled_back, started)."""


def lake_inventory(engine: Engine) -> dict[str, TableInventory]:
    """Count each table's files by state (one grouped query per manifest table)."""
    published = lake_files.c.writer_id == COMPACTION_WRITER_ID
    live = lake_files.c.status == "live"
    files = select(
        lake_files.c.table_name,
        func.count().filter(live),
        func.coalesce(func.sum(case((live, lake_files.c.rows), else_=0)), 0),
        func.coalesce(func.sum(case((live, lake_files.c.bytes), else_=0)), 0),
        func.count().filter(live & ~published),
        func.count().filter(live & published),
        func.coalesce(func.sum(case((live & published, lake_files.c.rows), else_=0)), 0),
        func.count().filter(~live),
    ).group_by(lake_files.c.table_name)
    compactions = (
        select(
            lake_compactions.c.table_name,
            func.max(lake_compactions.c.delta_version),
            func.max(lake_compactions.c.finished_at),
        )
        .where(lake_compactions.c.status == "committed")
        .group_by(lake_compactions.c.table_name)
    )
    by_status = select(
        lake_compactions.c.table_name, lake_compactions.c.status, func.count()
    ).group_by(lake_compactions.c.table_name, lake_compactions.c.status)
    with engine.connect() as conn:
        counted = {row[0]: row[1:] for row in conn.execute(files)}
        published_at = {row[0]: row[1:] for row in conn.execute(compactions)}
        statuses: dict[str, list[tuple[str, int]]] = {}
        for table, status, count in conn.execute(by_status):
            statuses.setdefault(table, []).append((str(status), int(count)))
    out: dict[str, TableInventory] = {}
    for table in TABLES:
        n = counted.get(table, (0, 0, 0, 0, 0, 0, 0))
        version, finished = published_at.get(table, (None, None))
        out[table] = TableInventory(
            table,
            live_files=int(n[0]),
            live_rows=int(n[1]),
            live_bytes=int(n[2]),
            small_files=int(n[3]),
            published_files=int(n[4]),
            published_rows=int(n[5]),
            replaced_files=int(n[6]),
            delta_version=None if version is None else int(version),
            compactions=tuple(sorted(statuses.get(table, []))),
            last_compaction_at=(
                finished.replace(tzinfo=UTC) if finished and finished.tzinfo is None else finished
            ),
        )
    return out
