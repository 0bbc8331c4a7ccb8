"""health: measured latency of answered calls, maintenance holds and their audit

Revision ID: health_0002
Revises: health_0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "health_0002"
down_revision = "health_0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("health_targets", sa.Column("latency_ewma_ms", sa.Float(), nullable=False, server_default="0"))
    op.create_table(
        "health_maintenance",
        sa.Column("provider", sa.String(200), primary_key=True),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "health_maintenance_audit",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(200), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_health_maintenance_audit_provider", "health_maintenance_audit", ["provider", "id"])


def downgrade() -> None:
    op.drop_table("health_maintenance_audit")
    op.drop_table("health_maintenance")
    with op.batch_alter_table("health_targets") as batch:
        batch.drop_column("latency_ewma_ms")
