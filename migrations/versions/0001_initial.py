"""Initial schema: experiments, variants, allocations, audit events and the lake manifest.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("reward_kind", sa.String(16), nullable=False),
        sa.Column("reward_metric", sa.String(32), nullable=True),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("sticky", sa.Boolean(), nullable=False),
        sa.Column("min_weight", sa.Float(), nullable=False),
        sa.Column("reallocate_every_s", sa.Integer(), nullable=False),
        sa.Column("guardrails", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'running', 'paused', 'stopped')",
            name=op.f("ck_experiments_experiment_status"),
        ),
        sa.CheckConstraint(
            "min_weight >= 0 AND min_weight < 1", name=op.f("ck_experiments_experiment_min_weight")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
        sa.UniqueConstraint("name", name=op.f("uq_experiments_name")),
    )
    op.create_table(
        "variants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("model_path", sa.String(1024), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("input_name", sa.String(256), nullable=False),
        sa.Column("input_dim", sa.Integer(), nullable=False),
        sa.Column("feature_names", sa.JSON(), nullable=False),
        sa.Column("output_name", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.CheckConstraint("role IN ('arm', 'shadow')", name=op.f("ck_variants_variant_role")),
        sa.CheckConstraint(
            "status IN ('active', 'disabled', 'failed')", name=op.f("ck_variants_variant_status")
        ),
        sa.CheckConstraint("input_dim > 0", name=op.f("ck_variants_variant_input_dim")),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_variants_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_variants")),
        sa.UniqueConstraint("experiment_id", "name", name=op.f("uq_variants_experiment_id")),
    )
    op.create_table(
        "allocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("weights", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.CheckConstraint("version > 0", name=op.f("ck_allocations_allocation_version")),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_allocations_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocations")),
        sa.UniqueConstraint("experiment_id", "version", name=op.f("uq_allocations_experiment_id")),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_audit_events_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_experiment_id"), "audit_events", ["experiment_id", "id"])
    op.create_table(
        "lake_files",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("table_name", sa.String(32), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("writer_id", sa.String(64), nullable=False),
        sa.Column("min_ts", TZ, nullable=True),
        sa.Column("max_ts", TZ, nullable=True),
        sa.Column("status", sa.String(16), server_default="live", nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("replaced_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lake_files")),
        sa.UniqueConstraint("path", name=op.f("uq_lake_files_path")),
    )
    op.create_index(
        op.f("ix_lake_files_table_name_status_id"), "lake_files", ["table_name", "status", "id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_lake_files_table_name_status_id"), table_name="lake_files")
    op.drop_table("lake_files")
    op.drop_index(op.f("ix_audit_events_experiment_id"), table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("allocations")
    op.drop_table("variants")
    op.drop_table("experiments")
