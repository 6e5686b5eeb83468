"""Alerts: targets, rules per experiment, open and resolved alerts, and their deliveries.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


RULE_KINDS = (
    "guardrail_tripped",
    "error_rate",
    "p99_latency_ms",
    "srm",
    "feature_drift",
    "prediction_drift",
    "rows_dropped",
    "reallocation_stalled",
)


def upgrade() -> None:
    op.create_table(
        "alert_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("routing_key", sa.String(64), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.CheckConstraint(
            _one_of("kind", ("slack", "pagerduty", "webhook")),
            name=op.f("ck_alert_targets_alert_target_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_targets")),
        sa.UniqueConstraint("name", name=op.f("uq_alert_targets_name")),
    )
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("window_s", sa.Integer(), nullable=False),
        sa.Column("min_requests", sa.Integer(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.CheckConstraint(
            _one_of("kind", RULE_KINDS), name=op.f("ck_alert_rules_alert_rule_kind")
        ),
        sa.CheckConstraint(
            _one_of("severity", ("critical", "error", "warning", "info")),
            name=op.f("ck_alert_rules_alert_rule_severity"),
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_alert_rules_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rules")),
    )
    op.create_index(op.f("ix_alert_rules_experiment_id"), "alert_rules", ["experiment_id", "id"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("open_key", sa.String(320), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("opened_at", TZ, nullable=False),
        sa.Column("resolved_at", TZ, nullable=True),
        sa.CheckConstraint(
            _one_of("state", ("open", "resolved")), name=op.f("ck_alerts_alert_state")
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["alert_rules.id"],
            name=op.f("fk_alerts_rule_id_alert_rules"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_alerts_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("open_key", name=op.f("uq_alerts_open_key")),
    )
    op.create_index(op.f("ix_alerts_experiment_id"), "alerts", ["experiment_id", "id"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("sent_at", TZ, nullable=True),
        sa.CheckConstraint(
            _one_of("event", ("trigger", "resolve")),
            name=op.f("ck_alert_deliveries_alert_delivery_event"),
        ),
        sa.CheckConstraint(
            _one_of("status", ("pending", "sent", "failed")),
            name=op.f("ck_alert_deliveries_alert_delivery_status"),
        ),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name=op.f("fk_alert_deliveries_alert_id_alerts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["alert_targets.id"],
            name=op.f("fk_alert_deliveries_target_id_alert_targets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
    )
    op.create_index(
        op.f("ix_alert_deliveries_status"), "alert_deliveries", ["status", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_alert_deliveries_status"), table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_index(op.f("ix_alerts_experiment_id"), table_name="alerts")
    op.drop_table("alerts")
    op.drop_index(op.f("ix_alert_rules_experiment_id"), table_name="alert_rules")
    op.drop_table("alert_rules")
    op.drop_table("alert_targets")
