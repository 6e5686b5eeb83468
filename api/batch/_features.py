"""A chunk's feature columns as one float64 matrix, checked before any model sees it.

The variants' declared feature names (``Variant.feature_names``) select the input's
columns by name. Every value must be a finite number, and one a float32 model is fed must
fit float32 (beyond it the model would see infinity); the first value that is not is
named by its row (:meth:`api.batch._source.Source.where`) and column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from api.batch._errors import BatchInputError

__all__ = ["FeatureMatrix", "check_range", "feature_matrix"]

_FLOAT32_MAX: Final = float(np.finfo(np.float32).max)

Where = Callable[[int], str]
"""The place of a 0-based input row, for the start of an error message (``Line 3 of …``)."""


class FeatureMatrix:
    """``values[i, j]``: feature ``names[j]`` of the chunk's row ``i`` (float64, C order)."""

    def __init__(self, names: Sequence[str], values: NDArray[np.float64]) -> None:
        self.names = tuple(names)
        self.values = values
        self._index = {name: j for j, name in enumerate(self.names)}

    def columns(self, names: Sequence[str]) -> list[int]:
        return [self._index[n] for n in names]

    def model_input(self, names: Sequence[str], dtype: Any) -> NDArray[Any]:
        """The model's input: its features in its order, in its dtype, C-contiguous."""
        columns = self.columns(names)
        whole = columns == list(range(len(self.names)))
        picked = self.values if whole else self.values[:, columns]
        return np.ascontiguousarray(picked, dtype=dtype)


def feature_matrix(
    data: pa.RecordBatch, names: Sequence[str], *, first: int, where: Where
) -> FeatureMatrix:
    """The ``names`` columns of ``data`` as a checked matrix.

    Parameters
    ----------
    data
        One chunk of input rows, holding every column of ``names``.
    names
        The features, in the order the matrix holds them.
    first
        The 0-based input index of the chunk's first row.
    where
        Names an input row for an error message.

    Raises
    ------
    BatchInputError
        For a column that is not numeric, a missing (null) value, or a value that is not
        finite; the message names the first such row and the column.
    """
    n = data.num_rows
    values = np.empty((n, len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        column = data.column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            if not pa.types.is_boolean(column.type) and not pa.types.is_decimal(column.type):
                msg = f"Column {name!r} holds {column.type} values; a feature must be numeric."
                raise BatchInputError(msg)
            column = pc.cast(column, pa.float64())
        if column.null_count:
            at = int(pc.index(pc.is_null(column), True).as_py())
            msg = f"{where(first + at)}: column {name!r} has no value."
            raise BatchInputError(msg)
        values[:, j] = column.to_numpy(zero_copy_only=False)
    finite = np.isfinite(values)
    if not finite.all():
        row, col = _first(~finite)
        msg = (
            f"{where(first + row)}: column {names[col]!r} holds "
            f"{float(values[row, col])!r}; a feature must be a finite number."
        )
        raise BatchInputError(msg)
    return FeatureMatrix(names, values)


def check_range(
    matrix: FeatureMatrix, names: Sequence[str], *, variant: str, first: int, where: Where
) -> None:
    """Refuse a value of ``names`` beyond float32's range (a float32 model's input)."""
    columns = matrix.columns(names)
    whole = columns == list(range(len(matrix.names)))
    block = matrix.values if whole else matrix.values[:, columns]
    # One pass for the common case (every value fits); the cell is found only if not.
    if max(float(block.max(initial=0.0)), -float(block.min(initial=0.0))) <= _FLOAT32_MAX:
        return
    over = np.abs(block) > _FLOAT32_MAX
    if over.any():
        row, col = _first(over)
        msg = (
            f"{where(first + row)}: column {names[col]!r} holds "
            f"{float(block[row, col])!r}, outside the float32 range (±{_FLOAT32_MAX:.8g}) of "
            f"the input of variant {variant!r}."
        )
        raise BatchInputError(msg)


def _first(mask: NDArray[np.bool_]) -> tuple[int, int]:
    row = int(np.argmax(mask.any(axis=1)))
    return row, int(np.argmax(mask[row]))
