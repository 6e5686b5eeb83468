"""Alert evaluation and delivery, run by the reallocation lease holder after each pass.

Evaluation opens, updates and resolves alerts in the SQL store: one open alert per
(rule, subject) (the unique ``open_key``), so a restart or a new lease holder never
triggers what is already open. Each trigger and resolve writes an audit event and one
outbox row (:class:`api.store.models.AlertDelivery`) per target of the rule, in the same
transaction, fenced by the lease like an allocation.

Delivery sends the outbox's due rows, oldest first, one HTTP POST each with a short
timeout; a resolve waits until its trigger to the same target is settled. A 2xx marks
a row sent. A 5xx, a 429, a timeout or a connection error is retried after an
exponential backoff with jitter (``base · 2^(attempt-1)``, times a uniform draw in
[0.5, 1], capped at :data:`MAX_BACKOFF_S`) until ``alert_max_attempts``; any other
answer (a 4xx: a revoked webhook, a bad routing key) is not retried. A row given up is
audited as ``alert_delivery_failed``. Each row's outcome is committed right after its
POST, so a holder that dies mid-way re-sends at most the message in flight (PagerDuty
folds it by its dedup key).

None of this runs on the request path: the loop runs in the reallocation process (or a
worker thread of the app), and every query and POST is bounded.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

import httpx
from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.alerts.kinds import KINDS
from api.alerts.payloads import AlertMessage, message_body
from api.alerts.signals import DroppedRows, Observation, Signals
from api.alerts.urls import redact_url
from api.reallocation.lake_views import LakeStats
from api.settings import Settings
from api.store.models import (
    Alert,
    AlertDelivery,
    AlertRule,
    AlertTarget,
    AuditEvent,
    Experiment,
)
from api.store.types import utcnow
from lake.dashboard import DashboardQueries

__all__ = ["MAX_BACKOFF_S", "AlertEngine", "Evaluation"]

log = logging.getLogger(__name__)

ACTOR: Final = "alerts"
MAX_BACKOFF_S: Final = 600.0
# Outbox rows one delivery round sends at most; the rest wait for the next tick.
_ROUND: Final = 50
_USER_AGENT: Final = "banditlake-alerts/1"


class Evaluation:
    """What one evaluation changed: alerts opened and resolved, rules that failed."""

    def __init__(self) -> None:
        self.triggered: list[int] = []
        self.resolved: list[int] = []
        self.failed_rules: list[int] = []


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _summary(experiment: str, rule: AlertRule, obs: Observation) -> str:
    spec = KINDS[rule.kind]
    if rule.kind == "guardrail_tripped":
        return f"{experiment}: {obs.note}."
    side = "above" if spec.direction == "above" else "below"
    return (
        f"{experiment}: {spec.measures} of {obs.subject!r} is {_number(obs.value)}, {side} "
        f"the threshold {rule.threshold:g} ({obs.note})."
    )


class AlertEngine:
    """Evaluates the enabled rules of running experiments and delivers their messages.

    Parameters
    ----------
    settings
        ``alert_every_s``, ``alert_timeout_s``, ``alert_max_attempts``,
        ``alert_retry_base_s``.
    session_factory
        The SQL store.
    stats
        The lake's statistics (the report's SRM) and its engine and storage.
    transport
        An httpx transport for the POSTs (``None``: the network).
    """

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        stats: LakeStats,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._session_factory = session_factory
        self._stats = stats
        self._queries = DashboardQueries(storage=stats.storage)
        self._client = httpx.Client(
            timeout=settings.alert_timeout_s,
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": _USER_AGENT},
        )
        self._rng = random.Random()
        self._evaluate_due = 0.0
        self.dropped: DroppedRows | None = None

    def watch_dropped(self, read: Callable[[], int | None]) -> None:
        """Sample the lake writers' dropped-rows total with ``read`` (``rows_dropped``)."""
        self.dropped = DroppedRows(read)

    def close(self) -> None:
        self._client.close()
        self._queries.close()

    # -- the loop's entry ------------------------------------------------------------------

    def run(
        self,
        *,
        passed: bool,
        renew: Callable[[], None] | None = None,
        fence: Callable[[Connection | Session], bool] | None = None,
    ) -> None:
        """Evaluate after a pass that published (``passed``) or every ``alert_every_s``;
        then send what is due. ``renew`` renews the lease between POSTs."""
        if passed or time.monotonic() >= self._evaluate_due:
            self._evaluate_due = time.monotonic() + self._settings.alert_every_s
            self.evaluate(fence=fence)
        self.deliver_due(renew=renew)

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(
        self,
        *,
        now: datetime | None = None,
        fence: Callable[[Connection | Session], bool] | None = None,
    ) -> Evaluation:
        """Open, update and resolve the alerts of every enabled rule of running experiments.

        One transaction, committed only if ``fence`` (the lease check) passes. A rule whose
        measurement fails is logged and skipped; its alerts stay as they are.
        """
        now = now or utcnow()
        if self.dropped is not None:
            self.dropped.sample(now)
        result = Evaluation()
        with self._session_factory() as session:
            rows = session.execute(
                select(AlertRule, Experiment)
                .join(Experiment, Experiment.id == AlertRule.experiment_id)
                .where(AlertRule.enabled.is_(True), Experiment.status == "running")
                .order_by(AlertRule.experiment_id, AlertRule.id)
            ).all()
            if not rows:
                return result
            by_experiment: dict[int, tuple[Experiment, list[AlertRule]]] = {}
            for rule, experiment in rows:
                by_experiment.setdefault(experiment.id, (experiment, []))[1].append(rule)
            targets = {t.name: t for t in session.scalars(select(AlertTarget))}
            for experiment, rules in by_experiment.values():
                signals = Signals(
                    session,
                    experiment,
                    stats=self._stats,
                    queries=self._queries,
                    now=now,
                    dropped=self.dropped,
                )
                try:
                    for rule in rules:
                        try:
                            observations = signals.observe(rule)
                        except Exception:
                            log.exception(
                                "alert rule %d (%s) of %s could not be measured; its alerts "
                                "stay as they are",
                                rule.id,
                                rule.kind,
                                experiment.name,
                            )
                            result.failed_rules.append(rule.id)
                            continue
                        self._apply(session, experiment, rule, observations, targets, now, result)
                finally:
                    signals.close()
            if fence is not None and not fence(session):
                session.rollback()
                log.warning("the reallocation lease moved; alert evaluation not saved")
                return Evaluation()
            try:
                session.commit()
            except IntegrityError:
                # Another holder opened the same alert first (unique open_key): its alert stands.
                session.rollback()
                log.warning("an alert was opened by another evaluator meanwhile; skipped")
                return Evaluation()
        return result

    def _apply(
        self,
        session: Session,
        experiment: Experiment,
        rule: AlertRule,
        observations: list[Observation],
        targets: dict[str, AlertTarget],
        now: datetime,
        result: Evaluation,
    ) -> None:
        spec = KINDS[rule.kind]
        opened = {
            a.subject: a
            for a in session.scalars(
                select(Alert).where(Alert.rule_id == rule.id, Alert.state == "open")
            )
        }
        for obs in observations:
            current = opened.get(obs.subject)
            if obs.value is None:
                continue
            firing = spec.fires(obs.value, rule.threshold)
            if firing and current is None:
                alert = Alert(
                    rule_id=rule.id,
                    experiment_id=experiment.id,
                    subject=obs.subject[:300],
                    state="open",
                    open_key=f"{rule.id}:{obs.subject}"[:320],
                    value=obs.value,
                    threshold=rule.threshold,
                    summary=_summary(experiment.name, rule, obs),
                    opened_at=now,
                )
                session.add(alert)
                session.flush()
                self._notify(session, experiment, rule, alert, "trigger", targets, now)
                result.triggered.append(alert.id)
            elif firing and current is not None:
                current.value = obs.value
            elif not firing and current is not None:
                current.state = "resolved"
                current.open_key = None
                current.value = obs.value
                current.resolved_at = now
                session.flush()
                self._notify(session, experiment, rule, current, "resolve", targets, now)
                result.resolved.append(current.id)

    def _notify(
        self,
        session: Session,
        experiment: Experiment,
        rule: AlertRule,
        alert: Alert,
        event: str,
        targets: dict[str, AlertTarget],
        now: datetime,
    ) -> None:
        sent_to = []
        for name in rule.targets:
            target = targets.get(name)
            if target is None:
                continue
            session.add(
                AlertDelivery(
                    alert_id=alert.id,
                    target_id=target.id,
                    event=event,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
            sent_to.append(name)
        session.add(
            AuditEvent(
                experiment_id=experiment.id,
                actor=ACTOR,
                action=f"alert_{event}",
                details={
                    "alert_id": alert.id,
                    "rule_id": rule.id,
                    "kind": rule.kind,
                    "subject": alert.subject,
                    "value": alert.value,
                    "threshold": alert.threshold,
                    "summary": alert.summary,
                    "targets": sent_to,
                },
                created_at=now,
            )
        )
        log.warning("alert %s: %s", event, alert.summary)

    # -- delivery --------------------------------------------------------------------------

    def deliver_due(
        self, *, now: datetime | None = None, renew: Callable[[], None] | None = None
    ) -> int:
        """Send the outbox rows that are due; return how many were sent."""
        now = now or utcnow()
        sent = 0
        with self._session_factory() as session:
            due = list(
                session.scalars(
                    select(AlertDelivery)
                    .where(AlertDelivery.status == "pending", AlertDelivery.next_attempt_at <= now)
                    .order_by(AlertDelivery.id)
                    .limit(_ROUND)
                )
            )
            if not due:
                return 0
            for delivery in due:
                if delivery.event == "resolve" and self._trigger_pending(session, delivery):
                    continue
                if renew is not None:
                    renew()
                if self._attempt(session, delivery, now):
                    sent += 1
                session.commit()
        return sent

    @staticmethod
    def _trigger_pending(session: Session, resolve: AlertDelivery) -> bool:
        """Whether the trigger of ``resolve``'s alert to the same target is still to send."""
        stmt = select(AlertDelivery.id).where(
            AlertDelivery.alert_id == resolve.alert_id,
            AlertDelivery.target_id == resolve.target_id,
            AlertDelivery.event == "trigger",
            AlertDelivery.status == "pending",
        )
        return session.scalars(stmt.limit(1)).first() is not None

    def _message(
        self, session: Session, delivery: AlertDelivery
    ) -> tuple[AlertMessage, AlertTarget]:
        alert = session.get_one(Alert, delivery.alert_id)
        rule = session.get_one(AlertRule, alert.rule_id)
        experiment = session.get_one(Experiment, alert.experiment_id)
        target = session.get_one(AlertTarget, delivery.target_id)
        summary = alert.summary
        if delivery.event == "resolve":
            summary = f"{summary} Resolved: now {_number(alert.value)}."
        at = (
            alert.opened_at
            if delivery.event == "trigger"
            else (alert.resolved_at or alert.opened_at)
        )
        message = AlertMessage(
            event="trigger" if delivery.event == "trigger" else "resolve",
            alert_id=alert.id,
            rule_id=rule.id,
            rule_kind=rule.kind,
            experiment=experiment.name,
            subject=alert.subject,
            value=alert.value,
            threshold=alert.threshold,
            window_s=rule.window_s,
            severity=rule.severity,
            summary=summary,
            time=at,
        )
        return message, target

    def _attempt(self, session: Session, delivery: AlertDelivery, now: datetime) -> bool:
        message, target = self._message(session, delivery)
        body: dict[str, Any] = message_body(target.kind, message, routing_key=target.routing_key)
        delivery.attempts += 1
        retry = False
        try:
            # Only the status is read: a target's answer body, however large, is left unread.
            with self._client.stream("POST", target.url, json=body) as response:
                status = response.status_code
        except httpx.HTTPError as exc:
            # The exception's text may quote the URL, a secret: only its class is kept.
            error, retry = type(exc).__name__, True
        else:
            if 200 <= status < 300:
                delivery.status = "sent"
                delivery.sent_at = now
                delivery.last_error = None
                return True
            error = f"HTTP {status}"
            retry = status == 429 or status >= 500
        delivery.last_error = error
        if retry and delivery.attempts < self._settings.alert_max_attempts:
            delay = min(
                self._settings.alert_retry_base_s * 2 ** (delivery.attempts - 1), MAX_BACKOFF_S
            )
            delivery.next_attempt_at = now + timedelta(seconds=delay * self._rng.uniform(0.5, 1.0))
            log.warning(
                "alert %d %s to %s failed (%s); attempt %d of %d, retrying",
                message.alert_id,
                delivery.event,
                target.name,
                error,
                delivery.attempts,
                self._settings.alert_max_attempts,
            )
            return False
        delivery.status = "failed"
        session.add(
            AuditEvent(
                experiment_id=session.get_one(Alert, delivery.alert_id).experiment_id,
                actor=ACTOR,
                action="alert_delivery_failed",
                details={
                    "alert_id": delivery.alert_id,
                    "event": delivery.event,
                    "target": target.name,
                    "target_kind": target.kind,
                    "url": redact_url(target.url),
                    "attempts": delivery.attempts,
                    "error": error,
                    "retried": retry,
                },
            )
        )
        log.error(
            "alert %d %s to %s given up after %d attempt(s): %s",
            message.alert_id,
            delivery.event,
            target.name,
            delivery.attempts,
            error,
        )
        return False
