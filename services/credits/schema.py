"""credits' tables (SQLAlchemy Core). Money is integer micro-credits; times are integer unix milliseconds.

- `accounts` keeps the materialized balance and the pending total; both move only together with a
  journal row or a hold transition, in the same transaction, by guarded `UPDATE … WHERE … RETURNING`.
- `journal` is append-only: one row per balance change, `idempotency_key` UNIQUE.
- `holds` are the two-phase reservations: pending → settled | released | expired.
- `usage` is one row per attempt of a request; `billing_events` is the outbox the dispatcher drains.
- `budgets` are spending limits per period on a key, a user or a team; `budget_holds` links each hold to
  the budgets it counts against (and the period it counted in), so settling, releasing and expiring move
  exactly what the hold took.
"""

from __future__ import annotations

import time

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# SQLite only auto-increments an `INTEGER PRIMARY KEY`.
Serial = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("user_id", String(200), primary_key=True),
    Column("balance_micro", BigInteger, nullable=False),
    Column("pending_micro", BigInteger, nullable=False, default=0),
    Column("overdraft_micro", BigInteger, nullable=False, default=0),
    Column("tier", String(40), nullable=False, default="standard"),
    Column("low_threshold_micro", BigInteger, nullable=False),
    # Set when the account went below its threshold and the event was queued; cleared when it is back above.
    Column("low_alerted", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    CheckConstraint("pending_micro >= 0", name="ck_accounts_pending_nonnegative"),
    CheckConstraint("balance_micro - pending_micro >= 0", name="ck_accounts_available_nonnegative"),
)

journal = Table(
    "journal",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("user_id", String(200), nullable=False),
    # grant | top-up | settle | refund | adjustment | overdraft
    Column("kind", String(20), nullable=False),
    Column("amount_micro", BigInteger, nullable=False),
    Column("overdraft_micro", BigInteger, nullable=False, default=0),
    Column("hold_id", String(40), nullable=True),
    Column("request_id", String(200), nullable=False, default=""),
    Column("idempotency_key", String(300), nullable=False, unique=True),
    Column("reason", String(500), nullable=False, default=""),
    Column("actor", String(200), nullable=False, default=""),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_journal_user_id", "user_id", "id"),
)

holds = Table(
    "holds",
    metadata,
    Column("hold_id", String(40), primary_key=True),
    Column("user_id", String(200), nullable=False),
    Column("amount_micro", BigInteger, nullable=False),
    # pending | settled | released | expired
    Column("status", String(10), nullable=False),
    Column("request_id", String(200), nullable=False, default=""),
    Column("reserve_key", String(300), nullable=False, unique=True),
    Column("resolve_key", String(300), nullable=True, unique=True),
    Column("cost_micro", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("resolved_at", BigInteger, nullable=True),
    # The requesting user when another account pays (a team pool, whose "team:<id>" is `user_id`); migration 0005.
    Column("owner_id", String(200), nullable=True),
    Index("ix_holds_status_expires", "status", "expires_at"),
    Index("ix_holds_user_status", "user_id", "status"),
)

usage = Table(
    "usage",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("request_id", String(200), nullable=False),
    Column("user_id", String(200), nullable=False),
    Column("api_key_id", String(100), nullable=False, default=""),
    Column("model", String(200), nullable=False, default=""),
    Column("provider", String(100), nullable=False, default=""),
    Column("deployment", String(200), nullable=False, default=""),
    Column("power_level", String(20), nullable=False, default=""),
    Column("route", String(20), nullable=False, default=""),
    Column("prompt_tokens", BigInteger, nullable=False, default=0),
    Column("completion_tokens", BigInteger, nullable=False, default=0),
    Column("cost_micro", BigInteger, nullable=False, default=0),
    Column("latency_ms", Float, nullable=False, default=0.0),
    Column("status", String(20), nullable=False),
    Column("byok", Boolean, nullable=False, default=False),
    Column("cache_hit", Boolean, nullable=False, default=False),
    Column("fallback_count", Integer, nullable=False, default=0),
    Column("usage_estimated", Boolean, nullable=False, default=False),
    # Set on rows written by Settle/Release: the hold whose charge this row explains.
    Column("hold_id", String(40), nullable=True),
    # RecordUsage's key; Settle/Release rows are made unique by their hold's resolve key.
    Column("idempotency_key", String(300), nullable=True, unique=True),
    Column("decision", LargeBinary, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    # The parts of prompt_tokens read from and written to a provider's prompt cache, and of completion_tokens
    # spent reasoning (migration 0004).
    Column("cache_read_tokens", BigInteger, nullable=False, default=0),
    Column("cache_write_tokens", BigInteger, nullable=False, default=0),
    Column("reasoning_tokens", BigInteger, nullable=False, default=0),
    # Attribution: the body's OpenAI `user`, and the tags of its `metadata` and X-Tollgate-Tags (a JSON object).
    Column("end_user", String(256), nullable=False, default=""),
    Column("tags", JSON, nullable=True),
    Index("ix_usage_user_created", "user_id", "created_at"),
    Index("ix_usage_created", "created_at"),
    Index("ix_usage_request", "request_id"),
)

billing_events = Table(
    "billing_events",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    # usage (a Lago event) | low_balance (an alert)
    Column("kind", String(20), nullable=False),
    Column("transaction_id", String(300), nullable=False, unique=True),
    Column("user_id", String(200), nullable=False),
    Column("usage_id", BigInteger, nullable=True, unique=True),
    Column("payload", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("sent_at", BigInteger, nullable=True),
    # pending | sent | dead (refused by the receiver as malformed; kept for an operator)
    Column("state", String(10), nullable=False, default="pending"),
    Column("last_error", String(500), nullable=False, default=""),
    Index("ix_billing_events_due", "state", "next_attempt_at"),
)


budgets = Table(
    "budgets",
    metadata,
    Column("budget_id", String(40), primary_key=True),
    # key | user | team, and its id; `scope_key` is "<scope>:<scope_id>", what a reserve looks budgets up by.
    Column("scope", String(10), nullable=False),
    Column("scope_id", String(200), nullable=False),
    Column("scope_key", String(220), nullable=False),
    # daily | weekly | monthly, reset at midnight of `timezone` (an IANA name)
    Column("period", String(10), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("limit_micro", BigInteger, nullable=False),
    Column("soft_limit_micro", BigInteger, nullable=False, default=0),
    # Comma-separated percents of the alert base; `alerted` the ones already queued in the current period.
    Column("alert_percents", String(200), nullable=False),
    Column("alerted", String(200), nullable=False, default=""),
    Column("spent_micro", BigInteger, nullable=False, default=0),
    Column("reserved_micro", BigInteger, nullable=False, default=0),
    Column("period_start", BigInteger, nullable=False),
    Column("period_end", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False, default=""),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("scope_key", "period", name="uq_budgets_scope_period"),
    CheckConstraint("reserved_micro >= 0", name="ck_budgets_reserved_nonnegative"),
)

budget_holds = Table(
    "budget_holds",
    metadata,
    Column("hold_id", String(40), primary_key=True),
    Column("budget_id", String(40), primary_key=True),
    # The period the hold counted in: resolving it moves the budget's figures only while that period lasts.
    Column("period_start", BigInteger, nullable=False),
    Column("amount_micro", BigInteger, nullable=False),
    # pending | settled | released | expired (settled after expired when a late settle charges it)
    Column("status", String(10), nullable=False),
    Column("cost_micro", BigInteger, nullable=False, default=0),
    Index("ix_budget_holds_budget", "budget_id", "period_start"),
)


def now_ms() -> int:
    return int(time.time() * 1000)
