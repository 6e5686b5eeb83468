"""Bringing this process's model pool in line with the variants in the SQL store."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.serving.pool import ModelPool, VariantKey
from api.store.models import Experiment, Variant

__all__ = ["load_stored", "sync_pool"]


def sync_pool(
    session: Session, pool: ModelPool, models_dir: Path, *, mark_failed: bool = False
) -> bool:
    """Load every enabled variant this process has no session for; ``True`` if any changed.

    Runs at start (``mark_failed``: a model that cannot load is marked failed in the
    store, with the reason) and on every snapshot refresh, so a variant uploaded through
    another worker or replica starts serving here too, without a restart.
    """
    stmt = select(Variant, Experiment).join(Experiment).where(Experiment.status != "stopped")
    changed = False
    for variant, experiment in session.execute(stmt).all():
        key = VariantKey(experiment.name, variant.name)
        if variant.status == "disabled" or pool.get(key) is not None:
            continue
        if not mark_failed and (variant.status == "failed" or pool.failure(key) is not None):
            continue
        try:
            load_stored(pool, experiment, variant, models_dir)
        except Exception:
            if mark_failed:
                variant.status = "failed"
                variant.status_reason = pool.failure(key)
            continue
        changed = True
        if mark_failed and variant.status == "failed":
            variant.status, variant.status_reason = "active", None
    return changed


def load_stored(
    pool: ModelPool, experiment: Experiment, variant: Variant, models_dir: Path
) -> None:
    """Load a stored variant's model file into the pool (raises when it does not load)."""
    pool.load(
        VariantKey(experiment.name, variant.name),
        models_dir / variant.model_path,
        input_name=variant.input_name,
        output_name=variant.output_name,
        input_dim=variant.input_dim,
    )
