"""Prediction drift and data quality, on Parquet files written here and read by DuckDB.

The files are written with pyarrow rather than the lake writer, so a test chooses their
columns: files from before the ``mode`` column, files with batch rows beside online ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, create_engine

from lake import metadata
from lake.dashboard import (
    DRIFT_BINS,
    DRIFT_THRESHOLD,
    PREDICTION_DRIFT_MIN_ROWS,
    DashboardQueries,
    prediction_cuts,
    psi,
)
from lake.errors import LakeConfigError
from lake.manifest import FileEntry, register_file
from lake.reader import Lake, open_lake
from lake.schemas import PREDICTIONS_SCHEMA
from lake.storage import LakeStorage, open_storage

T0 = datetime(2026, 6, 1, tzinfo=UTC)
# Rows at T0 + [0, 1 h) are the first window, rows at T0 + [47 h, 48 h) the last one:
# with 24 h windows over a 48 h span, nothing else is in either.
LATE = timedelta(hours=47)

Row = dict[str, Any]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    metadata.create_all(engine, tables=[metadata.tables["lake_files"]])
    yield engine
    engine.dispose()


@pytest.fixture
def queries() -> Iterator[DashboardQueries]:
    with DashboardQueries() as owned:
        yield owned


def row(
    i: int,
    ts: datetime,
    *,
    prediction: float | None = 0.5,
    variant: str = "a",
    role: str = "arm",
    features: Sequence[tuple[str, float | None]] = (),
    status: str = "ok",
    mode: str = "online",
) -> Row:
    return {
        "request_id": f"r{i}-{ts.timestamp()}",
        "ts": ts,
        "experiment": "exp",
        "variant": variant,
        "role": role,
        "allocation_version": 1,
        "propensity": 0.5,
        "unit_id": None,
        "features": list(features),
        "prediction": prediction,
        "scores": None,
        "latency_ms": 1.0,
        "model_sha256": "ab" * 32,
        "provider": "CPUExecutionProvider",
        "status": status,
        "error": None if status == "ok" else "boom",
        "mode": mode,
        "writer_id": "test",
    }


class Files:
    """Writes Parquet files into a local lake and lists them in the manifest."""

    def __init__(self, storage: LakeStorage, engine: Engine) -> None:
        self.storage = storage
        self.engine = engine
        self.count = 0

    def write(self, rows: list[Row], *, with_mode: bool = True) -> None:
        """One file; without ``mode`` it has the columns of the files written before it."""
        fields = [f for f in PREDICTIONS_SCHEMA if f.name not in ("mode", "writer_id")]
        if with_mode:
            fields.append(pa.field("mode", pa.string(), nullable=False))
        fields.append(pa.field("writer_id", pa.string(), nullable=False))
        schema = pa.schema(fields)
        table = pa.Table.from_pylist([{f.name: r[f.name] for f in fields} for r in rows], schema)
        self.count += 1
        path = f"predictions/dt=2026-06-01/hour=00/part-test-{self.count:04d}.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        data = sink.getvalue().to_pybytes()
        self.storage.write_bytes(path, data)
        times = [r["ts"] for r in rows]
        register_file(
            self.engine,
            FileEntry(
                table="predictions",
                path=path,
                rows=len(rows),
                bytes=len(data),
                writer_id="test",
                min_ts=min(times),
                max_ts=max(times),
                created_at=datetime.now(UTC),
            ),
        )

    def lake(self) -> Lake:
        return open_lake(self.engine, self.storage)


@pytest.fixture
def files(tmp_path: Path, engine: Engine) -> Files:
    return Files(open_storage(str(tmp_path / "lake")), engine)


def spread(values: Sequence[float | None], start: datetime, **kw: Any) -> list[Row]:
    """One row per value, a second apart from ``start``."""
    return [row(i, start + timedelta(seconds=i), prediction=v, **kw) for i, v in enumerate(values)]


def two_windows(
    files: Files, first: Sequence[float | None], last: Sequence[float | None], **kw: Any
) -> None:
    files.write(spread(first, T0, **kw))
    files.write(spread(last, T0 + LATE, **kw))


# -- PSI ------------------------------------------------------------------------------


def test_prediction_psi_matches_a_hand_computed_value(
    files: Files, queries: DashboardQueries
) -> None:
    """Ten equal bins in the first window; the last moves two bins' mass to the first two."""
    first = [float(v) for v in range(1, 11) for _ in range(30)]
    last = [1.0] * 60 + [2.0] * 60 + [float(v) for v in range(3, 9) for _ in range(30)]
    two_windows(files, first, last)
    with files.lake() as lake:
        found = queries.prediction_drift(lake, "exp", min_rows=100)
    (a,) = found.variants
    # The deciles of 1..10 (30 each) fall between the values: one value per bin.
    assert a.cuts == pytest.approx([1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1])
    assert a.reference_share == pytest.approx([0.1] * 10)
    assert a.current_share == pytest.approx([0.2, 0.2] + [0.1] * 6 + [0.0, 0.0])
    # Bins 1-2: (0.2 - 0.1) ln 2 each; bins 9-10 empty, floored at 1e-4; the rest equal.
    expected = 2 * 0.1 * math.log(2) + 2 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert a.psi == pytest.approx(expected, rel=1e-12)
    assert a.psi == pytest.approx(1.51879, abs=1e-5)
    assert a.drifted and found.drifted == ("a",)
    assert (a.reference_rows, a.current_rows) == (300, 300)
    assert a.reference_mean == pytest.approx(5.5) and a.current_mean == pytest.approx(3.9)


def test_identical_windows_have_a_psi_of_zero(files: Files, queries: DashboardQueries) -> None:
    values = list(np.random.default_rng(1).normal(size=400))
    two_windows(files, values, values)
    with files.lake() as lake:
        (a,) = queries.prediction_drift(lake, "exp").variants
    assert a.psi == 0.0 and not a.drifted
    assert a.reference_share == a.current_share


def test_constant_predictions_compare_exactly(files: Files, queries: DashboardQueries) -> None:
    """A constant model gets the bins < c, = c and > c: a move either way is caught."""
    n = PREDICTION_DRIFT_MIN_ROWS
    two_windows(files, [0.5] * n, [0.5] * n, variant="same")
    two_windows(files, [0.5] * n, [0.25] * n, variant="lower")
    two_windows(files, [0.5] * n, [0.75] * n, variant="higher")
    with files.lake() as lake:
        found = {v.variant: v for v in queries.prediction_drift(lake, "exp").variants}
    assert found["same"].cuts == (math.nextafter(0.5, -math.inf), 0.5)
    assert found["same"].psi == 0.0 and not found["same"].drifted
    one_bin_moved = 2 * (1 - 1e-4) * math.log(1 / 1e-4)
    for name in ("lower", "higher"):
        assert found[name].psi == pytest.approx(one_bin_moved) and found[name].drifted
    assert found["lower"].current_share == (1.0, 0.0, 0.0)
    assert found["higher"].current_share == (0.0, 0.0, 1.0)


def test_a_tiny_window_is_not_enough_data(files: Files, queries: DashboardQueries) -> None:
    rng = np.random.default_rng(2)
    two_windows(files, list(rng.normal(size=20)), list(rng.normal(5, 1, size=400)))
    with files.lake() as lake:
        found = queries.prediction_drift(lake, "exp")
    (a,) = found.variants
    assert a.psi is None and not a.drifted and found.drifted == ()
    assert (a.reference_rows, a.current_rows) == (20, 400)
    assert found.min_rows == PREDICTION_DRIFT_MIN_ROWS


def test_non_finite_predictions_are_counted_and_left_out(
    files: Files, queries: DashboardQueries
) -> None:
    values = list(np.random.default_rng(3).normal(size=300))
    last = [*values, math.nan, math.inf, -math.inf, None]
    two_windows(files, [*values, math.nan], last)
    with files.lake() as lake:
        (a,) = queries.prediction_drift(lake, "exp").variants
    assert a.psi == 0.0
    assert (a.reference_rows, a.current_rows) == (300, 300)
    assert (a.reference_nonfinite, a.current_nonfinite) == (1, 4)
    assert a.current_mean is not None and math.isfinite(a.current_mean)


def test_failed_rows_and_shadows(files: Files, queries: DashboardQueries) -> None:
    """Errors carry no prediction and are left out; a shadow variant gets its own PSI."""
    rng = np.random.default_rng(4)
    first = spread(list(rng.normal(size=300)), T0) + spread(
        list(rng.normal(size=300)), T0, variant="s", role="shadow"
    )
    last = spread(list(rng.normal(size=300)), T0 + LATE) + spread(
        list(rng.normal(3, 1, size=300)), T0 + LATE, variant="s", role="shadow"
    )
    last += spread([None] * 50, T0 + LATE, status="error")
    files.write(first)
    files.write(last)
    with files.lake() as lake:
        found = queries.prediction_drift(lake, "exp")
    assert [(v.variant, v.role) for v in found.variants] == [("a", "arm"), ("s", "shadow")]
    a, s = found.variants
    assert not a.drifted and s.drifted and found.drifted == ("s",)
    assert a.current_rows == 300 and a.current_nonfinite == 0


def test_a_shifted_model_is_flagged_and_a_stable_one_is_not(
    files: Files, queries: DashboardQueries
) -> None:
    rng = np.random.default_rng(5)
    logistic = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    first = logistic(rng.normal(size=(2, 500)))
    last = logistic(rng.normal(size=500)), logistic(rng.normal(0.5, 1, size=500))
    for name, a, b in (("stable", first[0], last[0]), ("shifted", first[1], last[1])):
        two_windows(files, list(a), list(b), variant=name)
    with files.lake() as lake:
        found = {v.variant: v for v in queries.prediction_drift(lake, "exp").variants}
    assert found["shifted"].psi is not None and found["shifted"].psi > DRIFT_THRESHOLD
    assert found["stable"].psi is not None and found["stable"].psi < DRIFT_THRESHOLD
    # The lake's PSI is the one computed from the same values here.
    cuts = prediction_cuts(first[1], DRIFT_BINS)
    counts = [np.bincount(np.searchsorted(cuts, x), minlength=len(cuts) + 1) for x in (first[1], last[1])]  # fmt: skip
    assert found["shifted"].psi == pytest.approx(psi(counts[0].tolist(), counts[1].tolist()))


def _window_psi(reference: np.ndarray, current: np.ndarray) -> float:
    cuts = prediction_cuts(reference, DRIFT_BINS)
    ref = np.bincount(np.searchsorted(cuts, reference), minlength=len(cuts) + 1)
    cur = np.bincount(np.searchsorted(cuts, current), minlength=len(cuts) + 1)
    return psi(ref.tolist(), cur.tolist())


def test_the_default_threshold_rarely_flags_an_unchanged_model() -> None:
    """At the minimum rows, 400 pairs of windows from one distribution: few false alarms;
    a shift of three quarters of a standard deviation is flagged almost always."""
    rng = np.random.default_rng(6)
    n = PREDICTION_DRIFT_MIN_ROWS
    same = [_window_psi(rng.normal(size=n), rng.normal(size=n)) for _ in range(400)]
    false_alarms = sum(p > DRIFT_THRESHOLD for p in same) / len(same)
    # P(chi2_9 > 0.1 n) = 0.3% at n = 250; the binning's ties and the floor add a little.
    assert false_alarms <= 0.02, false_alarms
    moved = [_window_psi(rng.normal(size=n), rng.normal(0.75, 1, size=n)) for _ in range(200)]
    assert sum(p > DRIFT_THRESHOLD for p in moved) / len(moved) >= 0.95


def test_batch_rows_are_left_out_and_old_files_still_count(
    files: Files, queries: DashboardQueries
) -> None:
    """The first window is a file from before ``mode``; the last holds batch rows too."""
    rng = np.random.default_rng(7)
    files.write(spread(list(rng.normal(size=300)), T0), with_mode=False)
    last = spread(list(rng.normal(size=300)), T0 + LATE)
    last += spread(list(rng.normal(5, 1, size=500)), T0 + LATE, mode="batch")
    last += spread(list(rng.normal(size=100)), T0 + LATE + timedelta(minutes=10), mode="stream")
    files.write(last)
    with files.lake() as lake:
        found = queries.prediction_drift(lake, "exp")
        quality = queries.data_quality(lake, "exp", features=["x"])
    (a,) = found.variants
    assert (a.reference_rows, a.current_rows) == (300, 400)
    assert not a.drifted
    assert found.reference is not None and found.reference.rows == 300
    assert quality.current is not None and quality.current.rows == 400


def test_an_experiment_without_rows(files: Files, queries: DashboardQueries) -> None:
    with files.lake() as lake:
        drift = queries.prediction_drift(lake, "exp")
        quality = queries.data_quality(lake, "exp")
    assert drift.variants == () and drift.reference is None
    assert quality.features == () and quality.current is None


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [({"hours": 0}, "got 0, 10 and"), ({"bins": 1}, "got 24, 1 and"), ({"min_rows": 0}, "and 0.")],
)
def test_bad_arguments_are_named(
    files: Files, queries: DashboardQueries, kwargs: dict[str, int], phrase: str
) -> None:
    with files.lake() as lake, pytest.raises(LakeConfigError, match=phrase):
        queries.prediction_drift(lake, "exp", **kwargs)


# -- data quality -----------------------------------------------------------------------


def _quality_rows(
    start: datetime, spec: list[list[tuple[str, float | None]]], **kw: Any
) -> list[Row]:
    return [row(i, start + timedelta(seconds=i), features=f, **kw) for i, f in enumerate(spec)]


def test_missing_and_out_of_range_shares_are_exact(files: Files, queries: DashboardQueries) -> None:
    """First window: x in [0, 10], y absent from 20 rows of 200. Last window (100 rows): x
    has 7 values above 10, 3 below 0, 2 NaN; y absent from 15 rows and null in 10."""
    first = [[("x", float(i % 11)), ("y", 1.0)] for i in range(180)]
    first += [[("x", 5.0)] for _ in range(20)]
    last: list[list[tuple[str, float | None]]] = [[("x", 11.5), ("y", 1.0)] for _ in range(7)]
    last += [[("x", -0.5), ("y", 1.0)] for _ in range(3)]
    last += [[("x", math.nan), ("y", 1.0)] for _ in range(2)]
    last += [[("x", 10.0)] for _ in range(15)]
    last += [[("x", 0.0), ("y", None)] for _ in range(10)]
    last += [[("x", 3.0), ("y", 2.0)] for _ in range(63)]
    files.write(_quality_rows(T0, first))
    files.write(_quality_rows(T0 + LATE, last))
    with files.lake() as lake:
        found = queries.data_quality(lake, "exp", features=["x", "y", "z"])
        discovered = queries.data_quality(lake, "exp")
    x, y, z = found.features
    assert [f.name for f in discovered.features] == ["x", "y"]
    assert (x.low, x.high) == (0.0, 10.0)
    assert (x.current_values, x.out_of_range, x.current_nonfinite) == (98, 10, 2)
    assert x.out_of_range_share == pytest.approx(10 / 98)
    assert x.current_missing == 0 and x.current_missing_share == 0.0
    assert (y.reference_missing, y.reference_missing_share) == (20, 0.1)
    assert (y.current_missing, y.current_missing_share) == (25, 0.25)
    assert (y.low, y.high) == (1.0, 1.0)
    assert (y.out_of_range, y.out_of_range_share) == (63, pytest.approx(63 / 75))
    # A feature no row carries is missing everywhere, and has no range.
    assert (z.current_missing_share, z.low, z.out_of_range_share) == (1.0, None, None)
    assert (found.reference.rows, found.current.rows) == (200, 100)  # type: ignore[union-attr]


def test_quality_per_variant_and_a_thin_reference(files: Files, queries: DashboardQueries) -> None:
    first = _quality_rows(T0, [[("x", float(i))] for i in range(150)], variant="a")
    first += _quality_rows(T0, [[("x", float(i))] for i in range(50)], variant="b")
    last = _quality_rows(T0 + LATE, [[("x", 200.0)] for _ in range(40)], variant="a")
    last += _quality_rows(T0 + LATE, [[] for _ in range(10)], variant="b")
    files.write(first)
    files.write(last)
    with files.lake() as lake:
        a = queries.data_quality(lake, "exp", features=["x"], variant="a").features[0]
        b = queries.data_quality(lake, "exp", features=["x"], variant="b").features[0]
        both = queries.data_quality(lake, "exp", features=["x"]).features[0]
    assert (a.out_of_range, a.out_of_range_share) == (40, 1.0)
    # b's first window has 50 values, under the minimum: no range judgement, counts still.
    assert b.out_of_range_share is None and b.current_missing_share == 1.0
    assert (both.current_rows, both.current_missing, both.out_of_range) == (50, 10, 40)
    assert both.out_of_range_share == 1.0


def test_object_storage_reads_old_and_new_files(root: str, engine: Engine) -> None:
    """On a local directory and on S3 (the lake tests' ``root``), read as the service reads
    its lake: through the storage attached to the dashboard's connection."""
    storage = open_storage(root)
    files = Files(storage, engine)
    rng = np.random.default_rng(9)
    features = [("x", 1.0)]
    files.write(spread(list(rng.normal(size=300)), T0, features=features), with_mode=False)
    last = spread(list(rng.normal(2, 1, size=300)), T0 + LATE, features=features)
    files.write(last + spread([9.0] * 100, T0 + LATE, mode="batch"))
    with files.lake() as lake, DashboardQueries(storage=storage) as queries:
        (a,) = queries.prediction_drift(lake, "exp").variants
        (x,) = queries.data_quality(lake, "exp").features
    assert (a.reference_rows, a.current_rows) == (300, 300) and a.drifted
    assert (x.name, x.reference_missing, x.current_values) == ("x", 0, 300)
