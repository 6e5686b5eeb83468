"""Experiments: creation, the status machine, and changes that touch the allocation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from api.control import allocation_versions
from api.errors import ConflictError, InvalidRequestError, NotFoundError
from api.schemas import (
    ExperimentCreate,
    ExperimentOut,
    ExperimentPatch,
    Guardrails,
    PolicySpec,
    Redaction,
    RewardSpec,
    Stopping,
)
from api.store.models import AuditEvent, Experiment
from bandit.config import policy_from_dict
from bandit.policy import PolicyConfig
from lake.retention import retention_cutoffs

__all__ = [
    "TRANSITIONS",
    "create_experiment",
    "get_experiment",
    "list_experiments",
    "patch_experiment",
    "retention_cutoffs_of_store",
    "to_out",
]

# draft → running ⇄ paused → stopped; a running experiment may also stop directly.
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"running"}),
    "running": frozenset({"paused", "stopped"}),
    "paused": frozenset({"running", "stopped"}),
    "stopped": frozenset(),
}


def get_experiment(session: Session, name: str) -> Experiment:
    stmt = (
        select(Experiment).where(Experiment.name == name).options(selectinload(Experiment.variants))
    )
    experiment = session.scalars(stmt).first()
    if experiment is None:
        msg = f"No experiment named {name!r}."
        raise NotFoundError(msg, code="experiment_not_found")
    return experiment


def list_experiments(session: Session) -> list[Experiment]:
    stmt = select(Experiment).options(selectinload(Experiment.variants)).order_by(Experiment.id)
    return list(session.scalars(stmt))


def _checked_policy(spec: PolicySpec) -> tuple[dict[str, object], PolicyConfig]:
    """The policy as stored (``{"kind", **params}`` as given, defaults left out) and parsed.

    A bad policy raises :class:`bandit.errors.BanditError`, a 422 naming the parameter.
    """
    params = spec.params()
    return {"kind": spec.kind, **params}, policy_from_dict(spec.kind, params)


def _stored_redaction(experiment: Experiment) -> Redaction:
    return Redaction(**(experiment.redaction or {}))


def _check_redaction(
    experiment: Experiment, redaction: Redaction, *, secret_set: bool, field: str
) -> None:
    """Refuse a redaction that names a feature no variant takes, or hashes without a key.

    Without variants (a new experiment) there are no feature names to check yet; they are
    checked when it starts running (:func:`_transition`) and at every later change.
    """
    if redaction.hash and not secret_set:
        msg = (
            f"{field}.hash needs BANDITLAKE_REDACTION_SECRET set on the service (the key of "
            "the hashes); without it a hashed feature could only be logged raw. Set the "
            "secret, or list the features under drop."
        )
        raise InvalidRequestError(msg, code="redaction_secret_missing")
    if not experiment.variants:
        return
    known: dict[str, None] = {}
    for variant in experiment.variants:
        known.update(dict.fromkeys(variant.feature_names))
    for part in ("drop", "hash"):
        unknown = [n for n in getattr(redaction, part) if n not in known]
        if unknown:
            msg = (
                f"{field}.{part} names {unknown[:10]}, not a feature of any variant of "
                f"{experiment.name!r}; its features are {list(known)[:50]}."
            )
            raise InvalidRequestError(msg, code="unknown_feature")


def _as_stored(redaction: Redaction | None) -> dict[str, list[str]] | None:
    if redaction is None or redaction.is_empty():
        return None
    return {"drop": list(redaction.drop), "hash": list(redaction.hash)}


def create_experiment(
    session: Session, body: ExperimentCreate, *, actor: str, redaction_secret_set: bool = False
) -> Experiment:
    """A new draft experiment; ``redaction_secret_set``: whether ``hash`` may be used."""
    policy, _ = _checked_policy(body.policy)
    experiment = Experiment(
        name=body.name,
        description=body.description,
        reward_kind=body.reward.kind,
        reward_metric=body.reward.metric,
        policy=policy,
        sticky=body.sticky,
        learn_from_batch=body.learn_from_batch,
        min_weight=body.min_weight,
        reallocate_every_s=body.reallocate_every_s,
        guardrails=body.guardrails.model_dump(),
        stopping=body.stopping.model_dump(),
        retention_days=body.retention_days,
        redaction=_as_stored(body.redaction),
        status="draft",
        variants=[],
    )
    if body.redaction is not None:
        _check_redaction(
            experiment, body.redaction, secret_set=redaction_secret_set, field="redaction"
        )
    session.add(experiment)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        msg = f"An experiment named {body.name!r} already exists."
        raise ConflictError(msg, code="duplicate_name") from exc
    session.add(
        AuditEvent(
            experiment_id=experiment.id,
            actor=actor,
            action="create",
            details=body.model_dump(mode="json"),
        )
    )
    return experiment


def _initial_weights(experiment: Experiment, arms: list[str]) -> tuple[dict[str, float], str]:
    """The policy's first allocation over the active arms (equal, or a canary's first stage)."""
    config = experiment.policy_config
    problem = config.arms_problem(arms, experiment=experiment.name)
    if problem is not None:
        raise ConflictError(problem, code=config.arms_error_code)
    return config.start(arms)


def _transition(session: Session, experiment: Experiment, target: str, *, actor: str) -> None:
    if target == experiment.status:
        return
    if target not in TRANSITIONS[experiment.status]:
        allowed = sorted(TRANSITIONS[experiment.status]) or ["none: it is final"]
        msg = (
            f"Experiment {experiment.name!r} cannot go from {experiment.status!r} to "
            f"{target!r}; allowed: {', '.join(allowed)}."
        )
        raise ConflictError(msg, code="invalid_transition")
    if target == "running" and experiment.redaction:
        # Names set before the variants were uploaded are checked now, before a row is logged.
        _check_redaction(
            experiment,
            _stored_redaction(experiment),
            secret_set=True,
            field=f"experiment {experiment.name!r}'s redaction",
        )
    if target == "running" and allocation_versions.current_allocation(session, experiment) is None:
        arms = allocation_versions.active_arms(experiment)
        if not arms:
            msg = f"Experiment {experiment.name!r} has no active arm; upload a variant first."
            raise ConflictError(msg, code="no_active_arm")
        weights, reason = _initial_weights(experiment, arms)
        allocation_versions.record_allocation(
            session, experiment, weights, reason=reason, author=actor
        )
    session.add(
        AuditEvent(
            experiment_id=experiment.id,
            actor=actor,
            action="status",
            details={"from": experiment.status, "to": target},
        )
    )
    experiment.status = target


def _patch_data_settings(
    session: Session,
    experiment: Experiment,
    body: ExperimentPatch,
    *,
    actor: str,
    redaction_secret_set: bool,
) -> None:
    """Retention and redaction: each change is audited with the value before and after."""
    if "retention_days" in body.model_fields_set and body.retention_days != (
        experiment.retention_days
    ):
        session.add(
            AuditEvent(
                experiment_id=experiment.id,
                actor=actor,
                action="retention",
                details={"from": experiment.retention_days, "to": body.retention_days},
            )
        )
        experiment.retention_days = body.retention_days
    if "redaction" in body.model_fields_set:
        new = body.redaction or Redaction()
        _check_redaction(experiment, new, secret_set=redaction_secret_set, field="redaction")
        old = _stored_redaction(experiment)
        if new.model_dump() != old.model_dump():
            session.add(
                AuditEvent(
                    experiment_id=experiment.id,
                    actor=actor,
                    action="redaction",
                    details={"from": old.model_dump(), "to": new.model_dump()},
                )
            )
            experiment.redaction = _as_stored(new)


def patch_experiment(
    session: Session,
    experiment: Experiment,
    body: ExperimentPatch,
    *,
    actor: str,
    redaction_secret_set: bool = False,
) -> Experiment:
    """Apply ``body``; ``redaction_secret_set``: whether ``redaction.hash`` may be used."""
    changes = body.model_dump(
        exclude_unset=True, exclude={"status", "retention_days", "redaction"}, mode="json"
    )
    # A stopped experiment's rows stay in the lake: their retention can still change.
    if experiment.status == "stopped" and (changes or "redaction" in body.model_fields_set):
        msg = f"Experiment {experiment.name!r} is stopped; it can no longer be changed."
        raise ConflictError(msg, code="experiment_stopped")
    if body.description is not None:
        experiment.description = body.description
    if body.policy is not None:
        policy, config = _checked_policy(body.policy)
        if experiment.status in ("running", "paused"):
            # The next reallocation runs this policy; a draft's arms may still be
            # uploaded, and starting it checks them.
            arms = allocation_versions.active_arms(experiment)
            problem = config.arms_problem(arms, experiment=experiment.name)
            if problem is not None:
                raise InvalidRequestError(problem, code=config.arms_error_code)
        experiment.policy = policy
    if body.guardrails is not None:
        experiment.guardrails = body.guardrails.model_dump()
    if body.stopping is not None:
        experiment.stopping = body.stopping.model_dump()
    if body.min_weight is not None:
        experiment.min_weight = body.min_weight
    if body.reallocate_every_s is not None:
        experiment.reallocate_every_s = body.reallocate_every_s
    if body.learn_from_batch is not None:
        experiment.learn_from_batch = body.learn_from_batch
    _patch_data_settings(
        session, experiment, body, actor=actor, redaction_secret_set=redaction_secret_set
    )
    if changes:
        session.add(
            AuditEvent(experiment_id=experiment.id, actor=actor, action="update", details=changes)
        )
    if body.status is not None:
        _transition(session, experiment, body.status, actor=actor)
    session.flush()
    return experiment


def to_out(session: Session, experiment: Experiment) -> ExperimentOut:
    current = allocation_versions.current_allocation(session, experiment)
    return ExperimentOut(
        name=experiment.name,
        description=experiment.description,
        status=experiment.status,
        reward=RewardSpec(
            kind=experiment.reward_kind,
            metric=experiment.reward_metric,
        ),
        policy=experiment.policy,
        sticky=experiment.sticky,
        learn_from_batch=experiment.learn_from_batch,
        min_weight=experiment.min_weight,
        reallocate_every_s=experiment.reallocate_every_s,
        guardrails=Guardrails(**experiment.guardrails),
        stopping=Stopping(**(experiment.stopping or {})),
        retention_days=experiment.retention_days,
        redaction=_stored_redaction(experiment),
        variants=[v.name for v in experiment.variants],
        allocation_version=current.version if current else None,
        created_at=experiment.created_at,
        updated_at=experiment.updated_at,
    )


# Experiments whose rows the lake still holds; a draft has served nothing.
RETENTION_STATUSES = ("running", "paused", "stopped")


def retention_cutoffs_of_store(
    store: Session | Connection | Engine, now: datetime
) -> dict[str, tuple[int, datetime]]:
    """The retention cutoffs of the store's experiments, for ``lake.retention.apply_retention``.

    Reads the running, paused and stopped experiments' ``retention_days`` (one query);
    ``now`` is timezone-aware. Returns name -> (id, ``now - retention_days``) for those
    with a retention (:func:`lake.retention.retention_cutoffs`).
    """
    query = select(Experiment.name, Experiment.id, Experiment.retention_days).where(
        Experiment.status.in_(RETENTION_STATUSES), Experiment.retention_days.is_not(None)
    )
    if isinstance(store, Engine):
        with store.connect() as conn:
            rows = conn.execute(query).all()
    else:
        rows = store.execute(query).all()
    return retention_cutoffs({name: (eid, days) for name, eid, days in rows}, now)
