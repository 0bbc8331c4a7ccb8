"""credits: accounts, journal, holds, usage log, billing-event outbox

Revision ID: 0001_credits
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_credits"
down_revision = None
branch_labels = None
depends_on = None

Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("user_id", sa.String(200), primary_key=True),
        sa.Column("balance_micro", sa.BigInteger, nullable=False),
        sa.Column("pending_micro", sa.BigInteger, nullable=False),
        sa.Column("overdraft_micro", sa.BigInteger, nullable=False),
        sa.Column("tier", sa.String(40), nullable=False),
        sa.Column("low_threshold_micro", sa.BigInteger, nullable=False),
        sa.Column("low_alerted", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.CheckConstraint("pending_micro >= 0", name="ck_accounts_pending_nonnegative"),
        sa.CheckConstraint("balance_micro - pending_micro >= 0", name="ck_accounts_available_nonnegative"),
    )
    op.create_table(
        "journal",
        sa.Column("id", Serial, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("amount_micro", sa.BigInteger, nullable=False),
        sa.Column("overdraft_micro", sa.BigInteger, nullable=False),
        sa.Column("hold_id", sa.String(40), nullable=True),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(300), nullable=False, unique=True),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_journal_user_id", "journal", ["user_id", "id"])
    op.create_table(
        "holds",
        sa.Column("hold_id", sa.String(40), primary_key=True),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("amount_micro", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("reserve_key", sa.String(300), nullable=False, unique=True),
        sa.Column("resolve_key", sa.String(300), nullable=True, unique=True),
        sa.Column("cost_micro", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("resolved_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_holds_status_expires", "holds", ["status", "expires_at"])
    op.create_index("ix_holds_user_status", "holds", ["user_id", "status"])
    op.create_table(
        "usage",
        sa.Column("id", Serial, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("api_key_id", sa.String(100), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("deployment", sa.String(200), nullable=False),
        sa.Column("power_level", sa.String(20), nullable=False),
        sa.Column("route", sa.String(20), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_micro", sa.BigInteger, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("byok", sa.Boolean, nullable=False),
        sa.Column("cache_hit", sa.Boolean, nullable=False),
        sa.Column("fallback_count", sa.Integer, nullable=False),
        sa.Column("usage_estimated", sa.Boolean, nullable=False),
        sa.Column("hold_id", sa.String(40), nullable=True),
        sa.Column("idempotency_key", sa.String(300), nullable=True, unique=True),
        sa.Column("decision", sa.LargeBinary, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_usage_user_created", "usage", ["user_id", "created_at"])
    op.create_index("ix_usage_created", "usage", ["created_at"])
    op.create_index("ix_usage_request", "usage", ["request_id"])
    op.create_table(
        "billing_events",
        sa.Column("id", Serial, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("transaction_id", sa.String(300), nullable=False, unique=True),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("usage_id", sa.BigInteger, nullable=True, unique=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
        sa.Column("sent_at", sa.BigInteger, nullable=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("last_error", sa.String(500), nullable=False),
    )
    op.create_index("ix_billing_events_due", "billing_events", ["state", "next_attempt_at"])


def downgrade() -> None:
    for table in ("billing_events", "usage", "holds", "journal", "accounts"):
        op.drop_table(table)
