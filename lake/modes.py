"""The predictions table's ``mode`` column, and reading files written before it existed.

``mode`` says how a prediction was served: ``"online"`` (the HTTP path), ``"batch"``
(``banditlake score``) or ``"stream"`` (the message-stream consumer). Files written
before the column existed hold online rows only; every reader goes through this module
(or the SQL it builds) so that such a file reads as ``mode = "online"``:

- Arrow tables read whole or by column: :func:`with_mode`, :func:`read_predictions`;
- DuckDB: :func:`duckdb_select`, over a source read by name with missing columns as NULL;
- polars: :func:`polars_frame`, over a scan with missing columns inserted as null.

Batch rows never enter the online bandit statistics unless their experiment opts in
(``experiments.learn_from_batch``): :func:`counted_online` is the one place that rule is
written, for polars frames.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Final

import polars as pl
import pyarrow as pa

from lake.schemas import PREDICTIONS_SCHEMA, InferenceMode
from lake.storage import LakeStorage

__all__ = [
    "DEFAULT_MODE",
    "MODE",
    "READ_SCHEMA",
    "counted_online",
    "duckdb_select",
    "polars_frame",
    "read_predictions",
    "with_mode",
]

MODE: Final = "mode"
"""Name of the column."""

DEFAULT_MODE: Final[InferenceMode] = "online"
"""What a row of a file written before the column existed is."""

READ_SCHEMA: Final[pa.Schema] = PREDICTIONS_SCHEMA.set(
    PREDICTIONS_SCHEMA.get_field_index(MODE), PREDICTIONS_SCHEMA.field(MODE).with_nullable(True)
)
"""The predictions schema files are read with: ``mode`` may be missing (null) there."""


def with_mode(table: pa.Table) -> pa.Table:
    """``table`` with a ``mode`` column, ``"online"`` in every row, when it has none.

    Parameters
    ----------
    table
        Rows of the predictions table, all columns or some of them.

    Returns
    -------
    pa.Table
        ``table`` itself when it has ``mode``; otherwise ``table`` with ``mode`` inserted
        where the schema has it (before ``writer_id``) or appended when the table is a
        selection of columns without ``writer_id``.
    """
    if MODE in table.column_names:
        return table
    column = pa.array([DEFAULT_MODE] * table.num_rows, pa.string())
    field = PREDICTIONS_SCHEMA.field(MODE)
    if "writer_id" in table.column_names:
        return table.add_column(table.column_names.index("writer_id"), field, column)
    return table.append_column(field, column)


def read_predictions(storage: LakeStorage, path: str, columns: Sequence[str]) -> pa.Table:
    """Read ``columns`` (which may name ``mode``) of one predictions file.

    A file written before the ``mode`` column existed gets it as ``"online"``. Reading the
    file's footer first would cost a request per file on object storage, so the columns
    are asked for as they are and only a file that lacks ``mode`` is read again.

    Raises
    ------
    FileNotFoundError, OSError, pyarrow.ArrowException
        As :meth:`lake.storage.LakeStorage.read_table`.
    """
    wanted = list(columns)
    try:
        return storage.read_table(path, columns=wanted)
    except pa.ArrowInvalid as exc:
        if MODE not in wanted or f"FieldRef.Name({MODE})" not in str(exc):
            raise
    table = storage.read_table(path, columns=[c for c in wanted if c != MODE])
    return with_mode(table).select(wanted)


def duckdb_select(source: str, empty: str) -> str:
    """A ``SELECT`` of the predictions table from ``source`` with ``mode`` filled in.

    Parameters
    ----------
    source
        A DuckDB ``FROM`` item that reads the files by column name, a column missing
        from a file as NULL (``read_parquet(..., union_by_name = true)`` or an Arrow
        dataset with the lake schema).
    empty
        A ``SELECT`` of the table's columns, typed, with no rows: put first, it fixes
        the columns' order and types, and gives ``mode`` even when no file has it.
    """
    return (
        f"SELECT * REPLACE (coalesce({MODE}, '{DEFAULT_MODE}') AS {MODE}) "
        f"FROM ({empty} UNION ALL BY NAME SELECT * FROM {source})"
    )


def polars_frame(frame: pl.LazyFrame) -> pl.LazyFrame:
    """``frame`` (a scan with missing columns inserted as null) with ``mode`` filled in."""
    return frame.with_columns(pl.col(MODE).fill_null(DEFAULT_MODE))


def counted_online(frame: pl.DataFrame, learn_from_batch: Collection[str]) -> pl.DataFrame:
    """The rows of ``frame`` that count in the online bandit statistics.

    Parameters
    ----------
    frame
        Prediction rows with at least the columns ``experiment`` and ``mode``.
    learn_from_batch
        Experiments that opted in to learning from batch-scored rows.

    Returns
    -------
    pl.DataFrame
        Every online and stream row, and the batch rows of the experiments in
        ``learn_from_batch``.
    """
    batch = pl.col(MODE) == "batch"
    if not learn_from_batch:
        return frame.filter(~batch)
    return frame.filter(~batch | pl.col("experiment").is_in(list(learn_from_batch)))
