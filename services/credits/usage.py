"""The usage log: one row per attempt of a request (settled, released, expired or free/BYOK), and its reports.

Rows written by Settle and Release carry their hold's id and are made unique by the hold's resolve key;
RecordUsage rows (free models, BYOK) carry their own idempotency key and never touch the balance.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields, replace
from typing import Any

from sqlalchemy import ColumnElement, Row, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.credits import outbox
from services.credits.ledger import Ledger, ensure_account, key_reused, require_key, require_user
from services.credits.schema import now_ms, usage
from services.credits.settings import to_credits
from services.runtime import attribution
from services.runtime.errors import DomainError

STATUSES = ("ok", "error", "cancelled", "partial", "expired")
GROUPS = ("day", "model", "provider", "user", "key", "end_user")
TAG_GROUP = "tag:"  # group_by=tag:<name>: by the value of one tag ("" for rows without it)


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
    cache_read_tokens: int = 0  # of prompt_tokens
    cache_write_tokens: int = 0  # of prompt_tokens
    reasoning_tokens: int = 0  # of completion_tokens
    end_user: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def validated(self) -> UsageEntry:
        counts = (self.prompt_tokens, self.completion_tokens, self.cost_micro, *self.parts)
        if min(counts) < 0:
            raise DomainError("invalid_request", "token counts and cost must not be negative", "usage")
        if self.cache_read_tokens + self.cache_write_tokens > self.prompt_tokens:
            raise DomainError("invalid_request", "cached tokens are part of prompt_tokens", "usage.cache_read_tokens")
        if self.reasoning_tokens > self.completion_tokens:
            raise DomainError(
                "invalid_request", "reasoning tokens are part of completion_tokens", "usage.reasoning_tokens"
            )
        attribution.end_user(self.end_user or None)
        attribution.tags(self.tags, "usage.tags")
        status = self.status or "ok"
        if status not in STATUSES:
            raise DomainError("invalid_request", f"usage status must be one of {', '.join(STATUSES)}", "usage.status")
        return replace(self, status=status)

    @property
    def parts(self) -> tuple[int, int, int]:
        return self.cache_read_tokens, self.cache_write_tokens, self.reasoning_tokens


@dataclass(frozen=True)
class UsageFilter:
    """What every row of a listing or summary must match; empty fields match anything."""

    model: str = ""
    api_key_id: str = ""
    end_user: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    users: tuple[str, ...] = ()

    def checked(self) -> UsageFilter:
        attribution.tags(self.tags, "tag")
        return self


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
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


_ENTRY_FIELDS = tuple(f.name for f in fields(UsageEntry))


def require_free_cache_hit(entry: UsageEntry) -> None:
    """What the gateway may log itself: a response it served from its cache, free. Everything else is the router's."""
    if not entry.cache_hit or entry.cost_micro or entry.prompt_tokens or entry.completion_tokens:
        raise DomainError("permission_denied", "the gateway may record only free cache hits", "usage")


def billable(entry: UsageEntry) -> bool:
    return entry.cost_micro > 0 and not entry.byok


# Built once (see `holds`): its cache key and compiled form are reused; the values come as parameters.
_INSERT_USAGE = usage.insert().returning(usage.c.id)


async def insert_usage(
    conn: AsyncConnection, entry: UsageEntry, *, hold_id: str | None, idempotency_key: str | None, now: int
) -> int:
    values: dict[str, Any] = {name: getattr(entry, name) for name in _ENTRY_FIELDS}
    values["decision"] = entry.decision or None
    values["tags"] = entry.tags or None
    values |= {"hold_id": hold_id, "idempotency_key": idempotency_key, "created_at": now}
    result = await conn.execute(_INSERT_USAGE, values)
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
    conn: AsyncConnection, ledger: Ledger, usage_id: int, entry: UsageEntry, hold_id: str, now: int, payer: str
) -> None:
    """Queue the usage event of a billable row. The customer billed is the payer (a team pool's "team:<id>"
    when the team pays); the user who asked is then kept as the `user_id` property."""
    if billable(entry):
        properties = _properties(entry)
        if payer != entry.user_id:
            properties["user_id"] = entry.user_id
        await outbox.enqueue_usage(
            conn, usage_id, entry.request_id, hold_id, payer, ledger.policy.billing_code, properties, now
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
        **{name: getattr(row, name) for name in _ENTRY_FIELDS if name not in ("decision", "tags")},
        decision=row.decision or b"",
        tags=dict(row.tags or {}),
    )
    return UsageRow(id=int(row.id), entry=entry, hold_id=row.hold_id or "", created_at=int(row.created_at))


def _window(user_id: str, since_ms: int, until_ms: int, only: UsageFilter | None = None) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if user_id:
        where.append(usage.c.user_id == user_id)
    if since_ms:
        where.append(usage.c.created_at >= since_ms)
    if until_ms:
        where.append(usage.c.created_at < until_ms)
    if only is not None:
        only.checked()
        if only.model:
            where.append(usage.c.model == only.model)
        if only.api_key_id:
            where.append(usage.c.api_key_id == only.api_key_id)
        if only.end_user:
            where.append(usage.c.end_user == only.end_user)
        if only.users:
            where.append(usage.c.user_id.in_(only.users))
        where.extend(_tag(name) == value for name, value in sorted(only.tags.items()))
    return where


def _tag(name: str) -> ColumnElement[Any]:
    """The value of tag `name` of a row (NULL without it); `name` is a checked tag name."""
    value: ColumnElement[Any] = usage.c.tags[name].as_string()
    return value


async def list_usage(
    ledger: Ledger,
    user_id: str,
    since_ms: int = 0,
    until_ms: int = 0,
    limit: int = 100,
    before_id: int | None = None,
    only: UsageFilter | None = None,
) -> tuple[list[UsageRow], int | None]:
    """Usage rows newest first (every user's when `user_id` is empty); the cursor of the next page."""
    limit = max(1, min(limit or 100, 1000))
    where = _window(user_id, since_ms, until_ms, only)
    if before_id is not None:
        where.append(usage.c.id < before_id)
    async with ledger.engine.connect() as conn:
        rows = (await conn.execute(select(usage).where(*where).order_by(usage.c.id.desc()).limit(limit + 1))).all()
    page = [row_of(r) for r in rows[:limit]]
    return page, (page[-1].id if len(rows) > limit else None)


async def summary(
    ledger: Ledger, user_id: str, group_by: str, since_ms: int = 0, until_ms: int = 0, only: UsageFilter | None = None
) -> list[UsageGroup]:
    """Requests, tokens and cost grouped by day (UTC), model, provider, user, API key, end user or one tag."""
    group_by = group_by or "day"
    columns: dict[str, ColumnElement[Any]] = {
        "model": usage.c.model,
        "provider": usage.c.provider,
        "user": usage.c.user_id,
        "key": usage.c.api_key_id,
        "end_user": usage.c.end_user,
        # Days are whole UTC days of the millisecond timestamps, computed the same way on both databases.
        "day": usage.c.created_at // 86_400_000,
    }
    if group_by.startswith(TAG_GROUP):
        name = group_by[len(TAG_GROUP) :]
        if not attribution.TAG_NAME.fullmatch(name):
            raise DomainError("invalid_request", "group_by tag:<name> needs a valid tag name", "group_by")
        key: ColumnElement[Any] = func.coalesce(_tag(name), "")
    elif group_by in columns:
        key = columns[group_by]
    else:
        choices = ", ".join((*GROUPS, TAG_GROUP + "<name>"))
        raise DomainError("invalid_request", f"group_by must be one of {choices}", "group_by")
    # Grouped over a subquery: PostgreSQL would not see two bound tag names as the same GROUP BY expression.
    rows_of = (
        select(
            key.label("key"),
            usage.c.prompt_tokens,
            usage.c.completion_tokens,
            usage.c.cost_micro,
            usage.c.cache_read_tokens,
            usage.c.cache_write_tokens,
            usage.c.reasoning_tokens,
        )
        .where(*_window(user_id, since_ms, until_ms, only))
        .subquery()
    )
    counted = ("prompt_tokens", "completion_tokens", "cost_micro", *_PART_COLUMNS)
    query = (
        select(
            rows_of.c.key,
            func.count().label("requests"),
            *(func.coalesce(func.sum(rows_of.c[name]), 0).label(name) for name in counted),
        )
        .group_by(rows_of.c.key)
        .order_by(rows_of.c.key)
    )
    async with ledger.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        UsageGroup(
            key=_day(int(r.key)) if group_by == "day" else str(r.key),
            requests=int(r.requests),
            **{name: int(getattr(r, name)) for name in counted},
        )
        for r in rows
    ]


_PART_COLUMNS = ("cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def _day(days_since_epoch: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=days_since_epoch)).isoformat()
