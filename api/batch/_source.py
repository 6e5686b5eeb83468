"""Reading the input of ``banditlake score`` in bounded chunks.

Three kinds of input, local or on S3 (through :mod:`lake.storage`'s file systems): one
Parquet file, a directory of Parquet files (``pyarrow.dataset``; names starting with
``.`` or ``_`` are skipped), or one CSV file (``pyarrow.csv``'s streaming reader, with a
header row). Every chunk holds at most ``batch_rows`` rows, and only a couple of chunks
are in memory at once, whatever the input's size.

A bad row is named by where a person finds it: ``line N`` of a CSV file (the header is
line 1; lines are counted as records, so a quoted value that spans lines shifts the
count), ``row N`` (from 1) of Parquet input.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from api.batch._errors import BatchInputError
from lake.errors import LakeConfigError
from lake.storage import open_storage

__all__ = ["Chunk", "Source", "open_source"]

_CSV_BLOCK_BYTES: Final = 8 << 20
_NUMERIC_BAD: Final = "is not a number"


@dataclass(frozen=True, slots=True)
class Chunk:
    """Consecutive input rows: ``first`` is the 0-based index of the first one."""

    data: pa.RecordBatch
    first: int


class _CountingFile(io.RawIOBase):
    """A binary file that counts the bytes read through it (the CSV reader's progress)."""

    def __init__(self, raw: pa.NativeFile) -> None:
        self._raw = raw
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self.consumed += len(data)
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


class Source:
    """An opened input: its columns, its size when known, and its chunks."""

    def __init__(
        self,
        name: str,
        kind: Literal["parquet", "csv"],
        schema: pa.Schema,
        *,
        rows: int | None,
        size_bytes: int | None,
        dataset: ds.Dataset | None = None,
        filesystem: pafs.FileSystem | None = None,
        location: str | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.schema = schema
        self.rows = rows
        """Rows in the input, when known before reading it (Parquet footers)."""
        self.size_bytes = size_bytes
        self._dataset = dataset
        self._filesystem = filesystem
        self._location = location
        self._counter: _CountingFile | None = None

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    @property
    def bytes_read(self) -> int:
        """CSV bytes read so far (0 for Parquet, whose row count is known)."""
        return self._counter.consumed if self._counter is not None else 0

    def where(self, index: int) -> str:
        """Where the input row with 0-based ``index`` is, to start an error message."""
        if self.kind == "csv":
            return f"Line {index + 2} of {self.name}"
        return f"Row {index + 1} of {self.name}"

    def span(self, first: int, n: int) -> str:
        """The input rows ``first`` to ``first + n - 1`` (0-based), inside a sentence."""
        if self.kind == "csv":
            return f"lines {first + 2} to {first + n + 1} of {self.name}"
        return f"rows {first + 1} to {first + n} of {self.name}"

    def chunks(self, columns: Sequence[str], batch_rows: int) -> Iterator[Chunk]:
        """Yield ``columns`` of the input, at most ``batch_rows`` rows at a time."""
        if self.kind == "parquet":
            yield from self._parquet_chunks(columns, batch_rows)
        else:
            yield from self._csv_chunks(columns, batch_rows)

    def _parquet_chunks(self, columns: Sequence[str], batch_rows: int) -> Iterator[Chunk]:
        assert self._dataset is not None
        batches = _row_group_batches(self._dataset, list(columns), batch_rows)
        first = 0
        pending: list[pa.RecordBatch] = []
        held = 0
        # Row groups smaller than a chunk are gathered, so the model sees full batches.
        for batch in batches:
            if batch.num_rows == 0:
                continue
            pending.append(batch)
            held += batch.num_rows
            if held >= batch_rows:
                data = _combine(pending)
                for start in range(0, data.num_rows - batch_rows + 1, batch_rows):
                    yield Chunk(data.slice(start, batch_rows), first)
                    first += batch_rows
                done = (data.num_rows // batch_rows) * batch_rows
                rest = data.slice(done)
                pending, held = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
        if held:
            yield Chunk(_combine(pending), first)

    def _csv_chunks(self, columns: Sequence[str], batch_rows: int) -> Iterator[Chunk]:
        assert self._filesystem is not None and self._location is not None
        wanted = set(columns)
        bad: list[pacsv.InvalidRow] = []

        def on_invalid(row: pacsv.InvalidRow) -> str:
            bad.append(row)
            return "skip"

        types = {c: self.schema.field(c).type for c in columns}
        raw = self._filesystem.open_input_stream(self._location)
        self._counter = _CountingFile(raw)
        stream = io.BufferedReader(self._counter, buffer_size=1 << 20)
        try:
            # One thread: the invalid-row handler then learns each row's line number.
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES, use_threads=False),
                parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
                convert_options=pacsv.ConvertOptions(
                    include_columns=list(columns), column_types=types
                ),
            )
        except pa.ArrowInvalid as exc:
            # The reader converts its first block at once.
            stream.close()
            if bad:
                raise _ragged(bad[0], self.name) from exc
            raise self._conversion_error(exc, 0, columns) from exc
        first = 0
        pending: list[pa.RecordBatch] = []
        held = 0
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except pa.ArrowInvalid as exc:
                    raise self._conversion_error(exc, first + held, columns) from exc
                if bad:
                    raise _ragged(bad[0], self.name)
                assert wanted <= set(batch.schema.names)
                pending.append(batch)
                held += batch.num_rows
                while held >= batch_rows:
                    data = _combine(pending)
                    yield Chunk(data.slice(0, batch_rows), first)
                    first += batch_rows
                    rest = data.slice(batch_rows)
                    pending, held = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
            if held:
                yield Chunk(_combine(pending), first)
        finally:
            stream.close()

    def _conversion_error(
        self, exc: pa.ArrowInvalid, start: int, columns: Sequence[str]
    ) -> BatchInputError:
        """The first value after input row ``start`` that does not convert, by line."""
        # The streaming reader names neither line nor row: read the rest again as text,
        # one block at a time, and find the first value the column's type refuses.
        raw = self._filesystem.open_input_stream(self._location)  # type: ignore[union-attr]
        try:
            reader = pacsv.open_csv(
                raw,
                read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
                parse_options=pacsv.ParseOptions(invalid_row_handler=lambda _: "skip"),
                convert_options=pacsv.ConvertOptions(
                    include_columns=list(columns), column_types=dict.fromkeys(columns, pa.string())
                ),
            )
            seen = 0
            for batch in reader:
                if seen + batch.num_rows > start:
                    skip = max(start - seen, 0)
                    found = [
                        (at, name)
                        for name in columns
                        if (
                            at := _first_bad(
                                batch.column(name).slice(skip), self.schema.field(name).type
                            )
                        )
                        is not None
                    ]
                    if found:
                        at, name = min(found)
                        text = batch.column(name)[skip + at].as_py()
                        msg = (
                            f"{self.where(seen + skip + at)}: column {name!r} holds {text!r}, "
                            f"which {_NUMERIC_BAD}."
                        )
                        return BatchInputError(msg)
                seen += batch.num_rows
        finally:
            raw.close()
        msg = f"The CSV file {self.name} cannot be read: {_first_line(exc)}."
        return BatchInputError(msg)


def _converts(values: pa.Array, target: pa.DataType) -> bool:
    try:
        pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _first_bad(values: pa.Array, target: pa.DataType) -> int | None:
    """The index of the first text in ``values`` that ``target`` refuses, or ``None``.

    Bisection: ``O(log n)`` vectorised casts rather than one per value. An empty text is
    a missing value, named later by the feature checks, so it is not counted here.
    """
    values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
    if _converts(values, target):
        return None
    low, high = 0, len(values)  # the first refused value is in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        if _converts(values.slice(low, middle - low), target):
            low = middle
        else:
            high = middle
    return low


def _ragged(row: pacsv.InvalidRow, name: str) -> BatchInputError:
    where = f"Line {row.number}" if row.number is not None else "A line"
    msg = (
        f"{where} of {name} has {row.actual_columns} fields; the header has {row.expected_columns}."
    )
    return BatchInputError(msg)


def _row_group_batches(
    dataset: ds.Dataset, columns: list[str], batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """The dataset's batches, one row group read at a time, as they are asked for.

    A scanner over the whole dataset reads ahead while its consumer (the models) is
    slower, up to dozens of row groups; reading row group by row group on demand keeps
    memory at about one row group and the chunks in flight, whatever the input's size.
    """
    options = ds.ParquetFragmentScanOptions(pre_buffer=False)
    for fragment in dataset.get_fragments():
        for group in fragment.split_by_row_group():
            yield from group.to_batches(
                columns=columns, batch_size=batch_rows, fragment_scan_options=options
            )


def _combine(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__


def _locate(uri: str) -> tuple[pafs.FileSystem, str, str]:
    """The file system, the location on it, and a display name of ``uri``."""
    if uri.startswith("s3://"):
        parent, _, name = uri.rstrip("/").rpartition("/")
        try:
            storage = open_storage(parent)
        except LakeConfigError as exc:
            raise BatchInputError(str(exc)) from exc
        return storage.filesystem, storage.location(name), uri
    path = Path(uri).expanduser().resolve()
    return pafs.LocalFileSystem(), str(path), uri


def open_source(uri: str, *, float_columns: Sequence[str]) -> Source:
    """Open the input at ``uri`` (a path or ``s3://bucket/key``) without reading its rows.

    Parameters
    ----------
    uri
        A ``.csv`` file, a Parquet file, or a directory of Parquet files.
    float_columns
        Columns a CSV file's values are read as (the features): float64. Every other
        column of a CSV file (ids) is read as the text written.

    Raises
    ------
    BatchInputError
        When the input does not exist or is neither CSV nor Parquet.
    """
    filesystem, location, name = _locate(uri)
    try:
        info = filesystem.get_file_info(location)
    except OSError as exc:
        msg = f"The input {name} cannot be reached: {_first_line(exc)}."
        raise BatchInputError(msg) from exc
    if info.type == pafs.FileType.NotFound:
        msg = f"The input {name} does not exist."
        raise BatchInputError(msg)
    if info.type == pafs.FileType.File and location.lower().endswith(".csv"):
        return _open_csv(filesystem, location, name, info.size, float_columns)
    try:
        dataset = ds.dataset(location, filesystem=filesystem, format="parquet")
        rows = sum(f.metadata.num_rows for f in dataset.get_fragments())
    except (pa.ArrowInvalid, OSError) as exc:
        msg = (
            f"The input {name} is not a Parquet file, a directory of Parquet files or a "
            f".csv file: {_first_line(exc)}."
        )
        raise BatchInputError(msg) from exc
    return Source(name, "parquet", dataset.schema, rows=rows, size_bytes=None, dataset=dataset)


def _open_csv(
    filesystem: pafs.FileSystem,
    location: str,
    name: str,
    size: int | None,
    float_columns: Sequence[str],
) -> Source:
    with filesystem.open_input_stream(location) as raw:
        head = raw.read(1 << 16)
    header = head.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r")
    try:
        columns = pacsv.read_csv(io.BytesIO(header.encode() + b"\n")).column_names
    except pa.ArrowInvalid as exc:
        msg = f"The CSV file {name} has no readable header line: {_first_line(exc)}."
        raise BatchInputError(msg) from exc
    floats = set(float_columns)
    # Features are read as float64; every other column (ids) as the text written.
    fields = [pa.field(c, pa.float64() if c in floats else pa.string()) for c in columns]
    return Source(
        name,
        "csv",
        pa.schema(fields),
        rows=None,
        size_bytes=size,
        filesystem=filesystem,
        location=location,
    )
