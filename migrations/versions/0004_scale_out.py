"""Scale out: compaction records, statistics checkpoints, retention and redaction.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lake_files") as batch:
        batch.add_column(sa.Column("replaced_by", sa.Integer(), nullable=True))
    op.create_table(
        "lake_compactions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("table_name", sa.String(32), nullable=False),
        sa.Column("output_path", sa.String(1024), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("delta_version", sa.BigInteger(), nullable=True),
        sa.Column("output_id", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lake_compactions")),
        sa.UniqueConstraint("output_path", name=op.f("uq_lake_compactions_output_path")),
    )
    op.create_index(
        "ix_lake_compactions_status_id", "lake_compactions", ["status", "id"], unique=False
    )
    op.create_table(
        "lake_checkpoints",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("watermarks", sa.JSON(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("state_sha256", sa.String(64), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_lake_checkpoints")),
    )
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("retention_days", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("redaction", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("redaction")
        batch.drop_column("retention_days")
    op.drop_table("lake_checkpoints")
    op.drop_index("ix_lake_compactions_status_id", table_name="lake_compactions")
    op.drop_table("lake_compactions")
    with op.batch_alter_table("lake_files") as batch:
        batch.drop_column("replaced_by")
