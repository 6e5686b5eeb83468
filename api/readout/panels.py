"""The dashboard's panels: typed JSON assembled from the SQL store, the report and the lake.

Cumulative figures (tests, P(best), SRM, latency, error rate, the verdict) come from
:func:`api.readout.report.build_report`, which reads the incremental aggregates; the allocation
history comes from the SQL store; time series and feature drift come from
:mod:`lake.dashboard`, which reads only the lake files that overlap their windows.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.control import allocation_versions
from api.control.experiments import list_experiments
from api.readout.report import ALPHA, build_report
from api.reallocation.lake_views import LakeStats, bandit_kind, reward_rule
from api.store.models import Experiment
from bandit.frequentist import mean_interval
from bandit.stats import ArmStats
from lake.dashboard import DashboardQueries
from lake.reader import Lake

__all__ = [
    "AllocationHistory",
    "AllocationStep",
    "DriftOut",
    "ExperimentSummary",
    "FeatureDriftOut",
    "TimeSeries",
    "VariantSeries",
    "WindowOut",
    "allocation_history",
    "drift",
    "summaries",
    "time_series",
]


class ExperimentSummary(BaseModel):
    name: str
    description: str
    status: str
    reward: str
    policy: str
    variants: list[str]
    allocation_version: int | None
    requests: int
    rewarded: int
    winner: str | None
    srm_mismatch: bool
    verdict: str
    updated_at: datetime


class AllocationStep(BaseModel):
    version: int
    created_at: datetime
    weights: dict[str, float]
    reason: str
    author: str
    prob_best: dict[str, float] | None


class AllocationHistory(BaseModel):
    """Allocation versions oldest first: each holds from its ``created_at`` to the next.

    ``first_request``/``last_request`` bound the experiment's predictions in the lake
    (``None`` before any): the charts end at the last request rather than at ``now``, so
    a short experiment looked at later is not squeezed against the left edge.
    """

    experiment: str
    variants: list[str]
    steps: list[AllocationStep]
    first_request: datetime | None
    last_request: datetime | None
    now: datetime


class VariantSeries(BaseModel):
    """One variant's values per bucket, aligned with :attr:`TimeSeries.times`."""

    name: str
    role: str
    requests: list[int]
    errors: list[int]
    error_rate: list[float | None]
    rewarded: list[int]
    reward_mean: list[float | None]
    ci_low: list[float | None]
    ci_high: list[float | None]
    latency_p50_ms: list[float | None]
    latency_p99_ms: list[float | None]


class TimeSeries(BaseModel):
    """Buckets of ``bucket_seconds`` from ``start`` to ``end``, one per entry of ``times``.

    ``whole_experiment`` says which window the lake chose: the experiment's whole life in
    buckets finer than ``hours / buckets`` (it is younger than the window), or else the
    last ``hours`` of its data. The page words its note from it rather than guessing.
    """

    experiment: str
    hours: int
    start: datetime
    end: datetime
    bucket_seconds: float
    whole_experiment: bool
    times: list[datetime]
    variants: list[VariantSeries]


class WindowOut(BaseModel):
    start: datetime
    end: datetime
    rows: int


class FeatureDriftOut(BaseModel):
    name: str
    psi: float | None
    drifted: bool
    reference_rows: int
    current_rows: int
    reference_mean: float | None
    current_mean: float | None
    reference_share: list[float]
    current_share: list[float]


class DriftOut(BaseModel):
    experiment: str
    hours: int
    threshold: float
    min_rows: int
    reference: WindowOut | None
    current: WindowOut | None
    features: list[FeatureDriftOut]
    drifted: list[str]


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def summaries(session: Session, stats: LakeStats) -> list[ExperimentSummary]:
    """Every experiment with its status and the report's verdict, oldest first."""
    out = []
    for experiment in list_experiments(session):
        report = build_report(session, experiment, stats)
        arms = [v for v in report.variants if v.role == "arm"]
        out.append(
            ExperimentSummary(
                name=experiment.name,
                description=experiment.description,
                status=experiment.status,
                reward=report.reward,
                policy=str(experiment.policy.get("kind", "")),
                variants=[v.name for v in experiment.variants],
                allocation_version=report.allocation_version,
                requests=sum(v.requests for v in arms),
                rewarded=sum(v.rewarded for v in arms),
                winner=report.winner,
                srm_mismatch=report.srm_mismatch,
                verdict=report.verdict,
                updated_at=experiment.updated_at,
            )
        )
    return out


def allocation_history(
    session: Session, queries: DashboardQueries, lake: Lake, experiment: Experiment
) -> AllocationHistory:
    rows = allocation_versions.history(session, experiment, limit=10_000)
    steps = []
    for row in reversed(rows):
        stats = row.stats or {}
        prob_best = stats.get("prob_best")
        steps.append(
            AllocationStep(
                version=row.version,
                created_at=row.created_at,
                weights={k: float(w) for k, w in row.weights.items()},
                reason=row.reason,
                author=row.author,
                prob_best={k: float(p) for k, p in prob_best.items()}
                if isinstance(prob_best, dict)
                else None,
            )
        )
    span = queries.experiment_span(lake, experiment.name)
    return AllocationHistory(
        experiment=experiment.name,
        variants=[v.name for v in experiment.variants if v.role == "arm"],
        steps=steps,
        first_request=span[0] if span else None,
        last_request=span[1] if span else None,
        now=datetime.now(UTC),
    )


def time_series(
    queries: DashboardQueries,
    lake: Lake,
    experiment: Experiment,
    *,
    hours: int,
    buckets: int,
    lookback: timedelta,
) -> TimeSeries:
    """Per-variant requests, reward rate with its 95% interval, errors and latency."""
    kind = bandit_kind(experiment)
    found = queries.time_buckets(
        lake,
        experiment.name,
        reward_rule(experiment),
        hours=hours,
        buckets=buckets,
        lookback=lookback,
    )
    series = []
    for v in found.variants:
        means: list[float | None] = []
        lows: list[float | None] = []
        highs: list[float | None] = []
        for n, total, total_sq in zip(v.rewarded, v.reward_sum, v.reward_sum_sq, strict=True):
            if n == 0:
                means.append(None)
                lows.append(None)
                highs.append(None)
                continue
            interval = mean_interval(
                ArmStats(n=n, sum=total, sum_sq=total_sq), kind=kind, alpha=ALPHA
            )
            means.append(total / n)
            lows.append(_finite(interval.low))
            highs.append(_finite(interval.high))
        series.append(
            VariantSeries(
                name=v.variant,
                role=v.role,
                requests=list(v.requests),
                errors=list(v.errors),
                error_rate=[
                    e / n if n else None for e, n in zip(v.errors, v.requests, strict=True)
                ],
                rewarded=list(v.rewarded),
                reward_mean=means,
                ci_low=lows,
                ci_high=highs,
                latency_p50_ms=list(v.latency_p50_ms),
                latency_p99_ms=list(v.latency_p99_ms),
            )
        )
    return TimeSeries(
        experiment=experiment.name,
        hours=hours,
        start=found.start,
        end=found.end,
        bucket_seconds=found.width.total_seconds(),
        whole_experiment=found.width < timedelta(hours=hours) // buckets,
        times=list(found.starts),
        variants=series,
    )


def drift(queries: DashboardQueries, lake: Lake, experiment: Experiment, *, hours: int) -> DriftOut:
    """PSI per feature of the last ``hours`` of traffic against the first ``hours``."""
    names = {n: None for v in experiment.variants for n in v.feature_names}
    found = queries.feature_drift(lake, experiment.name, features=list(names) or None, hours=hours)
    features = [FeatureDriftOut.model_validate(f, from_attributes=True) for f in found.features]
    return DriftOut(
        experiment=experiment.name,
        hours=hours,
        threshold=found.threshold,
        min_rows=found.min_rows,
        reference=WindowOut.model_validate(found.reference, from_attributes=True)
        if found.reference
        else None,
        current=WindowOut.model_validate(found.current, from_attributes=True)
        if found.current
        else None,
        features=features,
        drifted=[f.name for f in features if f.drifted],
    )
