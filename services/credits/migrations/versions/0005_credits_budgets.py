"""credits: budgets with periods, team pools

`budgets` (a limit per period on a key, a user or a team) and `budget_holds` (which budgets each hold
counts against, in which period); `holds.owner_id`, the requesting user when another account (a team's
pool) pays. On PostgreSQL `credits_reserve_plain` is `credits_reserve` behind one indexed check: it raises
`budgeted` when a budget applies to the request, and the service then takes the Python path in one
transaction, so requests without budgets keep their one round trip.

Revision ID: 0005_credits_budgets
Revises: 0004_credits_usage_attribution
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_credits_budgets"
down_revision = "0004_credits_usage_attribution"
branch_labels = None
depends_on = None

RESERVE_PLAIN = """
CREATE OR REPLACE FUNCTION credits_reserve_plain(
    p_scopes text[], p_hold_id text, p_user text, p_amount bigint, p_key text, p_request_id text, p_now bigint,
    p_expires_at bigint, p_grant bigint, p_threshold bigint, p_tier text
) RETURNS accounts LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM budgets WHERE scope_key = ANY(p_scopes)) THEN
        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'budgeted';
    END IF;
    RETURN credits_reserve(p_hold_id, p_user, p_amount, p_key, p_request_id, p_now, p_expires_at, p_grant,
                           p_threshold, p_tier);
END $$;
"""


def upgrade() -> None:
    op.add_column("holds", sa.Column("owner_id", sa.String(200), nullable=True))
    op.create_table(
        "budgets",
        sa.Column("budget_id", sa.String(40), primary_key=True),
        sa.Column("scope", sa.String(10), nullable=False),
        sa.Column("scope_id", sa.String(200), nullable=False),
        sa.Column("scope_key", sa.String(220), nullable=False),
        sa.Column("period", sa.String(10), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("limit_micro", sa.BigInteger, nullable=False),
        sa.Column("soft_limit_micro", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("alert_percents", sa.String(200), nullable=False),
        sa.Column("alerted", sa.String(200), nullable=False, server_default=""),
        sa.Column("spent_micro", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("reserved_micro", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("period_start", sa.BigInteger, nullable=False),
        sa.Column("period_end", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("scope_key", "period", name="uq_budgets_scope_period"),
        sa.CheckConstraint("reserved_micro >= 0", name="ck_budgets_reserved_nonnegative"),
    )
    op.create_table(
        "budget_holds",
        sa.Column("hold_id", sa.String(40), primary_key=True),
        sa.Column("budget_id", sa.String(40), primary_key=True),
        sa.Column("period_start", sa.BigInteger, nullable=False),
        sa.Column("amount_micro", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("cost_micro", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_index("ix_budget_holds_budget", "budget_holds", ["budget_id", "period_start"])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(RESERVE_PLAIN)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql("DROP FUNCTION credits_reserve_plain")
    op.drop_index("ix_budget_holds_budget", "budget_holds")
    op.drop_table("budget_holds")
    op.drop_table("budgets")
    with op.batch_alter_table("holds") as batch:
        batch.drop_column("owner_id")
