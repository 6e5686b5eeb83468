"""Prediction drift: per variant, the PSI of its predictions' last window against the first.

The windows are feature drift's (:func:`lake.dashboard._drift.feature_drift`): the first
and the last ``hours`` of the experiment's data, each half of it when the experiment is
younger than two windows, so the page's two drift panels compare the same rows. Only
successful rows served online or by the stream consumer count (:mod:`._served`); batch
scoring is another population.

Each variant's bins are cut at the deciles of its own predictions in the first window and
stay fixed: the last window is counted into them (DuckDB's ``histogram(x, cuts)``, one
pass for every variant), and the first window's cut points and counts are cached, since
they depend only on immutable files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from lake.dashboard._drift import (
    _PSI_FLOOR,
    DRIFT_BINS,
    DRIFT_THRESHOLD,
    DriftWindow,
    _binned,
    psi,
)
from lake.dashboard._files import MICROSECOND, Queries, experiment_span, overlapping
from lake.dashboard._served import served
from lake.errors import LakeConfigError
from lake.reader import Lake

__all__ = [
    "PREDICTION_DRIFT_MIN_ROWS",
    "PredictionDrift",
    "VariantDrift",
    "prediction_cuts",
    "prediction_drift",
]

PREDICTION_DRIFT_MIN_ROWS: Final = 250
"""Finite predictions a variant needs in each window for a PSI. Between two samples of
``n`` rows from one distribution, ``n/2 * PSI`` is roughly chi-squared with ``bins - 1``
degrees of freedom, so at 10 bins an unchanged model crosses the 0.2 threshold with
probability about P(chi2_9 > 0.1 n). Simulated (``benchmarks/prediction_drift_alarms.py``):
41% of unchanged models flagged at 100 rows (feature drift's former minimum), 2% at 200, 0.5% at
250 (1,000 pairs each); a shift of 0.75 standard deviations is flagged every time at 250
rows, one of 0.5 in about 90% of the pairs."""

_COLUMNS: Final = ("experiment", "variant", "role", "ts", "status", "prediction")
_WINDOW: Final = "experiment = ? AND status = 'ok' AND ts >= ? AND ts < ?"


@dataclass(frozen=True, slots=True)
class VariantDrift:
    """One variant's prediction PSI between the windows.

    ``psi`` is ``None`` (and ``drifted`` false) when either window holds fewer than the
    minimum finite predictions of the variant, or the variant has none in the first
    window. ``reference_share``/``current_share`` are each window's share of predictions
    per bin, cut at ``cuts`` (``x <= cuts[0]``, ..., ``x > cuts[-1]``). ``*_nonfinite``
    count successful rows whose prediction is NaN, infinite or missing: left out of the
    PSI, shown so that a model that starts returning NaN is not silently "stable".
    """

    variant: str
    role: str
    psi: float | None
    drifted: bool
    reference_rows: int
    current_rows: int
    reference_nonfinite: int
    current_nonfinite: int
    reference_mean: float | None
    current_mean: float | None
    cuts: tuple[float, ...]
    reference_share: tuple[float, ...]
    current_share: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class PredictionDrift:
    """Every variant with a successful row in either window, arms first, by name."""

    reference: DriftWindow | None
    current: DriftWindow | None
    threshold: float
    min_rows: int
    variants: tuple[VariantDrift, ...]
    files_read: int

    @property
    def drifted(self) -> tuple[str, ...]:
        """Names of the variants whose PSI is above the threshold."""
        return tuple(v.variant for v in self.variants if v.drifted)


def prediction_cuts(values: NDArray[np.float64], bins: int) -> tuple[float, ...]:
    """Cut points of the reference window's finite ``values``, shape ``(n,)``.

    The ``bins``-quantiles, a repeated one merged (a discrete model). A constant model
    would get a single cut ``c``, which puts every value at or below ``c`` in one bin, so
    a later constant below it would read as no change: it gets the cuts ``(c⁻, c)`` instead
    (``c⁻`` the double just below ``c``), and the bins ``< c``, ``= c`` and ``> c``.
    """
    if not len(values):
        return ()
    cuts = np.unique(np.quantile(values, np.arange(1, bins) / bins))
    if len(cuts) == 1 and float(values.min()) == float(values.max()):
        c = float(cuts[0])
        return (float(np.nextafter(c, -np.inf)), c)
    return tuple(float(c) for c in cuts)


@dataclass(frozen=True, slots=True)
class _Reference:
    """One variant in the first window: cut points, rows per bin, mean, non-finite rows."""

    cuts: tuple[float, ...]
    counts: tuple[int, ...]
    mean: float | None
    nonfinite: int


def _reference(
    queries: Queries,
    lake: Lake,
    files: Sequence[Any],
    experiment: str,
    start: datetime,
    end: datetime,
    bins: int,
) -> tuple[int, dict[tuple[str, str], _Reference]]:
    """The first window's rows and, per (variant, role), its cuts and counts."""
    con = queries.cursor()
    try:
        found = con.execute(
            f"SELECT variant, role, prediction FROM {served(lake, files, _COLUMNS)} "
            f"WHERE {_WINDOW}",
            [experiment, start, end],
        ).fetchnumpy()
    finally:
        con.close()
    variants = np.asarray(found["variant"], dtype=object)
    roles = np.asarray(found["role"], dtype=object)
    values = np.ma.filled(np.ma.asarray(found["prediction"], dtype=np.float64), np.nan)
    out: dict[tuple[str, str], _Reference] = {}
    for key in sorted({(str(v), str(r)) for v, r in zip(variants, roles, strict=True)}):
        x = values[(variants == key[0]) & (roles == key[1])]
        finite = x[np.isfinite(x)]
        cuts = prediction_cuts(finite, bins)
        # side="left": a value equal to a cut falls in the bin the cut closes, as
        # DuckDB's histogram(x, cuts) counts the last window.
        counts = np.bincount(np.searchsorted(cuts, finite), minlength=len(cuts) + 1)
        out[key] = _Reference(
            cuts,
            tuple(int(c) for c in counts) if len(finite) else (),
            float(finite.mean()) if len(finite) else None,
            int(len(x) - len(finite)),
        )
    return len(values), out


def _current(
    queries: Queries,
    source: str,
    params: list[object],
    references: dict[tuple[str, str], _Reference],
) -> tuple[int, dict[tuple[str, str], tuple[int, int, float | None, list[int] | None]]]:
    """The last window: per (variant, role) finite rows, non-finite rows, mean, bin counts."""
    finite = "isfinite(prediction)"
    keyed = [k for k, ref in references.items() if ref.cuts]
    histograms = "".join(
        f", histogram(prediction, ?) FILTER (WHERE variant = ? AND role = ? AND {finite})"
        for _ in keyed
    )
    cut_params: list[object] = []
    for variant, role in keyed:
        cut_params += [list(references[(variant, role)].cuts), variant, role]
    con = queries.cursor()
    try:
        grouped = con.execute(
            f"SELECT variant, role, count(*) FILTER (WHERE {finite}), "
            f"count(*) FILTER (WHERE prediction IS NULL OR NOT {finite}), "
            f"avg(prediction) FILTER (WHERE {finite}) "
            f"FROM {source} WHERE {_WINDOW} GROUP BY ALL",
            params,
        ).fetchall()
        binned = (
            con.execute(
                f"SELECT 1{histograms} FROM {source} WHERE {_WINDOW}", [*cut_params, *params]
            ).fetchone()
            if keyed
            else None
        )
    finally:
        con.close()
    counts = {
        k: _binned(h, references[k].cuts)
        for k, h in zip(keyed, (binned or (None,))[1:], strict=False)
    }
    out = {
        (str(v), str(r)): (
            int(n),
            int(bad),
            None if mean is None else float(mean),
            counts.get((v, r)),
        )
        for v, r, n, bad, mean in grouped
    }
    return sum(n + bad for n, bad, _, _ in out.values()), out


def prediction_drift(
    queries: Queries,
    lake: Lake,
    experiment: str,
    *,
    hours: int = 24,
    bins: int = DRIFT_BINS,
    threshold: float = DRIFT_THRESHOLD,
    min_rows: int = PREDICTION_DRIFT_MIN_ROWS,
) -> PredictionDrift:
    """PSI of each variant's predictions between the experiment's first and last ``hours``.

    .. math::

        \\mathrm{PSI} = \\sum_i (a_i - e_i) \\ln(a_i / e_i)

    with :math:`e_i` the first window's and :math:`a_i` the last window's share of the
    variant's finite predictions in bin :math:`i`, each floored at ``1e-4`` (the floor
    :func:`lake.dashboard.psi` uses) so an empty bin adds a large but finite term. 0 for
    identical windows; above 0.2 (the customary threshold) the variant is flagged.

    Parameters
    ----------
    queries
        The owner of the DuckDB connection and the reference cache
        (:class:`lake.dashboard.DashboardQueries`; a notebook or an alert rule opens one
        with ``with DashboardQueries() as queries:``).
    lake
        A manifest snapshot (:func:`lake.reader.open_lake`).
    experiment
        Experiment name.
    hours
        Length of each window; when the experiment's data spans less than two windows,
        each window is half of it.
    bins
        The first window's quantiles cut each variant's predictions into at most this
        many bins (:func:`prediction_cuts`).
    threshold
        PSI above which a variant is flagged.
    min_rows
        Finite predictions a variant needs in each window to get a PSI; below it ``psi``
        is ``None`` ("not enough data") and the variant is never flagged.

    Returns
    -------
    PredictionDrift
        Arms then shadows, each by name. Rows with ``status`` other than ``"ok"`` (no
        prediction) and batch rows are left out.
    """
    if hours < 1 or bins < 2 or min_rows < 1:
        msg = (
            "Prediction drift needs a window of at least 1 hour, 2 bins and a minimum of 1 "
            f"row; got {hours}, {bins} and {min_rows}."
        )
        raise LakeConfigError(msg)
    span = experiment_span(queries, lake, experiment)
    if span is None:
        return PredictionDrift(None, None, threshold, min_rows, (), 0)
    first, last = span
    window = min(timedelta(hours=hours), (last - first) // 2)
    reference_end, current_start = first + window, last + MICROSECOND - window
    predictions = lake.files("predictions")
    reference_files = overlapping(predictions, first, reference_end)
    current_files = overlapping(predictions, current_start, last)
    key = (
        tuple((int(f.id or 0), lake.storage.url(f.path)) for f in reference_files),
        experiment,
        first,
        reference_end,
        bins,
    )
    reference_rows, references = queries.cached(
        ("prediction_drift_reference", key),
        lambda: _reference(queries, lake, reference_files, experiment, first, reference_end, bins),
    )
    current_rows, current = _current(
        queries,
        served(lake, current_files, _COLUMNS),
        [experiment, current_start, last + MICROSECOND],
        references,
    )
    variants = []
    for variant, role in sorted({*references, *current}, key=lambda k: (k[1] != "arm", k)):
        ref = references.get((variant, role), _Reference((), (), None, 0))
        n_cur, bad_cur, mean_cur, counts = current.get((variant, role), (0, 0, None, None))
        counts = counts if counts is not None else [0] * (len(ref.cuts) + 1)
        n_ref = sum(ref.counts)
        measured = bool(ref.cuts) and min(n_ref, n_cur) >= min_rows
        value = psi(ref.counts, counts, floor=_PSI_FLOOR) if measured else None
        variants.append(
            VariantDrift(
                variant=variant,
                role=role,
                psi=value,
                drifted=value is not None and value > threshold,
                reference_rows=n_ref,
                current_rows=n_cur,
                reference_nonfinite=ref.nonfinite,
                current_nonfinite=bad_cur,
                reference_mean=ref.mean,
                current_mean=mean_cur,
                cuts=ref.cuts,
                reference_share=tuple(c / n_ref for c in ref.counts) if n_ref else (),
                current_share=tuple(c / n_cur for c in counts) if n_cur and ref.cuts else (),
            )
        )
    return PredictionDrift(
        DriftWindow(first, reference_end, reference_rows),
        DriftWindow(current_start, last, current_rows),
        threshold,
        min_rows,
        tuple(variants),
        len({*reference_files, *current_files}),
    )
