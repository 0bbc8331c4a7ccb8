"""credits: reserve, settle, release and grant as PostgreSQL functions (one round trip each)

Each function does exactly what the Python path in `services.credits.holds` / `ledger` does, statement
for statement, in the caller's implicit transaction: the same rows, the same guards, the same lock
order (hold before account). Refusals are raised (`P0001` with the refusal's code as message and its
figure as detail) so the whole call rolls back, as a `DomainError` inside `engine.begin()` does; a
unique violation propagates unchanged and the caller resolves the idempotent repeat, as the Python
path does on `IntegrityError`. SQLite keeps the Python path: this revision does nothing there.

Revision ID: 0002_credits_procedures
Revises: 0001_credits
Create Date: 2025-01-02
"""

# ruff: noqa: S608  (the functions are assembled from constant fragments of this file, never from input)

from __future__ import annotations

from alembic import op

revision = "0002_credits_procedures"
down_revision = "0001_credits"
branch_labels = None
depends_on = None

OPEN_ACCOUNT = """
CREATE OR REPLACE FUNCTION credits_open_account(
    p_user text, p_grant bigint, p_threshold bigint, p_tier text, p_now bigint
) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO accounts (user_id, balance_micro, pending_micro, overdraft_micro, tier, low_threshold_micro,
                          low_alerted, created_at, updated_at)
    VALUES (p_user, p_grant, 0, 0, p_tier, p_threshold, false, p_now, p_now)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF p_grant <> 0 THEN
        INSERT INTO journal (user_id, kind, amount_micro, overdraft_micro, hold_id, request_id, idempotency_key,
                             reason, actor, created_at)
        VALUES (p_user, 'grant', p_grant, 0, NULL, '', 'account-opened:' || p_user, 'default grant', '', p_now);
    END IF;
    RETURN true;
END $$;
"""

NOTE_LOW_BALANCE = """
CREATE OR REPLACE FUNCTION credits_note_low_balance(a accounts, p_now bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    available bigint := a.balance_micro - a.pending_micro;
BEGIN
    IF a.low_alerted OR available >= a.low_threshold_micro THEN
        RETURN;
    END IF;
    UPDATE accounts SET low_alerted = true WHERE user_id = a.user_id AND low_alerted IS false;
    IF FOUND THEN
        INSERT INTO billing_events (kind, transaction_id, user_id, usage_id, payload, created_at, attempts,
                                    next_attempt_at, sent_at, state, last_error)
        VALUES ('low_balance',
                'low-balance:' || a.user_id || ':' || replace(gen_random_uuid()::text, '-', ''),
                a.user_id, NULL,
                '{"type":"credits.low_balance","user_id":' || to_json(a.user_id)::text
                    || ',"available_micro":' || available || ',"threshold_micro":' || a.low_threshold_micro
                    || ',"timestamp":' || (p_now / 1000) || '}',
                p_now, 0, p_now, NULL, 'pending', '');
    END IF;
END $$;
"""

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
    IF a.user_id IS NULL AND credits_open_account(p_user, p_grant, p_threshold, p_tier, p_now) THEN
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

# The usage row's columns, after the hold's own arguments, in the order both functions take them.
USAGE_ARGS = """
    p_request_id text, p_api_key_id text, p_model text, p_provider text, p_deployment text, p_power_level text,
    p_route text, p_prompt_tokens bigint, p_completion_tokens bigint, p_latency_ms double precision, p_status text,
    p_byok boolean, p_cache_hit boolean, p_fallback_count integer, p_usage_estimated boolean, p_decision bytea
"""

INSERT_USAGE = """
    INSERT INTO usage (request_id, user_id, api_key_id, model, provider, deployment, power_level, route,
                       prompt_tokens, completion_tokens, cost_micro, latency_ms, status, byok, cache_hit,
                       fallback_count, usage_estimated, hold_id, idempotency_key, decision, created_at)
    VALUES (used_request, h.user_id, p_api_key_id, p_model, p_provider, p_deployment, p_power_level, p_route,
            p_prompt_tokens, p_completion_tokens, {cost}, p_latency_ms, p_status, p_byok, p_cache_hit,
            p_fallback_count, p_usage_estimated, p_hold_id, NULL, p_decision, p_now)
"""

ACCOUNT_OUT = """
    OUT user_id text, OUT balance_micro bigint, OUT pending_micro bigint, OUT overdraft_micro bigint,
    OUT low_threshold_micro bigint, OUT tier text
"""

ACCOUNT_ASSIGN = """
    user_id := a.user_id;
    balance_micro := a.balance_micro;
    pending_micro := a.pending_micro;
    overdraft_micro := a.overdraft_micro;
    low_threshold_micro := a.low_threshold_micro;
    tier := a.tier;
"""

SETTLE = f"""
CREATE OR REPLACE FUNCTION credits_settle(
    p_hold_id text, p_amount bigint, p_key text, p_now bigint, p_billing_code text, {USAGE_ARGS},
    OUT resolved boolean, OUT charged_micro bigint, OUT shortfall_micro bigint, {ACCOUNT_OUT}
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    h record;
    a accounts;
    held bigint := 0;
    available bigint;
    used_request text;
    usage_id bigint;
    event_id bigint;
    properties text;
    event_transaction text;
BEGIN
    UPDATE holds SET status = 'settled', resolve_key = p_key, cost_micro = p_amount, resolved_at = p_now
     WHERE hold_id = p_hold_id AND status = 'pending'
    RETURNING holds.user_id, holds.amount_micro, holds.request_id INTO h;
    IF FOUND THEN
        held := h.amount_micro;
    ELSE
        -- The sweeper expired it (its money is already back): the request still ran, so it is charged.
        UPDATE holds SET status = 'settled', resolve_key = p_key, cost_micro = p_amount, resolved_at = p_now
         WHERE hold_id = p_hold_id AND status = 'expired'
        RETURNING holds.user_id, holds.amount_micro, holds.request_id INTO h;
        IF NOT FOUND THEN
            resolved := false;
            RETURN;
        END IF;
    END IF;
    IF p_amount <= held THEN
        charged_micro := p_amount;
    ELSE
        SELECT accounts.balance_micro - accounts.pending_micro INTO available
          FROM accounts WHERE accounts.user_id = h.user_id FOR UPDATE;
        charged_micro := least(p_amount, available + held);
    END IF;
    shortfall_micro := p_amount - charged_micro;
    INSERT INTO journal (user_id, kind, amount_micro, overdraft_micro, hold_id, request_id, idempotency_key,
                         reason, actor, created_at)
    VALUES (h.user_id, 'settle', -charged_micro, 0, p_hold_id, h.request_id, p_key, '', '', p_now);
    IF shortfall_micro <> 0 THEN
        INSERT INTO journal (user_id, kind, amount_micro, overdraft_micro, hold_id, request_id, idempotency_key,
                             reason, actor, created_at)
        VALUES (h.user_id, 'overdraft', 0, shortfall_micro, p_hold_id, h.request_id, p_key || ':overdraft',
                'cost beyond the available balance', '', p_now);
    END IF;
    used_request := coalesce(nullif(p_request_id, ''), h.request_id);
    {INSERT_USAGE.format(cost="p_amount")}
    RETURNING usage.id INTO usage_id;
    IF p_amount > 0 AND NOT p_byok THEN
        properties := '{{"model":' || to_json(p_model)::text || ',"provider":' || to_json(p_provider)::text
            || ',"deployment":' || to_json(p_deployment)::text || ',"input_tokens":' || p_prompt_tokens
            || ',"output_tokens":' || p_completion_tokens
            || ',"total_tokens":' || (p_prompt_tokens + p_completion_tokens)
            || ',"cost_micro":' || p_amount || ',"cost":"' || (p_amount::numeric / 1000000)::numeric(38, 6) || '"}}';
        -- A request billed twice (two settled attempts) keeps both events apart instead of dropping one.
        FOREACH event_transaction IN ARRAY ARRAY[used_request, used_request || ':' || p_hold_id] LOOP
            INSERT INTO billing_events (kind, transaction_id, user_id, usage_id, payload, created_at, attempts,
                                        next_attempt_at, sent_at, state, last_error)
            VALUES ('usage', event_transaction, h.user_id, usage_id,
                    '{{"event":{{"transaction_id":' || to_json(event_transaction)::text
                        || ',"external_subscription_id":' || to_json(h.user_id)::text
                        || ',"code":' || to_json(p_billing_code)::text || ',"timestamp":' || (p_now / 1000)
                        || ',"properties":' || properties || '}}}}',
                    p_now, 0, p_now, NULL, 'pending', '')
            ON CONFLICT (transaction_id) DO NOTHING
            RETURNING billing_events.id INTO event_id;
            EXIT WHEN event_id IS NOT NULL;
        END LOOP;
        IF event_id IS NULL THEN
            RAISE EXCEPTION 'billing event for request % and hold % already queued', used_request, p_hold_id;
        END IF;
    END IF;
    UPDATE accounts SET balance_micro = accounts.balance_micro - charged_micro,
                        pending_micro = accounts.pending_micro - held,
                        overdraft_micro = accounts.overdraft_micro + shortfall_micro,
                        updated_at = p_now
     WHERE accounts.user_id = h.user_id
    RETURNING * INTO a;
    IF NOT a.low_alerted AND a.balance_micro - a.pending_micro < a.low_threshold_micro THEN
        PERFORM credits_note_low_balance(a, p_now);
    END IF;
    resolved := true;
    {ACCOUNT_ASSIGN}
END $$;
"""

RELEASE = f"""
CREATE OR REPLACE FUNCTION credits_release(
    p_hold_id text, p_key text, p_now bigint, {USAGE_ARGS},
    OUT resolved boolean, {ACCOUNT_OUT}
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    h record;
    a accounts;
    used_request text;
BEGIN
    UPDATE holds SET status = 'released', resolve_key = p_key, cost_micro = 0, resolved_at = p_now
     WHERE hold_id = p_hold_id AND status = 'pending'
    RETURNING holds.user_id, holds.amount_micro, holds.request_id INTO h;
    IF NOT FOUND THEN
        resolved := false;
        RETURN;
    END IF;
    used_request := coalesce(nullif(p_request_id, ''), h.request_id);
    {INSERT_USAGE.format(cost="0")};
    UPDATE accounts SET pending_micro = accounts.pending_micro - h.amount_micro, updated_at = p_now
     WHERE accounts.user_id = h.user_id
    RETURNING * INTO a;
    resolved := true;
    {ACCOUNT_ASSIGN}
END $$;
"""

GRANT = f"""
CREATE OR REPLACE FUNCTION credits_grant(
    p_user text, p_amount bigint, p_key text, p_kind text, p_reason text, p_actor text, p_now bigint,
    p_grant bigint, p_threshold bigint, p_tier text,
    OUT transaction_id bigint, {ACCOUNT_OUT}
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    a accounts;
BEGIN
    PERFORM credits_open_account(p_user, p_grant, p_threshold, p_tier, p_now);
    INSERT INTO journal (user_id, kind, amount_micro, overdraft_micro, hold_id, request_id, idempotency_key,
                         reason, actor, created_at)
    VALUES (p_user, p_kind, p_amount, 0, NULL, '', p_key, p_reason, p_actor, p_now)
    RETURNING journal.id INTO transaction_id;
    UPDATE accounts
       SET balance_micro = accounts.balance_micro + p_amount,
           low_alerted = CASE
               WHEN accounts.balance_micro + p_amount - accounts.pending_micro >= accounts.low_threshold_micro
               THEN false ELSE accounts.low_alerted END,
           updated_at = p_now
     WHERE accounts.user_id = p_user AND accounts.balance_micro + p_amount - accounts.pending_micro >= 0
    RETURNING * INTO a;
    IF a.user_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'below_zero',
            DETAIL = (SELECT greatest(0, accounts.balance_micro - accounts.pending_micro)
                        FROM accounts WHERE accounts.user_id = p_user)::text;
    END IF;
    IF NOT a.low_alerted AND a.balance_micro - a.pending_micro < a.low_threshold_micro THEN
        PERFORM credits_note_low_balance(a, p_now);
    END IF;
    {ACCOUNT_ASSIGN}
END $$;
"""

FUNCTIONS = (
    "credits_grant(text, bigint, text, text, text, text, bigint, bigint, bigint, text)",
    "credits_release(text, text, bigint, text, text, text, text, text, text, text, bigint, bigint, double precision, "
    "text, boolean, boolean, integer, boolean, bytea)",
    "credits_settle(text, bigint, text, bigint, text, text, text, text, text, text, text, text, bigint, bigint, "
    "double precision, text, boolean, boolean, integer, boolean, bytea)",
    "credits_reserve(text, text, bigint, text, text, bigint, bigint, bigint, bigint, text)",
    "credits_note_low_balance(accounts, bigint)",
    "credits_open_account(text, bigint, bigint, text, bigint)",
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for sql in (OPEN_ACCOUNT, NOTE_LOW_BALANCE, RESERVE, SETTLE, RELEASE, GRANT):
        bind.exec_driver_sql(sql)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for signature in FUNCTIONS:
        bind.exec_driver_sql(f"DROP FUNCTION IF EXISTS {signature}")
