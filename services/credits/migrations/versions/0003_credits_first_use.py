"""credits: the first holds of a new user never race the opening of the account

`credits_reserve` opened the account when its guarded update found no row, and retried the update only
when this very call had created the account. A concurrent first request that lost the race to open it
(its insert waited for the winner, then did nothing) skipped the retry and refused a hold that the
freshly opened account covered. Now a refused update always opens the account (a no-op when it exists)
and retries: in READ COMMITTED the retried statement sees the winner's committed row. Only refusals pay
for the second statement.

Revision ID: 0003_credits_first_use
Revises: 0002_credits_procedures
"""

from __future__ import annotations

from alembic import op

revision = "0003_credits_first_use"
down_revision = "0002_credits_procedures"
branch_labels = None
depends_on = None

RESERVE = """
CREATE OR REPLACE FUNCTION credits_reserve(
    p_hold_id text, p_user text, p_amount bigint, p_key text, p_request_id text, p_now bigint, p_expires_at bigint,
    p_grant bigint, p_threshold bigint, p_tier text
) RETURNS accounts LANGUAGE plpgsql AS $$
DECLARE
    a accounts;
BEGIN
    INSERT INTO holds (hold_id, user_id, amount_micro, status, request_id, reserve_key, resolve_key, cost_micro,
                       created_at, expires_at, resolved_at)
    VALUES (p_hold_id, p_user, p_amount, 'pending', p_request_id, p_key, NULL, NULL, p_now, p_expires_at, NULL);
    UPDATE accounts SET pending_micro = pending_micro + p_amount, updated_at = p_now
     WHERE user_id = p_user AND balance_micro - pending_micro >= p_amount
    RETURNING * INTO a;
    IF a.user_id IS NULL THEN
        PERFORM credits_open_account(p_user, p_grant, p_threshold, p_tier, p_now);
        UPDATE accounts SET pending_micro = pending_micro + p_amount, updated_at = p_now
         WHERE user_id = p_user AND balance_micro - pending_micro >= p_amount
        RETURNING * INTO a;
    END IF;
    IF a.user_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'insufficient_credits',
            DETAIL = (SELECT greatest(0, balance_micro - pending_micro) FROM accounts WHERE user_id = p_user)::text;
    END IF;
    IF NOT a.low_alerted AND a.balance_micro - a.pending_micro < a.low_threshold_micro THEN
        PERFORM credits_note_low_balance(a, p_now);
    END IF;
    RETURN a;
END $$;
"""


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(RESERVE)


def downgrade() -> None:
    """Nothing to undo: the function keeps its signature, and the earlier body only had the race."""
