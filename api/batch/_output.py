"""The scored output: written under a temporary name beside OUTPUT, renamed at the end.

Parquet or CSV by OUTPUT's extension (``.csv``; anything else is Parquet). Until the run
has scored every row (and, when logging, registered its lake files) OUTPUT does not
change: the rows go to ``.<name>.tmp-<random>`` in the same directory, which
:meth:`OutputFile.finish` renames over OUTPUT in one step and :meth:`OutputFile.abort`
(on any failure or interrupt) deletes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from api.batch._errors import BatchInputError

__all__ = ["OutputFile"]


class OutputFile:
    """One output file being written."""

    def __init__(self, target: str) -> None:
        if "://" in target:
            msg = f"--output must be a local path; got {target!r}."
            raise BatchInputError(msg)
        self.path = Path(target).expanduser()
        directory = self.path.parent
        if not directory.is_dir():
            msg = f"The output directory {str(directory)!r} does not exist."
            raise BatchInputError(msg)
        if self.path.is_dir():
            msg = f"The output {target!r} is a directory; name a file."
            raise BatchInputError(msg)
        self.csv = self.path.suffix.lower() == ".csv"
        self.temp = directory / f".{self.path.name}.tmp-{secrets.token_hex(4)}"
        self._writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
        try:
            # Created now, so a directory that cannot be written fails before any work.
            self.temp.touch(exist_ok=False)
        except OSError as exc:
            msg = f"Cannot write in {str(directory)!r}: {exc.strerror or exc}."
            raise BatchInputError(msg) from exc

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            if self.csv:
                self._writer = pacsv.CSVWriter(str(self.temp), table.schema)
            else:
                # A dictionary only where values repeat: not over ids or predictions.
                dictionary = [c for c in ("variant",) if c in table.column_names]
                self._writer = pq.ParquetWriter(
                    str(self.temp), table.schema, compression="zstd", use_dictionary=dictionary
                )
        self._writer.write_table(table)

    def finish(self, empty: pa.Schema) -> None:
        """Close the file and put it in OUTPUT's place (``empty``: its schema if no rows)."""
        if self._writer is None:
            self.write(empty.empty_table())
        assert self._writer is not None
        self._writer.close()
        self._writer = None
        with open(self.temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self.temp, self.path)

    def abort(self) -> None:
        """Close and delete the temporary file; OUTPUT stays as it was."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        self.temp.unlink(missing_ok=True)
