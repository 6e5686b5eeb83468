"""What a scoring run scores: the experiment, its variants with their loaded sessions, and
the allocation that assigns rows when no variant is named.

Models are loaded through the server's own pool (:class:`api.serving.pool.ModelPool`,
:func:`api.serving.sync.load_stored`): the same checksummed files from the model store,
the same execution provider choice (``BANDITLAKE_DEVICE``). The allocation is the one the
serving snapshot builds (:func:`api.serving.snapshot.build_runtime`), so batch and online
assignment use the same arms, weights and sticky hashing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from api.batch._errors import BatchScoringError
from api.serving.model_store import ModelFileError, ModelStore
from api.serving.pool import ModelPool, VariantKey
from api.serving.redaction import RedactionPlan, compile_redaction
from api.serving.runtime import ExperimentRuntime
from api.serving.sessions import LoadedModel
from api.serving.snapshot import build_runtime
from api.serving.sync import load_stored
from api.store.models import Experiment, Variant

__all__ = ["Plan", "ScoredVariant", "load_plan"]

Assignment = Literal["allocation", "variant", "all_variants"]


@dataclass(frozen=True, slots=True)
class ScoredVariant:
    name: str
    role: str
    sha256: str
    feature_names: tuple[str, ...]
    model: LoadedModel


@dataclass(frozen=True, slots=True)
class Plan:
    """A run's experiment and variants, ready to score."""

    experiment_id: int
    experiment: str
    assignment: Assignment
    variants: tuple[ScoredVariant, ...]
    version: int
    """The allocation version rows are logged with (0 before the first allocation)."""
    runtime: ExperimentRuntime | None
    """The serving view of the allocation (``assignment == "allocation"`` only)."""
    features: tuple[str, ...]
    """Every scored variant's features, in first-seen order: what is read and logged."""
    redaction: RedactionPlan | None

    @property
    def sticky(self) -> bool:
        return self.runtime is not None and self.runtime.sticky


def _experiment(session: Session, name: str) -> Experiment:
    stmt = (
        select(Experiment).where(Experiment.name == name).options(selectinload(Experiment.variants))
    )
    experiment = session.scalars(stmt).first()
    if experiment is None:
        known = sorted(session.scalars(select(Experiment.name)).all())[:20]
        msg = f"Experiment {name!r} does not exist; the store holds {known}."
        raise BatchScoringError(msg)
    return experiment


def _load(pool: ModelPool, store: ModelStore, experiment: Experiment, variant: Variant) -> None:
    key = VariantKey(experiment.name, variant.name)
    if pool.get(key) is not None:
        return
    try:
        load_stored(pool, experiment, variant, store)
    except ModelFileError as exc:
        msg = f"Variant {variant.name!r} cannot be loaded: {exc}"
        raise BatchScoringError(msg) from exc
    except Exception as exc:
        reason = pool.failure(key) or f"{type(exc).__name__}: {exc}"
        msg = f"Variant {variant.name!r} cannot be loaded: {reason}"
        raise BatchScoringError(msg) from exc


def _chosen(
    experiment: Experiment, variant: str | None, all_variants: bool
) -> tuple[Assignment, list[Variant]]:
    active = [v for v in experiment.variants if v.status == "active"]
    if variant is not None:
        found = next((v for v in experiment.variants if v.name == variant), None)
        if found is None:
            names = [v.name for v in experiment.variants]
            msg = f"Experiment {experiment.name!r} has no variant {variant!r}; it has {names}."
            raise BatchScoringError(msg)
        if found.status != "active":
            msg = f"Variant {variant!r} of {experiment.name!r} is {found.status}, not active."
            raise BatchScoringError(msg)
        return "variant", [found]
    if all_variants:
        if not active:
            msg = f"Experiment {experiment.name!r} has no active variant to score."
            raise BatchScoringError(msg)
        return "all_variants", active
    return "allocation", [v for v in active if v.role == "arm"]


def load_plan(
    session: Session,
    pool: ModelPool,
    store: ModelStore,
    experiment_name: str,
    *,
    variant: str | None = None,
    all_variants: bool = False,
) -> Plan:
    """Load the experiment's variants to score and, without ``variant`` or
    ``all_variants``, its current allocation.

    Raises
    ------
    BatchScoringError
        For an unknown experiment or variant, a variant that is not active or cannot be
        loaded, or (allocation mode) an experiment with no allocation to follow.
    """
    experiment = _experiment(session, experiment_name)
    assignment, variants = _chosen(experiment, variant, all_variants)
    for v in variants:
        _load(pool, store, experiment, v)
    loaded = {
        (k.experiment, k.variant): np.dtype(m.input_dtype)
        for k, m in pool.models().items()
        if k.experiment == experiment.name
    }
    runtime = build_runtime(session, loaded).experiments[experiment.name]
    if assignment == "allocation":
        if experiment.status == "stopped" or not runtime.arms:
            msg = (
                f"Experiment {experiment.name!r} ({experiment.status}) has no allocation with "
                "an arm to follow; name one with --variant or score them all with "
                "--all-variants."
            )
            raise BatchScoringError(msg)
        by_name = {v.name: v for v in variants}
        variants = [by_name[a.name] for a in runtime.arms]
    scored = tuple(
        ScoredVariant(
            v.name,
            v.role,
            v.model_sha256,
            tuple(v.feature_names),
            pool.get(VariantKey(experiment.name, v.name)),  # type: ignore[arg-type]
        )
        for v in variants
    )
    features: dict[str, None] = {}
    for s in scored:
        features.update(dict.fromkeys(s.feature_names))
    return Plan(
        experiment_id=experiment.id,
        experiment=experiment.name,
        assignment=assignment,
        variants=scored,
        version=runtime.version,
        runtime=runtime if assignment == "allocation" else None,
        features=tuple(features),
        redaction=compile_redaction(experiment.name, experiment.redaction),
    )
