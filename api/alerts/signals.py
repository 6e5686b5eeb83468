"""What alert rules measure, for one experiment at one time.

Each rule kind turns into observations, one per subject (a variant, a feature, the
experiment or the lake): a value, or ``None`` when there is not enough data to judge, in
which case the subject's alert stays as it is. The sources are the ones the rest of the
service uses, so an alert says what the report and the dashboard say:

- ``guardrail_tripped``: the variants the reallocator disabled with a guardrail reason;
- ``error_rate``, ``p99_latency_ms``: the arm rows of the last ``window_s`` seconds, read
  from the lake's files whose time range overlaps the window (one DuckDB query per window);
- ``srm``: the report's sample-ratio p-value (:func:`api.readout.report.build_report`);
- ``feature_drift``, ``prediction_drift``: the dashboard's PSI
  (:meth:`lake.dashboard.DashboardQueries.feature_drift` and ``prediction_drift``);
- ``rows_dropped``: the increase, over the window, of the lake writers' dropped-rows count,
  as sampled by this process (:class:`DroppedRows`);
- ``reallocation_stalled``: seconds since the experiment's latest allocation version.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.orm import Session

from api.control import allocation_versions
from api.readout.report import build_report
from api.reallocation.lake_views import LakeStats
from api.store.models import AlertRule, Experiment
from lake.dashboard import DashboardQueries
from lake.reader import Lake, open_lake

__all__ = ["DroppedRows", "Observation", "Signals", "dropped_in_metrics_dir"]

# Samples of the dropped-rows count kept: one per evaluation, for the longest window.
_MAX_SAMPLES: Final = 10_000


@dataclass(frozen=True, slots=True)
class Observation:
    """One subject's value under one rule; ``note`` says what it was computed from."""

    subject: str
    value: float | None
    note: str


class DroppedRows:
    """Samples of a running total of dropped lake rows, to tell the increase over a window.

    ``read`` returns the total now, or ``None`` where this process cannot see it (the
    reallocation loop running as its own process, beside the web workers). A total lower
    than the last sample (a restart) starts the history again.
    """

    def __init__(self, read: Callable[[], int | None]) -> None:
        self._read = read
        self._samples: deque[tuple[datetime, int]] = deque(maxlen=_MAX_SAMPLES)

    def sample(self, now: datetime) -> None:
        total = self._read()
        if total is None:
            return
        if self._samples and total < self._samples[-1][1]:
            self._samples.clear()
        self._samples.append((now, total))

    def increase(self, now: datetime, window: timedelta) -> int | None:
        """Rows dropped within ``window`` before ``now``; ``None`` before any sample."""
        if not self._samples:
            return None
        start = now - window
        base = self._samples[0][1]
        for at, total in self._samples:
            if at > start:
                break
            base = total
        return self._samples[-1][1] - base


DROPPED_METRIC: Final = "banditlake_lake_rows_dropped_total"


def dropped_in_metrics_dir(directory: Path) -> int | None:
    """The dropped-rows total of every process writing Prometheus samples to ``directory``.

    ``banditlake serve --workers N`` has its workers write their samples there
    (``PROMETHEUS_MULTIPROC_DIR``); the reallocation process reads them the way ``/metrics``
    does. ``None`` when the directory does not exist (yet).
    """
    if not directory.is_dir():
        return None
    files = sorted(str(p) for p in directory.glob("*.db"))
    total = 0.0
    for family in MultiProcessCollector.merge(files, accumulate=True):  # type: ignore[no-untyped-call]
        for sample in family.samples:
            if sample.name == DROPPED_METRIC:
                total += sample.value
    return int(total)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Signals:
    """Measurements of one experiment at ``now``; each source is read at most once."""

    def __init__(
        self,
        session: Session,
        experiment: Experiment,
        *,
        stats: LakeStats,
        queries: DashboardQueries,
        now: datetime,
        dropped: DroppedRows | None = None,
    ) -> None:
        self._session = session
        self._experiment = experiment
        self._stats = stats
        self._queries = queries
        self._now = now
        self._dropped = dropped
        self._lake: Lake | None = None
        self._windows: dict[int, dict[str, tuple[int, int, float | None]]] = {}

    def close(self) -> None:
        if self._lake is not None:
            self._lake.close()
            self._lake = None

    def _open_lake(self) -> Lake:
        if self._lake is None:
            self._lake = open_lake(self._stats.engine, self._stats.storage)
        return self._lake

    def _arms(self) -> list[str]:
        return [v.name for v in self._experiment.variants if v.role == "arm"]

    def observe(self, rule: AlertRule) -> list[Observation]:
        """The observations of ``rule``, one per subject it looks at."""
        kind = rule.kind
        if kind == "guardrail_tripped":
            return self._guardrail()
        if kind in ("error_rate", "p99_latency_ms"):
            return self._health(rule)
        if kind == "srm":
            return self._srm()
        if kind == "feature_drift":
            return self._feature_drift(rule.window_s // 3600)
        if kind == "prediction_drift":
            return self._prediction_drift(rule.window_s // 3600)
        if kind == "rows_dropped":
            return self._rows_dropped(rule.window_s)
        if kind == "reallocation_stalled":
            return self._stalled()
        msg = f"Alert rule {rule.id} has kind {kind!r}, which no evaluator knows."
        raise ValueError(msg)

    def _guardrail(self) -> list[Observation]:
        out = []
        for variant in self._experiment.variants:
            if variant.role != "arm":
                continue
            reason = variant.status_reason or ""
            pulled = variant.status == "disabled" and reason.startswith("guardrail")
            note = f"variant {variant.name!r} was pulled ({reason})" if pulled else "serving"
            out.append(Observation(variant.name, 1.0 if pulled else 0.0, note))
        return out

    def _window(self, window_s: int) -> dict[str, tuple[int, int, float | None]]:
        """Per arm variant in the last ``window_s``: requests, errors, p99 latency (ms)."""
        if window_s in self._windows:
            return self._windows[window_s]
        lake = self._open_lake()
        start = self._now - timedelta(seconds=window_s)
        files = [
            f
            for f in lake.files("predictions")
            if f.min_ts is not None and f.max_ts is not None
            if f.min_ts <= self._now and f.max_ts >= start
        ]
        found: dict[str, tuple[int, int, float | None]] = {}
        if files:
            listed = ", ".join(_quote(lake.storage.url(f.path)) for f in files)
            sql = (
                "SELECT variant, count(*), count(*) FILTER (WHERE status = 'error'), "
                "quantile_cont(latency_ms, 0.99) "
                f"FROM read_parquet([{listed}], hive_partitioning = false) "
                "WHERE experiment = ? AND role = 'arm' AND ts >= ? AND ts <= ? GROUP BY variant"
            )
            con = self._queries.cursor()
            try:
                rows = con.execute(sql, [self._experiment.name, start, self._now]).fetchall()
            finally:
                con.close()
            for variant, requests, errors, p99 in rows:
                found[str(variant)] = (int(requests), int(errors), p99)
        self._windows[window_s] = found
        return found

    def _health(self, rule: AlertRule) -> list[Observation]:
        window = self._window(rule.window_s)
        out = []
        for name in self._arms():
            requests, errors, p99 = window.get(name, (0, 0, None))
            where = f"in the last {rule.window_s} s"
            if requests < rule.min_requests:
                note = f"{requests} requests {where}, fewer than the {rule.min_requests} needed"
                out.append(Observation(name, None, note))
            elif rule.kind == "error_rate":
                note = f"{errors} of {requests} requests failed {where}"
                out.append(Observation(name, errors / requests, note))
            else:
                value = None if p99 is None or not math.isfinite(p99) else float(p99)
                note = f"p99 latency over {requests} requests {where}"
                out.append(Observation(name, value, note))
        return out

    def _srm(self) -> list[Observation]:
        report = build_report(self._session, self._experiment, self._stats)
        note = "sample-ratio test of the arms' requests against their logged propensities"
        return [Observation("experiment", report.srm_p_value, note)]

    def _feature_drift(self, hours: int) -> list[Observation]:
        features: dict[str, None] = {}
        for variant in self._experiment.variants:
            features.update(dict.fromkeys(variant.feature_names))
        drift = self._queries.feature_drift(
            self._open_lake(), self._experiment.name, features=list(features), hours=hours
        )
        return [
            Observation(
                f.name,
                f.psi,
                f"last {hours} h against the first, {f.current_rows} and {f.reference_rows} rows",
            )
            for f in drift.features
        ]

    def _prediction_drift(self, hours: int) -> list[Observation]:
        drift = self._queries.prediction_drift(
            self._open_lake(), self._experiment.name, hours=hours
        )
        return [
            Observation(
                v.variant,
                v.psi,
                f"predictions of the last {hours} h against the first, {v.current_rows} "
                f"and {v.reference_rows} rows",
            )
            for v in drift.variants
            if v.role == "arm"
        ]

    def _rows_dropped(self, window_s: int) -> list[Observation]:
        if self._dropped is None:
            return [Observation("lake", None, "this process cannot see the writers' counts")]
        value = self._dropped.increase(self._now, timedelta(seconds=window_s))
        note = f"lake rows dropped by the writers in the last {window_s} s"
        return [Observation("lake", None if value is None else float(value), note)]

    def _stalled(self) -> list[Observation]:
        current = allocation_versions.current_allocation(self._session, self._experiment)
        if current is None:
            return [Observation("experiment", None, "no allocation yet")]
        age = (self._now - current.created_at).total_seconds()
        note = f"allocation version {current.version} was written {age:.0f} s ago"
        return [Observation("experiment", max(age, 0.0), note)]
