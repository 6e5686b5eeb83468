"""Feature drift: the population stability index of the last window against the first."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import numpy as np

from lake.dashboard._files import (
    MICROSECOND,
    Queries,
    experiment_span,
    overlapping,
    parquet,
    source,
)
from lake.errors import LakeConfigError
from lake.reader import Lake

__all__ = [
    "DRIFT_BINS",
    "DRIFT_MIN_ROWS",
    "DRIFT_THRESHOLD",
    "Drift",
    "DriftWindow",
    "FeatureDrift",
    "feature_drift",
    "psi",
]

DRIFT_THRESHOLD: Final = 0.2
"""PSI above which a feature is flagged: the usual "significant shift" rule of thumb."""

DRIFT_BINS: Final = 10
"""Reference-window deciles: the customary PSI binning."""

DRIFT_MIN_ROWS: Final = 250
"""Rows a feature needs in each window for a PSI: with fewer, one or two rows make a
decile's share jump by whole percents. Two windows of the same distribution scored above
the 0.2 threshold in 40.6% of 1,000 pairs at 100 rows, 2.0% at 200 and 0.5% at 250
(``benchmarks/prediction_drift_alarms.py``: the same decile PSI, on predictions), so 250
keeps a drift alert from firing on noise."""

# A proportion of 0 makes ln(c/r) infinite; flooring at 1e-4 is the usual smoothing.
_PSI_FLOOR: Final = 1e-4


@dataclass(frozen=True, slots=True)
class DriftWindow:
    """``[start, end]`` and the arm rows in it."""

    start: datetime
    end: datetime
    rows: int


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """One feature's PSI between the windows.

    ``psi`` is ``None`` (and ``drifted`` false) when either window holds fewer than the
    minimum rows with a finite value of the feature.

    ``reference_share``/``current_share`` are each window's share of rows per bin; the
    bins are cut at the reference window's quantiles.
    """

    name: str
    psi: float | None
    drifted: bool
    reference_rows: int
    current_rows: int
    reference_mean: float | None
    current_mean: float | None
    reference_share: tuple[float, ...]
    current_share: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Drift:
    reference: DriftWindow | None
    current: DriftWindow | None
    threshold: float
    min_rows: int
    features: tuple[FeatureDrift, ...]
    files_read: int


def psi(reference: Sequence[int], current: Sequence[int], *, floor: float = _PSI_FLOOR) -> float:
    """Population stability index of ``current`` against ``reference`` bin counts.

    Parameters
    ----------
    reference, current
        Counts per bin, shape ``(n_bins,)``, same bins.
    floor
        Smallest proportion used, so an empty bin gives a large but finite term.

    Returns
    -------
    float
        :math:`\\sum_i (c_i - r_i) \\ln(c_i / r_i)`, with :math:`r_i`, :math:`c_i` the
        proportions of each window in bin :math:`i`; 0 for identical distributions.
    """
    if len(reference) != len(current):
        msg = f"PSI needs the same bins on both sides; got {len(reference)} and {len(current)}."
        raise LakeConfigError(msg)
    r_total, c_total = sum(reference), sum(current)
    if r_total <= 0 or c_total <= 0:
        msg = f"PSI needs rows in both windows; got {r_total} and {c_total}."
        raise LakeConfigError(msg)
    total = 0.0
    for r_count, c_count in zip(reference, current, strict=True):
        r = max(r_count / r_total, floor)
        c = max(c_count / c_total, floor)
        total += (c - r) * math.log(c / r)
    return total


@dataclass(frozen=True, slots=True)
class _Reference:
    """One feature in the reference window: cut points, rows per bin, mean."""

    cuts: tuple[float, ...]
    counts: tuple[int, ...]
    mean: float | None


_WINDOW = "experiment = ? AND role = 'arm' AND ts >= ? AND ts < ?"


def _feature_names(
    queries: Queries, windows: Sequence[tuple[str, list[object]]]
) -> tuple[str, ...]:
    """Every key of the ``features`` maps in the windows, each a (table, parameters) pair."""
    names: set[str] = set()
    con = queries.cursor()
    try:
        for table, params in windows:
            rows = con.execute(
                f"SELECT DISTINCT unnest(map_keys(features)) FROM {table} WHERE {_WINDOW}", params
            ).fetchall()
            names.update(str(row[0]) for row in rows)
    finally:
        con.close()
    return tuple(sorted(names))


def _reference(
    queries: Queries,
    files: tuple[tuple[int, str], ...],
    experiment: str,
    start: datetime,
    end: datetime,
    names: tuple[str, ...],
    bins: int,
) -> tuple[int, tuple[_Reference, ...]]:
    """The reference window's rows, and each feature's cut points and counts.

    ``files`` are (manifest id, absolute path) pairs. The result depends only on these
    immutable files (manifest ids are never reused) and a fixed window, so the caller
    caches it: once an experiment has run for two windows every refresh reuses it and
    reads the current window only.
    """
    values = ", ".join(f"features[?] AS x{i}" for i in range(len(names)))
    con = queries.cursor()
    try:
        found = con.execute(
            f"SELECT 1 AS one, {values} FROM {parquet(path for _, path in files)} WHERE {_WINDOW}",
            [*names, experiment, start, end],
        ).fetchnumpy()
    finally:
        con.close()
    out = []
    for i in range(len(names)):
        x = np.ma.filled(np.ma.asarray(found[f"x{i}"], dtype=np.float64), np.nan)
        x = x[np.isfinite(x)]
        if not len(x):
            out.append(_Reference((), (), None))
            continue
        cuts = np.unique(np.quantile(x, np.arange(1, bins) / bins))
        # side="left": a value equal to a cut point falls in the bin that the cut closes,
        # as DuckDB's ``histogram(x, cuts)`` does for the current window.
        counts = np.bincount(np.searchsorted(cuts, x), minlength=len(cuts) + 1)
        out.append(_Reference(tuple(cuts.tolist()), tuple(counts.tolist()), float(x.mean())))
    return len(found["one"]), tuple(out)


def _current_sql(table: str, references: Sequence[_Reference]) -> tuple[str, list[object]]:
    """One pass over the current window: per feature, rows per reference bin and the mean.

    ``histogram(x, cuts)`` counts ``x <= cut`` in the first bin it fits, as
    ``searchsorted`` does for the reference; values above every cut go to ``inf``.
    """
    columns: list[str] = []
    for i in range(len(references)):
        finite = f"FILTER (WHERE isfinite(x{i}))"
        columns.append(f"histogram(x{i}, ?) {finite}, avg(x{i}) {finite}")
    values = ", ".join(f"features[?] AS x{i}" for i in range(len(references)))
    sql = (
        f"SELECT count(*), {', '.join(columns)} FROM (SELECT {values} FROM {table} WHERE {_WINDOW})"
    )
    return sql, [list(ref.cuts) for ref in references]


def _rows(queries: Queries, table: str, params: list[object]) -> int:
    con = queries.cursor()
    try:
        row = con.execute(f"SELECT count(*) FROM {table} WHERE {_WINDOW}", params).fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def _binned(histogram: dict[float, int] | None, cuts: tuple[float, ...]) -> list[int]:
    counts = [0] * (len(cuts) + 1)
    index = {cut: i for i, cut in enumerate(cuts)}
    for upper, n in (histogram or {}).items():
        counts[index.get(upper, len(cuts))] += int(n)
    return counts


def feature_drift(
    queries: Queries,
    lake: Lake,
    experiment: str,
    *,
    features: Sequence[str] | None = None,
    hours: int = 24,
    bins: int = DRIFT_BINS,
    threshold: float = DRIFT_THRESHOLD,
    min_rows: int = DRIFT_MIN_ROWS,
) -> Drift:
    """PSI of each feature between the experiment's first and last ``hours`` of arm rows.

    Parameters
    ----------
    queries
        The owner of the DuckDB connection and of the reference windows' cache.
    lake
        A manifest snapshot.
    experiment
        Experiment name.
    features
        Feature names to compare (the variants' inputs, known to the SQL store); ``None``
        finds every key of the ``features`` maps in the windows, which costs a pass more.
    hours
        Length of each window; when the experiment's data spans less than two windows,
        each window is half of it.
    bins
        The reference window's quantiles cut each feature into (at most) this many bins;
        a repeated cut point (a discrete feature) merges two bins.
    threshold
        PSI above which a feature is flagged.
    min_rows
        Rows with a finite value a feature needs in each window to get a PSI; below it the
        feature's ``psi`` is ``None`` and it is never flagged.

    Returns
    -------
    Drift
        Features in name order, each window with its row count. Shadow rows are left out:
        they repeat the arm's features.
    """
    if hours < 1 or bins < 2 or min_rows < 1:
        msg = (
            "Drift needs a window of at least 1 hour, 2 bins and a minimum of 1 row; "
            f"got {hours}, {bins} and {min_rows}."
        )
        raise LakeConfigError(msg)
    span = experiment_span(queries, lake, experiment)
    if span is None:
        return Drift(None, None, threshold, min_rows, (), 0)
    first, last = span
    window = min(timedelta(hours=hours), (last - first) // 2)
    reference_end, current_start = first + window, last + MICROSECOND - window
    predictions = lake.files("predictions")
    reference_files = overlapping(predictions, first, reference_end)
    current_files = overlapping(predictions, current_start, last)
    current = source(lake, current_files)
    current_params: list[object] = [experiment, current_start, last + MICROSECOND]
    reference_params: list[object] = [experiment, first, reference_end]
    names = (
        tuple(sorted(set(features)))
        if features is not None
        else _feature_names(
            queries, [(source(lake, reference_files), reference_params), (current, current_params)]
        )
    )
    files_read = len({*reference_files, *current_files})
    if not names:
        return Drift(
            DriftWindow(
                first,
                reference_end,
                _rows(queries, source(lake, reference_files), reference_params),
            ),
            DriftWindow(current_start, last, _rows(queries, current, current_params)),
            threshold,
            min_rows,
            (),
            files_read,
        )
    key = (
        tuple((int(f.id or 0), lake.storage.url(f.path)) for f in reference_files),
        experiment,
        first,
        reference_end,
        names,
        bins,
    )
    reference_rows, references = queries.cached(
        ("drift_reference", key), lambda: _reference(queries, *key)
    )
    sql, cut_params = _current_sql(current, references)
    con = queries.cursor()
    try:
        row = con.execute(sql, [*cut_params, *names, *current_params]).fetchone()
    finally:
        con.close()
    assert row is not None  # an aggregate without GROUP BY returns one row
    current_rows, *values = row
    drifts = []
    for i, (name, ref) in enumerate(zip(names, references, strict=True)):
        counts = _binned(values[2 * i], ref.cuts)
        n_ref, n_cur = sum(ref.counts), sum(counts)
        value = psi(ref.counts, counts) if min(n_ref, n_cur) >= min_rows else None
        drifts.append(
            FeatureDrift(
                name=name,
                psi=value,
                drifted=value is not None and value > threshold,
                reference_rows=n_ref,
                current_rows=n_cur,
                reference_mean=ref.mean,
                current_mean=float(values[2 * i + 1]) if values[2 * i + 1] is not None else None,
                reference_share=tuple(c / n_ref for c in ref.counts) if n_ref else (),
                current_share=tuple(c / n_cur for c in counts) if n_cur else (),
            )
        )
    return Drift(
        DriftWindow(first, reference_end, reference_rows),
        DriftWindow(current_start, last, int(current_rows)),
        threshold,
        min_rows,
        tuple(drifts),
        files_read,
    )
