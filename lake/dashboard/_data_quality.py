"""Data quality: per feature, missing values, values outside the first window's range, NaN.

Over the same two windows as the drift panels (the experiment's first and last ``hours``),
of the rows served online or by the stream consumer (:mod:`._served`), whatever their
status: a request the model failed on still carried its features. Each window is one
DuckDB pass that reads the ``features`` column once for every feature.

The first window's range depends only on immutable files, so it is cached like drift's
reference window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from lake.dashboard._drift import DriftWindow, _feature_names
from lake.dashboard._files import MICROSECOND, Queries, experiment_span, overlapping, source
from lake.dashboard._served import served
from lake.errors import LakeConfigError
from lake.reader import Lake

__all__ = ["QUALITY_MIN_ROWS", "DataQuality", "FeatureQuality", "data_quality"]

QUALITY_MIN_ROWS: Final = 100
"""Finite values a feature needs in the first window for its range to judge the last one:
the range of a handful of rows would call most later values out of range."""

_COLUMNS: Final = ("experiment", "variant", "role", "ts", "features")


@dataclass(frozen=True, slots=True)
class FeatureQuality:
    """One feature in the first and the last window.

    A value is *missing* when the feature is absent from the row's ``features`` map or
    null; *non-finite* when it is NaN or infinite (the HTTP and stream paths refuse such
    values, so these come from other writers); *out of range* when it is finite and
    outside ``[low, high]``, the finite minimum and maximum of the first window.

    Shares: ``*_missing_share`` is missing rows over the window's rows (``None`` for an
    empty window); ``out_of_range_share`` is out-of-range values over the last window's
    finite values, ``None`` when that window has none or the first window has fewer than
    the minimum finite values.
    """

    name: str
    reference_rows: int
    current_rows: int
    reference_missing: int
    current_missing: int
    reference_missing_share: float | None
    current_missing_share: float | None
    reference_values: int
    current_values: int
    reference_nonfinite: int
    current_nonfinite: int
    low: float | None
    high: float | None
    out_of_range: int
    out_of_range_share: float | None


@dataclass(frozen=True, slots=True)
class DataQuality:
    """Features in name order; ``variant`` is the one variant looked at, or ``None`` (arms)."""

    reference: DriftWindow | None
    current: DriftWindow | None
    variant: str | None
    min_rows: int
    features: tuple[FeatureQuality, ...]
    files_read: int


@dataclass(frozen=True, slots=True)
class _Window:
    """A window's rows, and per feature: missing, finite, non-finite values, min, max."""

    rows: int
    missing: tuple[int, ...]
    finite: tuple[int, ...]
    nonfinite: tuple[int, ...]
    low: tuple[float | None, ...]
    high: tuple[float | None, ...]


def _stats_sql(source: str, where: str, count: int, *, extra: Sequence[str] = ()) -> str:
    """One pass over a window: its rows, and five aggregates per feature, then ``extra``."""
    columns = ["count(*)"]
    for i in range(count):
        x = f"x{i}"
        columns.append(
            f"count(*) FILTER (WHERE {x} IS NULL), count(*) FILTER (WHERE isfinite({x})), "
            f"count(*) FILTER (WHERE {x} IS NOT NULL AND NOT isfinite({x})), "
            f"min({x}) FILTER (WHERE isfinite({x})), max({x}) FILTER (WHERE isfinite({x}))"
        )
    columns += extra
    values = ", ".join(f"features[?] AS x{i}" for i in range(count)) or "1 AS one"
    return f"SELECT {', '.join(columns)} FROM (SELECT {values} FROM {source} WHERE {where})"


def _window(row: Sequence[Any], count: int) -> _Window:
    rows, *values = row
    parts = [values[k::5] for k in range(5)]
    return _Window(
        int(rows),
        tuple(int(v) for v in parts[0]),
        tuple(int(v) for v in parts[1]),
        tuple(int(v) for v in parts[2]),
        tuple(None if v is None else float(v) for v in parts[3]),
        tuple(None if v is None else float(v) for v in parts[4]),
    )


def _query(queries: Queries, sql: str, params: list[object]) -> Sequence[Any]:
    con = queries.cursor()
    try:
        row = con.execute(sql, params).fetchone()
    finally:
        con.close()
    assert row is not None  # an aggregate without GROUP BY returns one row
    return row


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def data_quality(
    queries: Queries,
    lake: Lake,
    experiment: str,
    *,
    features: Sequence[str] | None = None,
    variant: str | None = None,
    hours: int = 24,
    min_rows: int = QUALITY_MIN_ROWS,
) -> DataQuality:
    """Missing, non-finite and out-of-range values per feature, first window against last.

    Parameters
    ----------
    queries
        The owner of the DuckDB connection and the reference cache
        (:class:`lake.dashboard.DashboardQueries`).
    lake
        A manifest snapshot.
    experiment
        Experiment name.
    features
        Feature names (the variants' inputs, known to the SQL store): a feature no row
        carries shows as 100% missing. ``None`` finds every key of the windows' maps.
    variant
        Only this variant's rows (arm or shadow); ``None``: every arm's rows (shadows
        repeat the arm's features).
    hours
        Length of each window; when the experiment's data spans less than two windows,
        each window is half of it.
    min_rows
        Finite values a feature needs in the first window for an out-of-range share.

    Returns
    -------
    DataQuality
        Per feature: ``current_missing_share = current_missing / current_rows`` and
        ``out_of_range_share = out_of_range / current_values``, exact counts beside them.
    """
    if hours < 1 or min_rows < 1:
        msg = (
            "Data quality needs a window of at least 1 hour and a minimum of 1 row; "
            f"got {hours} and {min_rows}."
        )
        raise LakeConfigError(msg)
    span = experiment_span(queries, lake, experiment)
    if span is None:
        return DataQuality(None, None, variant, min_rows, (), 0)
    first, last = span
    window = min(timedelta(hours=hours), (last - first) // 2)
    reference_end, current_start = first + window, last + MICROSECOND - window
    predictions = lake.files("predictions")
    reference_files = overlapping(predictions, first, reference_end)
    current_files = overlapping(predictions, current_start, last)
    who = "role = 'arm'" if variant is None else "variant = ?"
    where = f"experiment = ? AND {who} AND ts >= ? AND ts < ?"

    def params(start: datetime, end: datetime) -> list[object]:
        return [experiment, start, end] if variant is None else [experiment, variant, start, end]

    if features is not None:
        names = tuple(sorted(set(features)))
    else:
        windows = [
            (source(lake, files), [experiment, start, end])
            for files, start, end in (
                (reference_files, first, reference_end),
                (current_files, current_start, last + MICROSECOND),
            )
            if files
        ]
        names = _feature_names(queries, windows)
    key = (
        tuple((int(f.id or 0), lake.storage.url(f.path)) for f in reference_files),
        experiment,
        variant,
        first,
        reference_end,
        names,
    )
    reference = queries.cached(
        ("quality_reference", key),
        lambda: _window(
            _query(
                queries,
                _stats_sql(served(lake, reference_files, _COLUMNS), where, len(names)),
                [*names, *params(first, reference_end)],
            ),
            len(names),
        ),
    )
    ranges = [
        f"count(*) FILTER (WHERE isfinite(x{i}) AND (x{i} < ? OR x{i} > ?))"
        for i in range(len(names))
    ]
    range_params: list[object] = []
    for low, high in zip(reference.low, reference.high, strict=True):
        range_params += [low, high]
    row = _query(
        queries,
        _stats_sql(served(lake, current_files, _COLUMNS), where, len(names), extra=ranges),
        [*range_params, *names, *params(current_start, last + MICROSECOND)],
    )
    current = _window(row[: 1 + 5 * len(names)], len(names))
    outside = [int(v) for v in row[1 + 5 * len(names) :]]
    out = []
    for i, name in enumerate(names):
        judged = reference.finite[i] >= min_rows and current.finite[i] > 0
        out.append(
            FeatureQuality(
                name=name,
                reference_rows=reference.rows,
                current_rows=current.rows,
                reference_missing=reference.missing[i],
                current_missing=current.missing[i],
                reference_missing_share=_share(reference.missing[i], reference.rows),
                current_missing_share=_share(current.missing[i], current.rows),
                reference_values=reference.finite[i],
                current_values=current.finite[i],
                reference_nonfinite=reference.nonfinite[i],
                current_nonfinite=current.nonfinite[i],
                low=reference.low[i],
                high=reference.high[i],
                out_of_range=outside[i],
                out_of_range_share=outside[i] / current.finite[i] if judged else None,
            )
        )
    return DataQuality(
        DriftWindow(first, reference_end, reference.rows),
        DriftWindow(current_start, last, current.rows),
        variant,
        min_rows,
        tuple(out),
        len({*reference_files, *current_files}),
    )
