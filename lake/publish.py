"""Publishing one Parquet file to the lake: write it whole, then list it in the manifest.

A file is written under a temp name in its destination directory, fsynced, moved to its
final name without ever replacing an existing file, and the directory is fsynced; then
the file is registered in the manifest in one transaction. If the registration fails the
file is deleted again (so no unlisted file stays in the tree) and the caller retries its
rows. Readers list files through the manifest only, so they never see half a file.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Engine

from lake.errors import LakeWriteError
from lake.layout import part_name, partition_dir, relative_path, temp_name
from lake.manifest import FileEntry, is_registered, register_file
from lake.schemas import TableName

__all__ = ["FilePublisher"]

logger = logging.getLogger(__name__)

# A writer id is reused after a restart: the sequence restarts at 1, so a name may exist.
_MAX_NAME_ATTEMPTS: Final = 1000


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; directories cannot be opened on some platforms.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _move_no_clobber(source: Path, target: Path) -> None:
    """Move ``source`` to ``target`` atomically, raising FileExistsError if it exists."""
    try:
        # link() fails when the target exists, so a live file is never overwritten.
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:
        # File systems without hard links: check, then rename (racy only between two
        # processes misconfigured with the same writer id).
        if target.exists():
            raise FileExistsError(target) from None
        os.replace(source, target)
    else:
        source.unlink()


class FilePublisher:
    """Write tables of one lake table as Parquet files of one writer and register them.

    Not thread-safe: its writer calls it under its flush lock.

    Parameters
    ----------
    root
        Lake root directory; partition directories are created as needed.
    engine
        Engine of the SQL store that holds the manifest table ``lake_files``.
    table
        The lake table the files belong to.
    writer_id
        The writer's id, part of every file name.
    compression
        Parquet compression codec.
    """

    def __init__(
        self, root: Path, engine: Engine, *, table: TableName, writer_id: str, compression: str
    ) -> None:
        self._root = root
        self._engine = engine
        self._table: TableName = table
        self._writer_id = writer_id
        self._compression = compression
        self._seq = 0
        self._known_dirs: set[Path] = set()

    def forget_directories(self) -> None:
        """Check the directories again before the next write (after a failure)."""
        self._known_dirs.clear()

    def _ensure_dir(self, directory: Path) -> None:
        if directory in self._known_dirs:
            return
        missing = [d for d in (directory, *directory.parents) if not d.exists()]
        directory.mkdir(parents=True, exist_ok=True)
        # New directory entries are only durable once their parents are synced.
        for created in missing:
            _fsync_dir(created.parent)
        self._known_dirs.add(directory)

    def publish(self, table: pa.Table) -> FileEntry:
        now = datetime.now(UTC)
        directory = partition_dir(self._root, self._table, now)
        self._ensure_dir(directory)
        final, size = self._write_file(directory, table)
        _fsync_dir(directory)
        ts_range = pc.min_max(table["ts"])
        entry = FileEntry(
            table=self._table,
            path=relative_path(self._root, final),
            rows=table.num_rows,
            bytes=size,
            writer_id=self._writer_id,
            min_ts=ts_range["min"].as_py(),
            max_ts=ts_range["max"].as_py(),
            created_at=now,
        )
        try:
            register_file(self._engine, entry)
        except Exception:
            if self._registered_anyway(entry.path):
                return entry
            # Nothing unlisted may stay in the tree; the rows are retried in a new file.
            final.unlink(missing_ok=True)
            _fsync_dir(directory)
            raise
        logger.debug("Lake writer %s wrote %s (%d rows).", self._writer_id, entry.path, entry.rows)
        return entry

    def _write_file(self, directory: Path, table: pa.Table) -> tuple[Path, int]:
        for _ in range(_MAX_NAME_ATTEMPTS):
            self._seq += 1
            final = directory / part_name(self._writer_id, self._seq)
            if final.exists():
                continue
            temp = directory / temp_name(self._writer_id, self._seq)
            try:
                sink = temp.open("xb")
            except FileExistsError:
                continue
            try:
                with sink:
                    pq.write_table(table, sink, compression=self._compression)
                    sink.flush()
                    os.fsync(sink.fileno())
                    size = sink.tell()
                try:
                    _move_no_clobber(temp, final)
                except FileExistsError:
                    continue
            finally:
                temp.unlink(missing_ok=True)
            return final, size
        msg = f"Found no free part file name for writer {self._writer_id!r} in {directory}."
        raise LakeWriteError(msg)

    def _registered_anyway(self, path: str) -> bool:
        # A commit whose acknowledgement was lost looks like a failure; deleting a file
        # the manifest lists would break every reader, so ask before deleting.
        try:
            return is_registered(self._engine, path)
        except Exception:
            return False
