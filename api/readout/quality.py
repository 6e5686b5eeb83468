"""The dashboard's prediction-drift and data-quality panels.

Both come from :mod:`lake.dashboard` (over the same windows as feature drift); data
quality adds the non-finite values the service refused, which never reach the lake, from
:attr:`api.metrics.Metrics.features_rejected`. Features the experiment's redaction drops
are listed but not measured (the lake has no values of them), hashed ones get no range
(a keyed hash has no order worth checking).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from api.control.variants import get_variant
from api.metrics import Metrics
from api.serving.rejections import NON_FINITE
from api.store.models import Experiment
from lake.dashboard import DashboardQueries, DriftWindow
from lake.reader import Lake

__all__ = [
    "DataQualityOut",
    "FeatureQualityOut",
    "PredictionDriftOut",
    "VariantDriftOut",
    "data_quality",
    "prediction_drift",
]


class WindowOut(BaseModel):
    start: datetime
    end: datetime
    rows: int


class VariantDriftOut(BaseModel):
    """One variant's prediction PSI; ``psi`` is ``None`` with too few rows in a window."""

    name: str
    role: str
    psi: float | None
    drifted: bool
    reference_rows: int
    current_rows: int
    reference_nonfinite: int
    current_nonfinite: int
    reference_mean: float | None
    current_mean: float | None
    cuts: list[float]
    reference_share: list[float]
    current_share: list[float]


class PredictionDriftOut(BaseModel):
    experiment: str
    hours: int
    threshold: float
    min_rows: int
    reference: WindowOut | None
    current: WindowOut | None
    variants: list[VariantDriftOut]
    drifted: list[str]


class FeatureQualityOut(BaseModel):
    """One feature: missing and out-of-range shares, non-finite values logged and refused.

    ``redacted`` is ``"drop"`` (never logged: the lake figures are ``None``) or ``"hash"``
    (logged as a keyed hash: no range) or ``None``. ``rejected_nonfinite`` counts the NaN
    and infinite values requests were refused for (422) since the service started, over
    every worker; they are in neither window.
    """

    name: str
    redacted: str | None
    reference_missing_share: float | None
    current_missing_share: float | None
    current_missing: int | None
    low: float | None
    high: float | None
    out_of_range: int | None
    out_of_range_share: float | None
    current_values: int | None
    reference_nonfinite: int | None
    current_nonfinite: int | None
    rejected_nonfinite: int


class DataQualityOut(BaseModel):
    experiment: str
    variant: str | None
    hours: int
    min_rows: int
    reference: WindowOut | None
    current: WindowOut | None
    features: list[FeatureQualityOut]


def _window(window: DriftWindow | None) -> WindowOut | None:
    return WindowOut.model_validate(window, from_attributes=True) if window else None


def prediction_drift(
    queries: DashboardQueries, lake: Lake, experiment: Experiment, *, hours: int
) -> PredictionDriftOut:
    """PSI of each variant's predictions in the last ``hours`` against the first."""
    found = queries.prediction_drift(lake, experiment.name, hours=hours)
    variants = [
        VariantDriftOut(
            name=v.variant,
            role=v.role,
            psi=v.psi,
            drifted=v.drifted,
            reference_rows=v.reference_rows,
            current_rows=v.current_rows,
            reference_nonfinite=v.reference_nonfinite,
            current_nonfinite=v.current_nonfinite,
            reference_mean=v.reference_mean,
            current_mean=v.current_mean,
            cuts=list(v.cuts),
            reference_share=list(v.reference_share),
            current_share=list(v.current_share),
        )
        for v in found.variants
    ]
    return PredictionDriftOut(
        experiment=experiment.name,
        hours=hours,
        threshold=found.threshold,
        min_rows=found.min_rows,
        reference=_window(found.reference),
        current=_window(found.current),
        variants=variants,
        drifted=list(found.drifted),
    )


def data_quality(
    queries: DashboardQueries,
    lake: Lake,
    experiment: Experiment,
    metrics: Metrics,
    *,
    hours: int,
    variant: str | None = None,
) -> DataQualityOut:
    """Per feature of the experiment's variants (of ``variant`` alone when given)."""
    variants = [get_variant(experiment, variant)] if variant is not None else experiment.variants
    names = list(dict.fromkeys(n for v in variants for n in v.feature_names))
    redaction = experiment.redaction or {}
    dropped = set(redaction.get("drop") or ())
    hashed = set(redaction.get("hash") or ())
    measured = [n for n in names if n not in dropped]
    found = queries.data_quality(
        lake,
        experiment.name,
        features=measured if names else None,
        variant=variant,
        hours=hours,
    )
    rejected = metrics.features_rejected_counts(experiment.name, NON_FINITE)
    by_name = {f.name: f for f in found.features}
    features = []
    for name in sorted(names or by_name):
        f = by_name.get(name)
        redacted = "drop" if name in dropped else "hash" if name in hashed else None
        ranged = f is not None and redacted is None
        features.append(
            FeatureQualityOut(
                name=name,
                redacted=redacted,
                reference_missing_share=f.reference_missing_share if f else None,
                current_missing_share=f.current_missing_share if f else None,
                current_missing=f.current_missing if f else None,
                low=f.low if f and ranged else None,
                high=f.high if f and ranged else None,
                out_of_range=f.out_of_range if f and ranged else None,
                out_of_range_share=f.out_of_range_share if f and ranged else None,
                current_values=f.current_values if f else None,
                reference_nonfinite=f.reference_nonfinite if f else None,
                current_nonfinite=f.current_nonfinite if f else None,
                rejected_nonfinite=rejected.get(name, 0),
            )
        )
    return DataQualityOut(
        experiment=experiment.name,
        variant=variant,
        hours=hours,
        min_rows=found.min_rows,
        reference=_window(found.reference),
        current=_window(found.current),
        features=features,
    )
