"""Turning a batch of row tuples into an Arrow table, column by column.

Building each column from one Python sequence is several times faster than
``pa.Table.from_pylist`` on dicts, and the map column is faster still when assembled from
flat key and value arrays (measured: about 3 ms against 35 ms for 5,000 rows).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import accumulate, chain, repeat
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from lake.errors import RowConversionError
from lake.schemas import SCHEMAS, TableName

__all__ = ["rows_to_table", "split_convertible"]

_ALLOWED_VALUES: Final[Mapping[str, frozenset[str]]] = {
    "role": frozenset({"arm", "shadow"}),
    "status": frozenset({"ok", "error", "rejected"}),
    "mode": frozenset({"online", "batch", "stream"}),
}

# Every conversion problem that bad values can cause in pyarrow or in our own column code.
_CONVERSION_ERRORS = (pa.ArrowException, TypeError, ValueError, AttributeError, OverflowError)


def _map_array(values: Sequence[Any], type_: pa.MapType) -> pa.Array:
    maps: Sequence[Mapping[str, float]] = values
    offsets = pa.array(list(accumulate(chain((0,), map(len, maps)))), pa.int32())
    keys = pa.array(list(chain.from_iterable(maps)), type_.key_type)
    items = pa.array(list(chain.from_iterable(m.values() for m in maps)), type_.item_type)
    return pa.MapArray.from_arrays(offsets, keys, items)


def _column(values: Sequence[Any], field: pa.Field) -> pa.Array:
    if pa.types.is_map(field.type):
        array = _map_array(values, field.type)
    else:
        array = pa.array(values, type=field.type)
    allowed = _ALLOWED_VALUES.get(field.name)
    if allowed is not None and not pc.all(pc.is_in(array, pa.array(sorted(allowed)))).as_py():
        bad = sorted({v for v in array.to_pylist() if v not in allowed}, key=str)
        msg = f"Column {field.name!r} may only hold {sorted(allowed)}, but got {bad}."
        raise RowConversionError(msg)
    return array


def rows_to_table(rows: Sequence[tuple[Any, ...]], table: TableName, writer_id: str) -> pa.Table:
    """Convert row tuples to an Arrow table with the table's exact schema.

    Parameters
    ----------
    rows
        ``PredictionRow`` or ``FeedbackRow`` values (any tuples with the same fields in
        the same order), one per output row.
    table
        Which table the rows belong to; selects the schema.
    writer_id
        Value of the trailing ``writer_id`` column, which the rows do not carry.

    Returns
    -------
    pa.Table
        ``len(rows)`` rows with schema ``SCHEMAS[table]``. For feedback, a missing
        ``idempotency_key`` becomes the row's ``request_id``.

    Raises
    ------
    RowConversionError
        When any row does not fit the schema: wrong number of fields, a value of the wrong
        type, a null in a non-nullable column, or a role or status outside its values.
    """
    schema = SCHEMAS[table]
    row_fields = schema.names[:-1]
    if not rows:
        return schema.empty_table()
    try:
        columns = list(zip(*rows, strict=True))
    except ValueError as exc:
        msg = f"Rows for table {table!r} must all have {len(row_fields)} fields: {exc}."
        raise RowConversionError(msg) from exc
    if len(columns) != len(row_fields):
        msg = (
            f"Rows for table {table!r} must have {len(row_fields)} fields "
            f"({', '.join(row_fields)}), but they have {len(columns)}."
        )
        raise RowConversionError(msg)
    try:
        arrays = [_column(values, schema.field(i)) for i, values in enumerate(columns)]
        if table == "feedback":
            key_index = schema.get_field_index("idempotency_key")
            # The API contract: a client that sends no key gets the request id as its key.
            arrays[key_index] = pc.coalesce(arrays[key_index], arrays[0])
        for field, array in zip(schema, arrays, strict=False):
            # pa.Table.from_arrays does not check nullability; the Parquet writer would.
            if not field.nullable and array.null_count:
                msg = (
                    f"Column {field.name!r} may not be null, but {array.null_count} rows hold null."
                )
                raise RowConversionError(msg)
        arrays.append(pa.array(repeat(writer_id, len(rows)), pa.string()))
        return pa.Table.from_arrays(arrays, schema=schema)
    except RowConversionError:
        raise
    except _CONVERSION_ERRORS as exc:
        msg = f"Rows for table {table!r} do not fit its schema: {type(exc).__name__}: {exc}"
        raise RowConversionError(msg) from exc


def split_convertible(
    rows: Sequence[tuple[Any, ...]],
    convert: Callable[[Sequence[tuple[Any, ...]]], pa.Table],
) -> tuple[list[pa.Table], list[tuple[tuple[Any, ...], RowConversionError]]]:
    """Convert as many rows as possible, isolating the ones that cannot be converted.

    A single bad row must not poison a whole batch (it would be retried forever), so a
    failing batch is bisected until each bad row stands alone. With ``b`` bad rows among
    ``n`` this costs ``O(b log n)`` conversions instead of ``n``.

    Parameters
    ----------
    rows
        The batch to convert.
    convert
        Converts a sub-batch or raises ``RowConversionError``.

    Returns
    -------
    tables, rejected
        The converted tables, in row order, and each rejected row with its error.
    """
    tables: list[pa.Table] = []
    rejected: list[tuple[tuple[Any, ...], RowConversionError]] = []
    stack = [rows]
    while stack:
        part = stack.pop()
        try:
            tables.append(convert(part))
        except RowConversionError as exc:
            if len(part) == 1:
                rejected.append((part[0], exc))
                continue
            middle = len(part) // 2
            # Pushed second half first so the first half is converted first: keeps order.
            stack.append(part[middle:])
            stack.append(part[:middle])
    return tables, rejected
