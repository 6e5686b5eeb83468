"""Publishing one Parquet file to the lake: write it whole, then list it in the manifest.

The file is written whole through the lake's storage (:mod:`lake.storage`: on a local
disk a temp file fsynced and linked into place, on S3 one PUT), never replacing an
existing file; then it is registered in the manifest in one transaction. If the
registration fails the file is deleted again (so no unlisted file stays in the tree) and
the caller retries its rows. Readers list files through the manifest only, so they never
see half a file.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine

from lake.errors import LakeWriteError
from lake.failpoints import failpoint
from lake.layout import part_name, partition_path
from lake.manifest import FileEntry, is_registered, register_file
from lake.schemas import TableName
from lake.storage import LakeStorage

__all__ = ["FilePublisher"]

logger = logging.getLogger(__name__)

# A writer id is reused after a restart: the sequence restarts at 1, so a name may exist.
_MAX_NAME_ATTEMPTS: Final = 1000


class FilePublisher:
    """Write tables of one lake table as Parquet files of one writer and register them.

    Not thread-safe: its writer calls it under its flush lock.

    Parameters
    ----------
    storage
        The lake's storage; partition directories are created as needed.
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
        self,
        storage: LakeStorage,
        engine: Engine,
        *,
        table: TableName,
        writer_id: str,
        compression: str,
    ) -> None:
        self._storage = storage
        self._engine = engine
        self._table: TableName = table
        self._writer_id = writer_id
        self._compression = compression
        self._seq = 0
        # New names for this instance even when its writer id was used before.
        self._token = secrets.token_hex(4)

    def publish(self, table: pa.Table) -> FileEntry:
        now = datetime.now(UTC)
        directory = partition_path(self._table, now)
        path, size = self._write_file(directory, table)
        ts_range = pc.min_max(table["ts"])
        entry = FileEntry(
            table=self._table,
            path=path,
            rows=table.num_rows,
            bytes=size,
            writer_id=self._writer_id,
            min_ts=ts_range["min"].as_py(),
            max_ts=ts_range["max"].as_py(),
            created_at=now,
        )
        failpoint("publish.after_file")
        try:
            register_file(self._engine, entry)
        except Exception:
            if self._registered_anyway(entry.path):
                return entry
            # Nothing unlisted may stay in the tree; the rows are retried in a new file.
            try:
                self._storage.delete(path)
            except (OSError, pa.ArrowException) as exc:
                logger.warning("Could not remove unregistered lake file %s: %s", path, exc)
            raise
        failpoint("publish.after_register")
        logger.debug("Lake writer %s wrote %s (%d rows).", self._writer_id, entry.path, entry.rows)
        return entry

    def _write_file(self, directory: str, table: pa.Table) -> tuple[str, int]:
        for _ in range(_MAX_NAME_ATTEMPTS):
            self._seq += 1
            path = f"{directory}/{part_name(self._writer_id, self._seq, self._token)}"
            try:
                size = self._storage.write_new(
                    path, table, compression=self._compression, fresh_name=True
                )
            except FileExistsError:
                continue
            return path, size
        msg = f"Found no free part file name for writer {self._writer_id!r} in {directory}."
        raise LakeWriteError(msg)

    def _registered_anyway(self, path: str) -> bool:
        # A commit whose acknowledgement was lost looks like a failure; deleting a file
        # the manifest lists would break every reader, so ask before deleting.
        try:
            return is_registered(self._engine, path)
        except Exception:
            return False
