"""Alert targets and rules in the SQL store: create, list, change, delete, each audited."""

from __future__ import annotations

from collections import Counter
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.alerts import kinds
from api.alerts.schemas import (
    AlertOut,
    AlertRuleCreate,
    AlertRuleOut,
    AlertRulePatch,
    AlertsOut,
    AlertTargetCreate,
    AlertTargetOut,
)
from api.alerts.urls import check_routing_key, check_url, redact_url
from api.errors import ConflictError, InvalidRequestError, NotFoundError
from api.store.models import Alert, AlertDelivery, AlertRule, AlertTarget, AuditEvent, Experiment

__all__ = [
    "PAGERDUTY_EVENTS_URL",
    "alert_out",
    "create_rule",
    "create_target",
    "delete_rule",
    "delete_target",
    "get_rule",
    "list_alerts",
    "list_rules",
    "list_targets",
    "patch_rule",
    "rule_out",
    "target_out",
]

PAGERDUTY_EVENTS_URL: Final = "https://events.pagerduty.com/v2/enqueue"
MAX_TARGETS: Final = 1000
MAX_RULES_PER_EXPERIMENT: Final = 200


def target_out(target: AlertTarget) -> AlertTargetOut:
    return AlertTargetOut(
        name=target.name,
        kind=target.kind,
        url=redact_url(target.url),
        routing_key_set=target.routing_key is not None,
        created_at=target.created_at,
    )


def create_target(session: Session, body: AlertTargetCreate, *, actor: str) -> AlertTarget:
    routing_key = None
    if body.kind == "pagerduty":
        if body.routing_key is None:
            msg = "routing_key is required for a pagerduty target (its integration key)."
            raise InvalidRequestError(msg, code="invalid_routing_key")
        routing_key = check_routing_key(body.routing_key)
        url = check_url(body.url) if body.url is not None else PAGERDUTY_EVENTS_URL
    else:
        if body.routing_key is not None:
            msg = f"routing_key applies to pagerduty targets only, not to a {body.kind} target."
            raise InvalidRequestError(msg, code="invalid_routing_key")
        if body.url is None:
            msg = f"url is required for a {body.kind} target."
            raise InvalidRequestError(msg, code="invalid_url")
        url = check_url(body.url)
    count = session.scalar(select(func.count()).select_from(AlertTarget)) or 0
    if count >= MAX_TARGETS:
        msg = f"There are {count} alert targets already, the most the service keeps."
        raise ConflictError(msg, code="too_many_targets")
    target = AlertTarget(name=body.name, kind=body.kind, url=url, routing_key=routing_key)
    session.add(target)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        msg = f"An alert target named {body.name!r} already exists."
        raise ConflictError(msg, code="duplicate_name") from exc
    session.add(
        AuditEvent(
            experiment_id=None,
            actor=actor,
            action="alert_target_create",
            details={"name": target.name, "kind": target.kind, "url": redact_url(url)},
        )
    )
    return target


def list_targets(session: Session) -> list[AlertTarget]:
    return list(session.scalars(select(AlertTarget).order_by(AlertTarget.id)))


def get_target(session: Session, name: str) -> AlertTarget:
    target = session.scalars(select(AlertTarget).where(AlertTarget.name == name)).first()
    if target is None:
        msg = f"No alert target named {name!r}."
        raise NotFoundError(msg, code="alert_target_not_found")
    return target


def delete_target(session: Session, name: str, *, actor: str) -> None:
    target = get_target(session, name)
    users = [rule.id for rule in session.scalars(select(AlertRule)) if target.name in rule.targets]
    if users:
        msg = (
            f"Alert target {name!r} is used by rule(s) {users[:20]}; remove it from them "
            "or delete them first."
        )
        raise ConflictError(msg, code="target_in_use")
    session.delete(target)
    session.add(
        AuditEvent(
            experiment_id=None,
            actor=actor,
            action="alert_target_delete",
            details={"name": target.name, "kind": target.kind},
        )
    )


def _check_targets(session: Session, names: list[str]) -> list[str]:
    known = set(session.scalars(select(AlertTarget.name).where(AlertTarget.name.in_(names))))
    unknown = [n for n in dict.fromkeys(names) if n not in known]
    if unknown:
        msg = (
            f"targets names {unknown}, not an alert target; create one with "
            "POST /v1/alert-targets first."
        )
        raise InvalidRequestError(msg, code="unknown_target")
    return list(dict.fromkeys(names))


def rule_out(rule: AlertRule, experiment: str) -> AlertRuleOut:
    return AlertRuleOut(
        id=rule.id,
        experiment=experiment,
        kind=rule.kind,
        threshold=rule.threshold,
        window_s=rule.window_s,
        min_requests=rule.min_requests,
        severity=rule.severity,
        targets=list(rule.targets),
        enabled=rule.enabled,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
    )


def _audit_rule(
    session: Session, rule: AlertRule, experiment: Experiment, actor: str, action: str
) -> None:
    session.add(
        AuditEvent(
            experiment_id=experiment.id,
            actor=actor,
            action=action,
            details=rule_out(rule, experiment.name).model_dump(
                mode="json", exclude={"created_at", "updated_at"}
            ),
        )
    )


def create_rule(
    session: Session, experiment: Experiment, body: AlertRuleCreate, *, actor: str
) -> AlertRule:
    count = session.scalar(
        select(func.count()).select_from(AlertRule).where(AlertRule.experiment_id == experiment.id)
    )
    if (count or 0) >= MAX_RULES_PER_EXPERIMENT:
        msg = (
            f"Experiment {experiment.name!r} has {count} alert rules already, the most one "
            "experiment may have."
        )
        raise ConflictError(msg, code="too_many_rules")
    rule = AlertRule(
        experiment_id=experiment.id,
        kind=body.kind,
        threshold=kinds.check_threshold(body.kind, body.threshold),
        window_s=kinds.check_window(body.kind, body.window_s),
        min_requests=body.min_requests,
        severity=body.severity or kinds.KINDS[body.kind].severity,
        targets=_check_targets(session, body.targets),
        enabled=body.enabled,
    )
    session.add(rule)
    session.flush()
    _audit_rule(session, rule, experiment, actor, "alert_rule_create")
    return rule


def list_rules(session: Session, experiment: Experiment) -> list[AlertRule]:
    stmt = select(AlertRule).where(AlertRule.experiment_id == experiment.id).order_by(AlertRule.id)
    return list(session.scalars(stmt))


def get_rule(session: Session, experiment: Experiment, rule_id: int) -> AlertRule:
    rule = session.get(AlertRule, rule_id)
    if rule is None or rule.experiment_id != experiment.id:
        msg = f"Experiment {experiment.name!r} has no alert rule {rule_id}."
        raise NotFoundError(msg, code="alert_rule_not_found")
    return rule


def patch_rule(
    session: Session, experiment: Experiment, rule: AlertRule, body: AlertRulePatch, *, actor: str
) -> AlertRule:
    fields = body.model_fields_set
    if "threshold" in fields:
        rule.threshold = kinds.check_threshold(rule.kind, body.threshold)
    if "window_s" in fields:
        rule.window_s = kinds.check_window(rule.kind, body.window_s)
    if body.min_requests is not None:
        rule.min_requests = body.min_requests
    if body.severity is not None:
        rule.severity = body.severity
    if body.targets is not None:
        rule.targets = _check_targets(session, body.targets)
    if body.enabled is not None:
        rule.enabled = body.enabled
    session.flush()
    _audit_rule(session, rule, experiment, actor, "alert_rule_update")
    return rule


def delete_rule(session: Session, experiment: Experiment, rule: AlertRule, *, actor: str) -> None:
    """Delete the rule with its alerts and their pending messages (no resolve is sent)."""
    _audit_rule(session, rule, experiment, actor, "alert_rule_delete")
    alert_ids = select(Alert.id).where(Alert.rule_id == rule.id)
    for delivery in session.scalars(
        select(AlertDelivery).where(AlertDelivery.alert_id.in_(alert_ids))
    ):
        session.delete(delivery)
    for alert in session.scalars(select(Alert).where(Alert.rule_id == rule.id)):
        session.delete(alert)
    session.delete(rule)


def alert_out(alert: Alert, experiment: str, kind: str, deliveries: Counter[str]) -> AlertOut:
    return AlertOut(
        id=alert.id,
        rule_id=alert.rule_id,
        experiment=experiment,
        kind=kind,
        subject=alert.subject,
        state=alert.state,
        value=alert.value,
        threshold=alert.threshold,
        summary=alert.summary,
        opened_at=alert.opened_at,
        resolved_at=alert.resolved_at,
        deliveries={s: deliveries[s] for s in ("pending", "sent", "failed")},
    )


def list_alerts(
    session: Session, *, experiment: Experiment | None = None, recent: int = 50
) -> AlertsOut:
    """Every open alert, and the ``recent`` latest resolved ones, newest first."""
    base = (
        select(Alert, Experiment.name, AlertRule.kind)
        .join(Experiment, Experiment.id == Alert.experiment_id)
        .join(AlertRule, AlertRule.id == Alert.rule_id)
    )
    if experiment is not None:
        base = base.where(Alert.experiment_id == experiment.id)
    opened = list(session.execute(base.where(Alert.state == "open").order_by(Alert.id.desc())))
    resolved = list(
        session.execute(
            base.where(Alert.state == "resolved").order_by(Alert.id.desc()).limit(recent)
        )
    )
    ids = [row[0].id for row in opened + resolved]
    counts: dict[int, Counter[str]] = {i: Counter() for i in ids}
    if ids:
        stmt = (
            select(AlertDelivery.alert_id, AlertDelivery.status, func.count())
            .where(AlertDelivery.alert_id.in_(ids))
            .group_by(AlertDelivery.alert_id, AlertDelivery.status)
        )
        for alert_id, status, n in session.execute(stmt):
            counts[alert_id][status] = int(n)
    return AlertsOut(
        open=[alert_out(a, name, kind, counts[a.id]) for a, name, kind in opened],
        recent=[alert_out(a, name, kind, counts[a.id]) for a, name, kind in resolved],
    )
