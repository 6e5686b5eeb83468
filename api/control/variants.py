"""Variants: validated ONNX uploads stored by checksum, enabled and disabled.

The model files themselves are kept by :class:`api.serving.model_store.ModelStore`.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.orm import Session

from api.control import allocation_versions
from api.control.model_spec import ModelSpec
from api.errors import ConflictError, InvalidRequestError, NotFoundError
from api.schemas import VariantOut
from api.serving.model_store import ModelStore
from api.serving.pool import ModelPool, VariantKey
from api.serving.sync import load_stored
from api.store.models import AuditEvent, Experiment, Variant

__all__ = ["add_variant", "get_variant", "set_active", "to_out"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def get_variant(experiment: Experiment, name: str) -> Variant:
    for variant in experiment.variants:
        if variant.name == name:
            return variant
    msg = f"Experiment {experiment.name!r} has no variant named {name!r}."
    raise NotFoundError(msg, code="variant_not_found")


def check_name(name: str) -> None:
    if not _NAME.match(name):
        msg = (
            f"Variant name {name!r} must start with a letter or digit and use only letters, "
            "digits, '_', '.' and '-' (at most 64 characters)."
        )
        raise InvalidRequestError(msg, code="invalid_name")


def add_variant(
    session: Session,
    pool: ModelPool,
    experiment: Experiment,
    *,
    name: str,
    role: str,
    spec: ModelSpec,
    path: Path,
    actor: str,
) -> Variant:
    if experiment.status == "stopped":
        msg = f"Experiment {experiment.name!r} is stopped; it takes no new variants."
        raise ConflictError(msg, code="experiment_stopped")
    if any(v.name == name for v in experiment.variants):
        msg = f"Experiment {experiment.name!r} already has a variant named {name!r}."
        raise ConflictError(msg, code="duplicate_name")
    key = VariantKey(experiment.name, name)
    try:
        pool.load(
            key,
            path,
            input_name=spec.input_name,
            output_name=spec.output_name,
            input_dim=spec.input_dim,
        )
    except Exception as exc:
        msg = f"ONNX Runtime could not run the model: {pool.failure(key) or exc}."
        raise InvalidRequestError(msg, code="invalid_model") from exc
    variant = Variant(
        experiment_id=experiment.id,
        name=name,
        model_path=path.name,
        model_sha256=spec.sha256,
        input_name=spec.input_name,
        input_dim=spec.input_dim,
        feature_names=list(spec.feature_names),
        output_name=spec.output_name,
        role=role,
        status="active",
    )
    experiment.variants.append(variant)
    session.add(
        AuditEvent(
            experiment_id=experiment.id,
            actor=actor,
            action="variant_added",
            details={"variant": name, "role": role, "sha256": spec.sha256},
        )
    )
    session.flush()
    if role == "arm":
        _reallocate_after_arm_change(session, experiment, f"arm {name!r} added", actor)
    return variant


def set_active(
    session: Session,
    pool: ModelPool,
    experiment: Experiment,
    variant: Variant,
    *,
    active: bool,
    actor: str,
    store: ModelStore,
) -> Variant:
    """Enable or disable a variant; enabling loads its model here if this process has none.

    The start loads no session for a disabled variant, so after a restart the model is
    loaded on enable; the variant is refused only when its model really fails to load.
    """
    target = "active" if active else "disabled"
    if variant.status == target:
        return variant
    if experiment.status == "stopped":
        msg = f"Experiment {experiment.name!r} is stopped; its variants can no longer change."
        raise ConflictError(msg, code="experiment_stopped")
    if active and pool.get(VariantKey(experiment.name, variant.name)) is None:
        try:
            load_stored(pool, experiment, variant, store)
        except Exception as exc:
            reason = str(pool.failure(VariantKey(experiment.name, variant.name)) or exc)
            msg = (
                f"Variant {variant.name!r} cannot be enabled: its model does not load "
                f"({reason.rstrip('.')})."
            )
            raise ConflictError(msg, code="variant_failed") from exc
    if (
        not active
        and variant.role == "arm"
        and experiment.status in ("running", "paused")
        and allocation_versions.active_arms(experiment) == [variant.name]
    ):
        msg = (
            f"Variant {variant.name!r} is the last active arm of {experiment.status} experiment "
            f"{experiment.name!r}; pause or stop the experiment instead."
        )
        raise ConflictError(msg, code="last_active_arm")
    variant.status = target
    variant.status_reason = None if active else f"disabled by {actor}"
    session.add(
        AuditEvent(
            experiment_id=experiment.id,
            actor=actor,
            action="variant_enabled" if active else "variant_disabled",
            details={"variant": variant.name},
        )
    )
    session.flush()
    if variant.role == "arm":
        verb = "enabled" if active else "disabled"
        _reallocate_after_arm_change(session, experiment, f"arm {variant.name!r} {verb}", actor)
    return variant


def _reallocate_after_arm_change(
    session: Session, experiment: Experiment, what: str, actor: str
) -> None:
    current = allocation_versions.current_allocation(session, experiment)
    if current is None:
        return  # not started yet: the start creates version 1 over the arms active then
    arms = allocation_versions.active_arms(experiment)
    if not arms:
        return
    weights = allocation_versions.rebalance(current.weights, arms)
    allocation_versions.record_allocation(
        session,
        experiment,
        weights,
        reason=f"{what}; other arms keep their relative weights",
        author=actor,
    )


def to_out(pool: ModelPool, experiment: Experiment, variant: Variant) -> VariantOut:
    key = VariantKey(experiment.name, variant.name)
    return VariantOut(
        name=variant.name,
        role=variant.role,
        status=variant.status,
        status_reason=variant.status_reason or pool.failure(key),
        sha256=variant.model_sha256,
        input_name=variant.input_name,
        input_shape=[None, variant.input_dim],
        features=list(variant.feature_names),
        output=variant.output_name,
        provider=pool.provider(key),
        created_at=variant.created_at,
    )
