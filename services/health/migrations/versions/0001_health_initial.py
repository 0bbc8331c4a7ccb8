"""health: target records and probe history

Revision ID: health_0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "health_0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "health_targets",
        sa.Column("provider", sa.String(200), primary_key=True),
        sa.Column("base_url", sa.String(1000), primary_key=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("ejections", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("ejected_until_ms", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("half_open", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("closed_at_ms", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("last_failure_ms", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("latency_ms", sa.Float(), nullable=False, server_default="0"),
        sa.Column("last_checked_ms", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("last_success_ms", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=False, server_default=""),
        sa.Column("p50_ms", sa.Float(), nullable=False, server_default="0"),
        sa.Column("p90_ms", sa.Float(), nullable=False, server_default="0"),
        sa.Column("p99_ms", sa.Float(), nullable=False, server_default="0"),
        sa.Column("probe_due_ms", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_table(
        "health_probes",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(200), nullable=False),
        sa.Column("base_url", sa.String(1000), nullable=False),
        sa.Column("checked_ms", sa.BigInteger(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
    )
    op.create_index("ix_health_probes_target_checked", "health_probes", ["provider", "base_url", "checked_ms"])
    op.create_index("ix_health_probes_checked", "health_probes", ["checked_ms"])


def downgrade() -> None:
    op.drop_table("health_probes")
    op.drop_table("health_targets")
