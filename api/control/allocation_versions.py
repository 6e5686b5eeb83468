"""Allocation versions: immutable rows, each change a new version with its reason."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import ConflictError, InvalidRequestError, NotFoundError
from api.store.models import AllocationRow, AuditEvent, Experiment

__all__ = [
    "active_arms",
    "current_allocation",
    "equal_weights",
    "get_version",
    "history",
    "rebalance",
    "record_allocation",
    "validate_weights",
    "weights_by_version",
]

_SUM_TOLERANCE = 1e-6


def active_arms(experiment: Experiment) -> list[str]:
    return [v.name for v in experiment.variants if v.role == "arm" and v.status == "active"]


def current_allocation(session: Session, experiment: Experiment) -> AllocationRow | None:
    stmt = (
        select(AllocationRow)
        .where(AllocationRow.experiment_id == experiment.id)
        .order_by(AllocationRow.version.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()


def history(session: Session, experiment: Experiment, *, limit: int = 1000) -> list[AllocationRow]:
    stmt = (
        select(AllocationRow)
        .where(AllocationRow.experiment_id == experiment.id)
        .order_by(AllocationRow.version.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def weights_by_version(
    session: Session, experiment: Experiment, versions: Collection[int]
) -> dict[int, dict[str, float]]:
    """The weights of the given versions, however far back in the history they lie.

    Reads only the version and weights columns of the range the versions span (one
    query, no row limit), so the cost follows the versions asked for, not the history.
    """
    if not versions:
        return {}
    stmt = select(AllocationRow.version, AllocationRow.weights).where(
        AllocationRow.experiment_id == experiment.id,
        AllocationRow.version.between(min(versions), max(versions)),
    )
    wanted = set(versions)
    return {version: weights for version, weights in session.execute(stmt) if version in wanted}


def equal_weights(arms: list[str]) -> dict[str, float]:
    return {name: 1.0 / len(arms) for name in arms}


def validate_weights(weights: Mapping[str, float], arms: list[str]) -> dict[str, float]:
    """Check manual weights against the active arms and return them over every active arm."""
    unknown = sorted(set(weights) - set(arms))
    if unknown:
        msg = (
            f"Weights name {', '.join(map(repr, unknown))}, which "
            f"{'is' if len(unknown) == 1 else 'are'} not an active arm of this experiment "
            f"(active arms: {arms})."
        )
        raise InvalidRequestError(msg, code="invalid_weights")
    bad = {k: w for k, w in weights.items() if not math.isfinite(w) or w < 0}
    if bad:
        msg = f"Weights must be finite and >= 0; got {bad}."
        raise InvalidRequestError(msg, code="invalid_weights")
    total = math.fsum(weights.values())
    if abs(total - 1.0) > _SUM_TOLERANCE:
        msg = f"Weights must sum to 1; they sum to {total:.6g}."
        raise InvalidRequestError(msg, code="invalid_weights")
    # Renormalise the tolerated rounding away so the stored version sums to 1 exactly.
    return {name: weights.get(name, 0.0) / total for name in arms}


def rebalance(previous: Mapping[str, float], arms: list[str]) -> dict[str, float]:
    """Weights over the new set of active arms, keeping the others' relative weights.

    A newly active arm gets an equal share ``1/K``; the arms that stay keep their
    proportions in the remaining mass. A removed arm's mass is spread the same way.
    """
    kept = {name: previous[name] for name in arms if name in previous}
    new = [name for name in arms if name not in previous]
    kept_total = math.fsum(kept.values())
    if kept_total <= 0:
        return equal_weights(arms)
    new_share = 1.0 / len(arms) if new else 0.0
    scale = (1.0 - new_share * len(new)) / kept_total
    weights = {name: w * scale for name, w in kept.items()}
    weights.update({name: new_share for name in new})
    return {name: weights[name] for name in arms}


def record_allocation(
    session: Session,
    experiment: Experiment,
    weights: Mapping[str, float],
    *,
    reason: str,
    author: str,
    stats: dict[str, Any] | None = None,
) -> AllocationRow:
    """Insert the next version. The unique (experiment, version) key makes a racing writer fail."""
    if not weights:
        msg = f"Experiment {experiment.name!r} has no active arm to allocate traffic to."
        raise ConflictError(msg, code="no_active_arm")
    current = current_allocation(session, experiment)
    row = AllocationRow(
        experiment_id=experiment.id,
        version=(current.version + 1) if current else 1,
        weights=dict(weights),
        reason=reason,
        author=author,
        stats=stats,
    )
    session.add(row)
    session.add(
        AuditEvent(
            experiment_id=experiment.id,
            actor=author,
            action="allocation",
            details={"version": row.version, "weights": dict(weights), "reason": reason},
        )
    )
    session.flush()
    return row


def get_version(session: Session, experiment: Experiment, version: int) -> AllocationRow:
    stmt = select(AllocationRow).where(
        AllocationRow.experiment_id == experiment.id, AllocationRow.version == version
    )
    row = session.scalars(stmt).first()
    if row is None:
        msg = f"Experiment {experiment.name!r} has no allocation version {version}."
        raise NotFoundError(msg)
    return row
