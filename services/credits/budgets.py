"""Budgets: a spending limit per period on a key, a user or a team, kept by the same holds as the balance.

A reserve counts against every budget of its key, user and team for the current period: in the hold's
transaction each budget row takes the amount with one guarded update (`spent + reserved + amount <=
limit`), so concurrent reserves never pass a hard limit, and a refusal rolls the whole reserve back.
Settling moves the hold's amount from reserved to spent (the actual cost, beyond the limit when the
request cost more: recorded, never dropped); releasing and expiring give it back. Each hold remembers the
period it counted in (`budget_holds`): a hold resolved after its period ended changes nothing in the new
one. Periods reset lazily, at the first reserve past their end, at midnight of the budget's time zone
(weeks start on Monday).

Spend alerts: when a settle takes `spent` past a threshold (percent of the hard limit, or of the soft
limit when there is none), one `budget_alert` event per threshold and period goes to the outbox; a hard
limit refusing a request counts as reaching 100 %.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from sqlalchemy import Row, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.credits.ledger import Ledger, insert_ignoring_conflicts
from services.credits.schema import billing_events, budget_holds, budgets
from services.credits.settings import to_credits
from services.runtime.errors import DomainError

SCOPES = ("key", "user", "team")
PERIODS = ("daily", "weekly", "monthly")
DEFAULT_ALERTS = (50, 80, 100)
MAX_ALERTS = 10
MAX_MICRO = 2**63 - 1


@dataclass(frozen=True)
class Budget:
    budget_id: str
    scope: str
    scope_id: str
    period: str
    timezone: str
    limit_micro: int
    soft_limit_micro: int = 0
    alert_percents: tuple[int, ...] = DEFAULT_ALERTS
    spent_micro: int = 0
    reserved_micro: int = 0
    period_start: int = 0
    period_end: int = 0
    actor: str = ""
    alerted: tuple[int, ...] = field(default=(), compare=False)

    @property
    def alert_base(self) -> int:
        return self.limit_micro or self.soft_limit_micro

    def named(self) -> str:
        return f"the {self.period} budget of {self.scope} {self.scope_id!r} ({self.budget_id})"


def zone(name: str) -> ZoneInfo:
    if not name:
        raise DomainError("invalid_request", "timezone is required (an IANA name such as Europe/Paris)", "timezone")
    try:
        if len(name) > 64:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        message = f"timezone {name[:64]!r} is not a known IANA time zone"
        raise DomainError("invalid_request", message, "timezone") from None


def period_bounds(period: str, timezone: str, now_ms: int) -> tuple[int, int]:
    """The current period (start, end) in unix ms: midnights of `timezone`; weeks start on Monday."""
    tz = zone(timezone)
    local = datetime.fromtimestamp(now_ms / 1000, tz)
    day = local.date()
    if period == "daily":
        start, end = day, day + timedelta(days=1)
    elif period == "weekly":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif period == "monthly":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        raise DomainError("invalid_request", f"period must be one of {', '.join(PERIODS)}", "period")

    def midnight(d: Any) -> int:
        return int(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp() * 1000)

    return midnight(start), midnight(end)


def validated(b: Budget) -> Budget:
    """The budget as given, checked field by field (the first bad field is named), alerts defaulted."""
    if b.scope not in SCOPES:
        raise DomainError("invalid_request", f"scope must be one of {', '.join(SCOPES)}", "scope")
    if not b.scope_id or len(b.scope_id) > 200:
        raise DomainError("invalid_request", "scope_id is required (at most 200 characters)", "scope_id")
    if b.period not in PERIODS:
        raise DomainError("invalid_request", f"period must be one of {', '.join(PERIODS)}", "period")
    zone(b.timezone)
    if not 0 <= b.limit_micro <= MAX_MICRO:
        raise DomainError("invalid_request", "limit must not be negative", "limit")
    if not 0 <= b.soft_limit_micro <= MAX_MICRO:
        raise DomainError("invalid_request", "soft_limit must not be negative", "soft_limit")
    if b.limit_micro == 0 and b.soft_limit_micro == 0:
        raise DomainError("invalid_request", "a budget needs a limit (hard) or a soft_limit (alerts only)", "limit")
    percents = tuple(sorted(set(b.alert_percents))) or DEFAULT_ALERTS
    if len(percents) > MAX_ALERTS or any(not 1 <= p <= 1000 for p in percents):
        raise DomainError(
            "invalid_request", f"alert_percents must be at most {MAX_ALERTS} values from 1 to 1000", "alert_percents"
        )
    return Budget(
        budget_id=b.budget_id,
        scope=b.scope,
        scope_id=b.scope_id,
        period=b.period,
        timezone=b.timezone,
        limit_micro=b.limit_micro,
        soft_limit_micro=b.soft_limit_micro,
        alert_percents=percents,
        actor=b.actor[:200],
    )


def scope_keys(user_id: str, key_id: str, team_id: str) -> list[str]:
    """The budget scopes a request counts against."""
    keys = [f"user:{user_id}"]
    if key_id:
        keys.append(f"key:{key_id}")
    if team_id:
        keys.append(f"team:{team_id}")
    return keys


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(",") if p)


def _text(values: Iterable[int]) -> str:
    return ",".join(str(v) for v in sorted(set(values)))


def budget_of(row: Row[Any], now: int | None = None) -> Budget:
    """The row as a budget; with `now`, as it reads in the current period (a period that ended reads empty)."""
    spent, reserved, start, end, alerted = (
        int(row.spent_micro),
        int(row.reserved_micro),
        int(row.period_start),
        int(row.period_end),
        _ints(row.alerted),
    )
    if now is not None and now >= end:
        spent, reserved, alerted = 0, 0, ()
        start, end = period_bounds(row.period, row.timezone, now)
    return Budget(
        budget_id=row.budget_id,
        scope=row.scope,
        scope_id=row.scope_id,
        period=row.period,
        timezone=row.timezone,
        limit_micro=int(row.limit_micro),
        soft_limit_micro=int(row.soft_limit_micro),
        alert_percents=_ints(row.alert_percents),
        spent_micro=spent,
        reserved_micro=reserved,
        period_start=start,
        period_end=end,
        actor=row.actor,
        alerted=alerted,
    )


def exceeded(b: Budget, amount_micro: int) -> DomainError:
    resets = datetime.fromtimestamp(b.period_end / 1000, ZoneInfo(b.timezone)).isoformat()
    return DomainError(
        "budget_exceeded",
        f"Budget exceeded: {b.named()} has a limit of {to_credits(b.limit_micro)} credits, "
        f"{to_credits(b.spent_micro)} spent and {to_credits(b.reserved_micro)} reserved; this request may cost "
        f"up to {to_credits(amount_micro)} credits. It resets at {resets} ({b.timezone}).",
    )


# -- management


async def set_budget(conn: AsyncConnection, given: Budget, now: int) -> Budget:
    """Create the budget of (scope, scope_id, period), or replace its settings (its period's figures stay)."""
    b = validated(given)
    scope_key = f"{b.scope}:{b.scope_id}"
    settings = {
        "timezone": b.timezone,
        "limit_micro": b.limit_micro,
        "soft_limit_micro": b.soft_limit_micro,
        "alert_percents": _text(b.alert_percents),
        "actor": b.actor,
        "updated_at": now,
    }
    if b.budget_id:
        found = (await conn.execute(select(budgets).where(budgets.c.budget_id == b.budget_id))).first()
        if found is None:
            raise DomainError("not_found", f"No budget {b.budget_id!r}", "budget_id")
        if (found.scope, found.scope_id, found.period) != (b.scope, b.scope_id, b.period):
            raise DomainError("invalid_request", "a budget's scope, scope_id and period cannot change", "budget_id")
    else:
        found = (
            await conn.execute(select(budgets).where(budgets.c.scope_key == scope_key, budgets.c.period == b.period))
        ).first()
    if found is not None:
        start, end = period_bounds(b.period, b.timezone, now)
        if found.timezone != b.timezone and start != int(found.period_start):
            # A new time zone starts a new period, as a rollover does: the old one's holds no longer count.
            settings |= {"period_start": start, "period_end": end, "spent_micro": 0, "reserved_micro": 0, "alerted": ""}
        row = (
            await conn.execute(
                update(budgets).where(budgets.c.budget_id == found.budget_id).values(**settings).returning(*budgets.c)
            )
        ).one()
        return budget_of(row, now)
    start, end = period_bounds(b.period, b.timezone, now)
    try:
        row = (
            await conn.execute(
                budgets.insert()
                .values(
                    budget_id="bud_" + uuid.uuid4().hex[:24],
                    scope=b.scope,
                    scope_id=b.scope_id,
                    scope_key=scope_key,
                    period=b.period,
                    alerted="",
                    spent_micro=0,
                    reserved_micro=0,
                    period_start=start,
                    period_end=end,
                    created_at=now,
                    **settings,
                )
                .returning(*budgets.c)
            )
        ).one()
    except IntegrityError:
        raise DomainError("conflict", "a budget for this scope and period was just created; try again") from None
    return budget_of(row, now)


async def list_budgets(
    conn: AsyncConnection, now: int, scope: str = "", scope_id: str = "", budget_id: str = ""
) -> list[Budget]:
    if scope and scope not in SCOPES:
        raise DomainError("invalid_request", f"scope must be one of {', '.join(SCOPES)}", "scope")
    query = select(budgets)
    if budget_id:
        query = query.where(budgets.c.budget_id == budget_id)
    if scope:
        query = query.where(budgets.c.scope == scope)
    if scope_id:
        query = query.where(budgets.c.scope_id == scope_id)
    rows = (await conn.execute(query.order_by(budgets.c.scope, budgets.c.scope_id, budgets.c.period))).all()
    return [budget_of(r, now) for r in rows]


async def delete_budget(conn: AsyncConnection, budget_id: str) -> bool:
    """Delete the budget; its holds' links go with it (they no longer count against anything)."""
    if not budget_id:
        raise DomainError("invalid_request", "budget_id is required", "budget_id")
    gone = (await conn.execute(delete(budgets).where(budgets.c.budget_id == budget_id))).rowcount
    await conn.execute(delete(budget_holds).where(budget_holds.c.budget_id == budget_id))
    return bool(gone)


# -- the holds' side


async def hold(conn: AsyncConnection, hold_id: str, keys: Sequence[str], amount: int, now: int) -> int:
    """Count a new hold against every budget of `keys`; raises `budget_exceeded` naming the first one it passes.

    Budgets are taken in id order, so two reserves never wait on each other's rows in opposite orders.
    Returns how many budgets the hold counts against.
    """
    if amount <= 0:
        return 0
    rows = (
        await conn.execute(select(budgets).where(budgets.c.scope_key.in_(list(keys))).order_by(budgets.c.budget_id))
    ).all()
    for row in rows:
        start, end = period_bounds(row.period, row.timezone, now)
        if start > int(row.period_start):
            await conn.execute(
                update(budgets)
                .where(budgets.c.budget_id == row.budget_id, budgets.c.period_start < start)
                .values(spent_micro=0, reserved_micro=0, alerted="", period_start=start, period_end=end, updated_at=now)
            )
        guard = (budgets.c.limit_micro == 0) | (
            budgets.c.spent_micro + budgets.c.reserved_micro + amount <= budgets.c.limit_micro
        )
        taken = (
            await conn.execute(
                update(budgets)
                .where(budgets.c.budget_id == row.budget_id, guard)
                .values(reserved_micro=budgets.c.reserved_micro + amount, updated_at=now)
                .returning(budgets.c.period_start)
            )
        ).first()
        if taken is None:
            current = (await conn.execute(select(budgets).where(budgets.c.budget_id == row.budget_id))).one()
            raise Exceeded(budget_of(current), amount)
        await conn.execute(
            budget_holds.insert().values(
                hold_id=hold_id,
                budget_id=row.budget_id,
                period_start=int(taken.period_start),
                amount_micro=amount,
                status="pending",
                cost_micro=0,
            )
        )
    return len(rows)


class Exceeded(Exception):
    """A hard limit refused a reserve (raised inside its transaction; `error` is what the caller gets)."""

    def __init__(self, budget: Budget, amount: int) -> None:
        super().__init__(budget.budget_id)
        self.budget = budget
        self.error = exceeded(budget, amount)


async def resolve(conn: AsyncConnection, hold_id: str, status: str, cost: int, now: int, was: str) -> None:
    """Settle (`cost` to spent), release or expire the hold's share of each budget it counted against.

    `was` is the hold's status before: a hold the sweeper expired has already given its reservation back,
    so its late settle adds the cost alone.
    """
    links = (
        await conn.execute(
            select(budget_holds).where(budget_holds.c.hold_id == hold_id).order_by(budget_holds.c.budget_id)
        )
    ).all()
    for link in links:
        await conn.execute(
            update(budget_holds)
            .where(budget_holds.c.hold_id == hold_id, budget_holds.c.budget_id == link.budget_id)
            .values(status=status, cost_micro=cost if status == "settled" else 0)
        )
        back = int(link.amount_micro) if was == "pending" else 0
        spend = cost if status == "settled" else 0
        if not back and not spend:
            continue
        row = (
            await conn.execute(
                update(budgets)
                .where(budgets.c.budget_id == link.budget_id, budgets.c.period_start == int(link.period_start))
                .values(
                    reserved_micro=budgets.c.reserved_micro - back,
                    spent_micro=budgets.c.spent_micro + spend,
                    updated_at=now,
                )
                .returning(*budgets.c)
            )
        ).first()
        if row is not None and spend:
            await alert(conn, budget_of(row), int(row.spent_micro), now, "spent")


async def alert(conn: AsyncConnection, b: Budget, level: int, now: int, reason: str) -> list[int]:
    """Queue one `budget_alert` per threshold `level` reached that was not yet alerted in this period."""
    base = b.alert_base
    if base <= 0:
        return []
    due = [p for p in b.alert_percents if level * 100 >= p * base and p not in b.alerted]
    if not due:
        return []
    await conn.execute(
        update(budgets)
        .where(budgets.c.budget_id == b.budget_id, budgets.c.period_start == b.period_start)
        .values(alerted=_text((*b.alerted, *due)))
    )
    for percent in due:
        payload = {
            "type": "budget.threshold_reached",
            "budget_id": b.budget_id,
            "scope": b.scope,
            "scope_id": b.scope_id,
            "period": b.period,
            "timezone": b.timezone,
            "threshold_percent": percent,
            "limit_micro": b.limit_micro,
            "soft_limit_micro": b.soft_limit_micro,
            "spent_micro": b.spent_micro,
            "reserved_micro": b.reserved_micro,
            "period_start": b.period_start // 1000,
            "resets_at": b.period_end // 1000,
            "reason": reason,
            "timestamp": now // 1000,
        }
        await conn.execute(
            insert_ignoring_conflicts(conn, billing_events).values(
                kind="budget_alert",
                # One event per budget, period and threshold, whatever races: the key is unique.
                transaction_id=f"budget-alert:{b.budget_id}:{b.period_start}:{percent}",
                user_id=f"{b.scope}:{b.scope_id}",
                usage_id=None,
                payload=orjson.dumps(payload).decode(),
                created_at=now,
                next_attempt_at=now,
                attempts=0,
                state="pending",
                last_error="",
            )
        )
    return due


async def note_refusal(conn: AsyncConnection, budget_id: str, now: int) -> None:
    """A hard limit refused a request: its thresholds up to 100 % count as reached (each alerted once)."""
    row = (await conn.execute(select(budgets).where(budgets.c.budget_id == budget_id).with_for_update())).first()
    if row is None or int(row.period_end) <= now:
        return
    b = budget_of(row)
    if b.limit_micro > 0:
        await alert(conn, b, b.limit_micro, now, "limit_reached")


async def expire(conn: AsyncConnection, hold_ids: Sequence[str], now: int) -> None:
    """The sweeper expired these holds: their budget reservations come back (of the period they counted in)."""
    if not hold_ids:
        return
    links = (
        await conn.execute(
            select(budget_holds)
            .where(budget_holds.c.hold_id.in_(list(hold_ids)), budget_holds.c.status == "pending")
            .order_by(budget_holds.c.budget_id)
        )
    ).all()
    for link in links:
        await conn.execute(
            update(budget_holds)
            .where(budget_holds.c.hold_id == link.hold_id, budget_holds.c.budget_id == link.budget_id)
            .values(status="expired")
        )
        await conn.execute(
            update(budgets)
            .where(budgets.c.budget_id == link.budget_id, budgets.c.period_start == int(link.period_start))
            .values(reserved_micro=budgets.c.reserved_micro - int(link.amount_micro), updated_at=now)
        )


# -- what the servicer calls


async def save(ledger: Ledger, given: Budget) -> Budget:
    async with ledger.engine.begin() as conn:
        return await set_budget(conn, given, ledger.now())


async def find(ledger: Ledger, scope: str = "", scope_id: str = "", budget_id: str = "") -> list[Budget]:
    async with ledger.engine.connect() as conn:
        return await list_budgets(conn, ledger.now(), scope, scope_id, budget_id)


async def remove(ledger: Ledger, budget_id: str) -> bool:
    async with ledger.engine.begin() as conn:
        return await delete_budget(conn, budget_id)
