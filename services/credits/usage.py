"""The usage log: one row per attempt of a request (settled, released, expired or free/BYOK), and its reports.

Rows written by Settle and Release carry their hold's id and are made unique by the hold's resolve key;
RecordUsage rows (free models, BYOK) carry their own idempotency key and never touch the balance.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields, replace
from typing import Any

from sqlalchemy import ColumnElement, Row, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.credits import outbox
from services.credits.ledger import Ledger, ensure_account, key_reused, require_key, require_user
from services.credits.schema import now_ms, usage
from services.credits.settings import to_credits
from services.runtime.errors import DomainError

STATUSES = ("ok", "error", "cancelled", "partial", "expired")
GROUPS = ("day", "model", "provider", "user")


@dataclass(frozen=True)
class UsageEntry:
    request_id: str
    user_id: str
    api_key_id: str = ""
    model: str = ""
    provider: str = ""
    deployment: str = ""
    power_level: str = ""
    route: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_micro: int = 0
    latency_ms: float = 0.0
    status: str = "ok"
    byok: bool = False
    cache_hit: bool = False
    fallback_count: int = 0
    usage_estimated: bool = False
    decision: bytes = b""

    def validated(self) -> UsageEntry:
        if self.prompt_tokens < 0 or self.completion_tokens < 0 or self.cost_micro < 0:
            raise DomainError("invalid_request", "token counts and cost must not be negative", "usage")
        status = self.status or "ok"
        if status not in STATUSES:
            raise DomainError("invalid_request", f"usage status must be one of {', '.join(STATUSES)}", "usage.status")
        return replace(self, status=status)


@dataclass(frozen=True)
class UsageRow:
    id: int
    entry: UsageEntry
    hold_id: str
    created_at: int


@dataclass(frozen=True)
class UsageGroup:
    key: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_micro: int


_ENTRY_FIELDS = tuple(f.name for f in fields(UsageEntry))


def require_free_cache_hit(entry: UsageEntry) -> None:
    """What the gateway may log itself: a response it served from its cache, free. Everything else is the router's."""
    if not entry.cache_hit or entry.cost_micro or entry.prompt_tokens or entry.completion_tokens:
        raise DomainError("permission_denied", "the gateway may record only free cache hits", "usage")


def billable(entry: UsageEntry) -> bool:
    return entry.cost_micro > 0 and not entry.byok


async def insert_usage(
    conn: AsyncConnection, entry: UsageEntry, *, hold_id: str | None, idempotency_key: str | None, now: int
) -> int:
    values: dict[str, Any] = {name: getattr(entry, name) for name in _ENTRY_FIELDS}
    values["decision"] = entry.decision or None
    result = await conn.execute(
        usage.insert()
        .values(**values, hold_id=hold_id, idempotency_key=idempotency_key, created_at=now)
        .returning(usage.c.id)
    )
    return int(result.scalar_one())


async def record_usage(ledger: Ledger, entry: UsageEntry, idempotency_key: str) -> int:
    """A free or BYOK request's usage, without charge; a repeat of the same key returns the first row's id."""
    entry = entry.validated()
    require_user(entry.user_id)
    require_key(idempotency_key)
    if not entry.request_id:
        raise DomainError("invalid_request", "usage.request_id is required", "usage.request_id")
    try:
        async with ledger.engine.begin() as conn:
            await ensure_account(conn, ledger.policy, entry.user_id)
            return await insert_usage(conn, entry, hold_id=None, idempotency_key=idempotency_key, now=now_ms())
    except IntegrityError:
        async with ledger.engine.connect() as conn:
            prior = (await conn.execute(select(usage).where(usage.c.idempotency_key == idempotency_key))).first()
        if prior is None:
            raise
        if (prior.request_id, prior.user_id, prior.cost_micro, prior.prompt_tokens, prior.completion_tokens) != (
            entry.request_id,
            entry.user_id,
            entry.cost_micro,
            entry.prompt_tokens,
            entry.completion_tokens,
        ):
            raise key_reused(idempotency_key) from None
        return int(prior.id)


async def enqueue_billing(
    conn: AsyncConnection, ledger: Ledger, usage_id: int, entry: UsageEntry, hold_id: str, now: int
) -> None:
    if billable(entry):
        await outbox.enqueue_usage(
            conn,
            usage_id,
            entry.request_id,
            hold_id,
            entry.user_id,
            ledger.policy.billing_code,
            _properties(entry),
            now,
        )


def _properties(entry: UsageEntry) -> dict[str, Any]:
    return {
        "model": entry.model,
        "provider": entry.provider,
        "deployment": entry.deployment,
        "input_tokens": entry.prompt_tokens,
        "output_tokens": entry.completion_tokens,
        "total_tokens": entry.prompt_tokens + entry.completion_tokens,
        "cost_micro": entry.cost_micro,
        "cost": to_credits(entry.cost_micro),
    }


def row_of(row: Row[Any]) -> UsageRow:
    entry = UsageEntry(
        **{name: getattr(row, name) for name in _ENTRY_FIELDS if name != "decision"}, decision=row.decision or b""
    )
    return UsageRow(id=int(row.id), entry=entry, hold_id=row.hold_id or "", created_at=int(row.created_at))


def _window(user_id: str, since_ms: int, until_ms: int) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if user_id:
        where.append(usage.c.user_id == user_id)
    if since_ms:
        where.append(usage.c.created_at >= since_ms)
    if until_ms:
        where.append(usage.c.created_at < until_ms)
    return where


async def list_usage(
    ledger: Ledger, user_id: str, since_ms: int = 0, until_ms: int = 0, limit: int = 100, before_id: int | None = None
) -> tuple[list[UsageRow], int | None]:
    """Usage rows newest first (every user's when `user_id` is empty); the cursor of the next page."""
    limit = max(1, min(limit or 100, 1000))
    where = _window(user_id, since_ms, until_ms)
    if before_id is not None:
        where.append(usage.c.id < before_id)
    async with ledger.engine.connect() as conn:
        rows = (await conn.execute(select(usage).where(*where).order_by(usage.c.id.desc()).limit(limit + 1))).all()
    page = [row_of(r) for r in rows[:limit]]
    return page, (page[-1].id if len(rows) > limit else None)


async def summary(
    ledger: Ledger, user_id: str, group_by: str, since_ms: int = 0, until_ms: int = 0
) -> list[UsageGroup]:
    """Requests, tokens and cost grouped by day (UTC), model, provider or user."""
    group_by = group_by or "day"
    if group_by not in GROUPS:
        raise DomainError("invalid_request", f"group_by must be one of {', '.join(GROUPS)}", "group_by")
    # Days are whole UTC days of the millisecond timestamps, computed the same way on both databases.
    columns = {"model": usage.c.model, "provider": usage.c.provider, "user": usage.c.user_id}
    key: ColumnElement[Any] = (usage.c.created_at // 86_400_000) if group_by == "day" else columns[group_by]
    query = (
        select(
            key.label("key"),
            func.count().label("requests"),
            func.coalesce(func.sum(usage.c.prompt_tokens), 0).label("prompt_tokens"),
            func.coalesce(func.sum(usage.c.completion_tokens), 0).label("completion_tokens"),
            func.coalesce(func.sum(usage.c.cost_micro), 0).label("cost_micro"),
        )
        .where(*_window(user_id, since_ms, until_ms))
        .group_by(key)
        .order_by(key)
    )
    async with ledger.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        UsageGroup(
            key=_day(int(r.key)) if group_by == "day" else str(r.key),
            requests=int(r.requests),
            prompt_tokens=int(r.prompt_tokens),
            completion_tokens=int(r.completion_tokens),
            cost_micro=int(r.cost_micro),
        )
        for r in rows
    ]


def _day(days_since_epoch: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=days_since_epoch)).isoformat()
