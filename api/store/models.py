"""SQLAlchemy 2 typed ORM models of the SQL store.

The models share :data:`lake.manifest.metadata` so the lake's file manifest
(``lake_files``) and these tables form one schema that Alembic migrates.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from api.store.types import UtcDateTime, utcnow
from bandit.config import policy_from_dict
from bandit.guardrails import Guardrails
from bandit.policy import PolicyConfig
from bandit.stopping import StoppingRule
from lake.manifest import metadata as lake_metadata

__all__ = [
    "Alert",
    "AlertDelivery",
    "AlertRule",
    "AlertTarget",
    "AllocationRow",
    "AuditEvent",
    "Base",
    "Experiment",
    "Lease",
    "ServiceSecret",
    "Variant",
]

EXPERIMENT_STATUSES = ("draft", "running", "paused", "stopped")
VARIANT_ROLES = ("arm", "shadow")
VARIANT_STATUSES = ("active", "disabled", "failed")
ALERT_TARGET_KINDS = ("slack", "pagerduty", "webhook")
ALERT_RULE_KINDS = (
    "guardrail_tripped",
    "error_rate",
    "p99_latency_ms",
    "srm",
    "feature_drift",
    "prediction_drift",
    "rows_dropped",
    "reallocation_stalled",
)
ALERT_SEVERITIES = ("critical", "error", "warning", "info")
ALERT_STATES = ("open", "resolved")
ALERT_EVENTS = ("trigger", "resolve")
DELIVERY_STATUSES = ("pending", "sent", "failed")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    """``status IN ('a', 'b')``: the check constraint's SQL for one of ``values``."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = lake_metadata
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON()}  # noqa: RUF012


class Experiment(Base):
    __tablename__ = "experiments"
    __table_args__ = (
        CheckConstraint(_one_of("status", EXPERIMENT_STATUSES), name="experiment_status"),
        CheckConstraint("min_weight >= 0 AND min_weight < 1", name="experiment_min_weight"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    reward_kind: Mapped[str] = mapped_column(String(16))
    reward_metric: Mapped[str | None] = mapped_column(String(32))
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    sticky: Mapped[bool] = mapped_column(Boolean, default=False)
    min_weight: Mapped[float] = mapped_column(Float, default=0.0)
    reallocate_every_s: Mapped[int] = mapped_column(Integer, default=60)
    guardrails: Mapped[dict[str, Any]] = mapped_column(JSON)
    stopping: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Days of predictions and feedback the lake keeps for this experiment; None: forever.
    retention_days: Mapped[int | None] = mapped_column(Integer)
    # Features kept out of the lake: {"drop": [names], "hash": [names]}; None: none.
    redaction: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Whether rows scored by `banditlake score` (mode "batch") feed the bandit statistics.
    learn_from_batch: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    status: Mapped[str] = mapped_column(String(16), default="draft")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    variants: Mapped[list[Variant]] = relationship(
        back_populates="experiment", order_by="Variant.id", cascade="all, delete-orphan"
    )

    # The JSON columns are read into bandit's validated objects here, once; callers
    # use these rather than the dictionaries and their defaults.

    @property
    def policy_config(self) -> PolicyConfig:
        """The stored policy, parsed by :func:`bandit.config.policy_from_dict`."""
        return policy_from_dict(str(self.policy["kind"]), self.policy)

    @property
    def guardrail_config(self) -> Guardrails:
        """The stored guardrails; ``min_requests`` is the service's to set."""
        return Guardrails(**(self.guardrails or {}))

    @property
    def stopping_rule(self) -> StoppingRule:
        """The stored stopping rule; rows stored without one get the defaults."""
        return StoppingRule(**(self.stopping or {}))


class Variant(Base):
    __tablename__ = "variants"
    __table_args__ = (
        UniqueConstraint("experiment_id", "name"),
        CheckConstraint(_one_of("role", VARIANT_ROLES), name="variant_role"),
        CheckConstraint(_one_of("status", VARIANT_STATUSES), name="variant_status"),
        CheckConstraint("input_dim > 0", name="variant_input_dim"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    model_path: Mapped[str] = mapped_column(String(1024))
    model_sha256: Mapped[str] = mapped_column(String(64))
    input_name: Mapped[str] = mapped_column(String(256))
    input_dim: Mapped[int] = mapped_column(Integer)
    feature_names: Mapped[list[str]] = mapped_column(JSON)
    output_name: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    experiment: Mapped[Experiment] = relationship(back_populates="variants")


class AllocationRow(Base):
    """One immutable allocation version; a change inserts a new row."""

    __tablename__ = "allocations"
    __table_args__ = (
        UniqueConstraint("experiment_id", "version"),
        CheckConstraint("version > 0", name="allocation_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    weights: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(64))
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index(None, "experiment_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int | None] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE")
    )
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Lease(Base):
    """A named lease: one replica at a time runs the reallocation loop."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column()


class ServiceSecret(Base):
    """A secret shared by every replica (the request-id key), generated at first start."""

    __tablename__ = "service_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AlertTarget(Base):
    """Where alerts go: a Slack incoming webhook, a PagerDuty service or a JSON webhook.

    ``url`` and ``routing_key`` are secrets: the API shows them redacted only.
    """

    __tablename__ = "alert_targets"
    __table_args__ = (
        CheckConstraint(_one_of("kind", ALERT_TARGET_KINDS), name="alert_target_kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    routing_key: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AlertRule(Base):
    """One condition on one experiment, evaluated by the reallocation lease holder."""

    __tablename__ = "alert_rules"
    __table_args__ = (
        CheckConstraint(_one_of("kind", ALERT_RULE_KINDS), name="alert_rule_kind"),
        CheckConstraint(_one_of("severity", ALERT_SEVERITIES), name="alert_rule_severity"),
        Index(None, "experiment_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    threshold: Mapped[float] = mapped_column(Float)
    window_s: Mapped[int] = mapped_column(Integer)
    min_requests: Mapped[int] = mapped_column(Integer)
    severity: Mapped[str] = mapped_column(String(16))
    # Names of alert targets; a target named here cannot be deleted.
    targets: Mapped[list[str]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Alert(Base):
    """An alert of one rule on one subject (a variant, a feature, the experiment).

    ``open_key`` is ``"<rule id>:<subject>"`` while the alert is open and NULL once
    resolved: its unique constraint keeps one open alert per rule and subject, in every
    replica and across lease holders.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint(_one_of("state", ALERT_STATES), name="alert_state"),
        Index(None, "experiment_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(300))
    state: Mapped[str] = mapped_column(String(16))
    open_key: Mapped[str | None] = mapped_column(String(320), unique=True)
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    summary: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column()


class AlertDelivery(Base):
    """One message to send to one target (an outbox row): retried until sent or given up."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        CheckConstraint(_one_of("event", ALERT_EVENTS), name="alert_delivery_event"),
        CheckConstraint(_one_of("status", DELIVERY_STATUSES), name="alert_delivery_status"),
        Index(None, "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    target_id: Mapped[int] = mapped_column(ForeignKey("alert_targets.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()
