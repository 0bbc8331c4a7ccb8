"""Two-phase holds: reserve → settle | release | expire, each hold resolved exactly once.

`reserve` moves the worst-case estimate into the account's pending total with one guarded update
(`available >= amount`); `settle` charges the actual cost, `release` and the sweeper's `expire_due`
give the hold back. The hold's own transition (`UPDATE holds … WHERE status = 'pending'`) is the
once-only gate: of two concurrent resolutions exactly one matches the row. A request that really
ran is never dropped: settling above the hold, or after the sweeper expired it, charges what is
available and writes the remainder as an explicit `overdraft` journal row.

On PostgreSQL each of reserve, settle and release is one call of its database function
(`procedures`), which does what the Python path below does in one round trip; SQLite runs the
Python path. Both answer repeats and refusals through the same helpers (`_reserved_before`,
`_settled_before`, `_released_before`), so their errors are the same.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any

import orjson
from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.credits import budgets
from services.credits.ledger import (
    POOL_PREFIX,
    Balance,
    Ledger,
    balance_of,
    balance_of_record,
    ensure_account,
    insufficient,
    key_reused,
    note_low_balance,
    read_balance,
    require_key,
    require_user,
)
from services.credits.procedures import Budgeted, KeyConflict, Refused
from services.credits.schema import accounts, holds, journal
from services.credits.usage import UsageEntry, enqueue_billing, insert_usage
from services.runtime.db import unreachable
from services.runtime.errors import DomainError

log = logging.getLogger("tollgate.credits.holds")

TEAM_PREFIX = POOL_PREFIX


# The SQLite path's statements, built once: SQLAlchemy then reuses their cache keys and compiled forms, where a
# statement built per call (`.values(x=1)`) costs more Python than SQLite takes to run it. Parameters are named
# `p_*` (a SET column's own name is reserved for the INSERT/UPDATE's values).
_INSERT_HOLD = holds.insert()
_INSERT_JOURNAL = journal.insert()
_TAKE = (
    update(accounts)
    .where(
        accounts.c.user_id == bindparam("p_user"),
        accounts.c.balance_micro - accounts.c.pending_micro >= bindparam("p_amount"),
    )
    .values(pending_micro=accounts.c.pending_micro + bindparam("p_amount"), updated_at=bindparam("p_now"))
    .returning(*accounts.c)
)
_RESOLVE = (
    update(holds)
    .where(holds.c.hold_id == bindparam("p_hold"), holds.c.status == bindparam("p_from"))
    .values(
        status=bindparam("p_status"),
        resolve_key=bindparam("p_key"),
        cost_micro=bindparam("p_cost"),
        resolved_at=bindparam("p_now"),
    )
    .returning(holds.c.user_id, holds.c.owner_id, holds.c.amount_micro, holds.c.request_id)
)
_SETTLE_ACCOUNT = (
    update(accounts)
    .where(accounts.c.user_id == bindparam("p_user"))
    .values(
        balance_micro=accounts.c.balance_micro - bindparam("p_charged"),
        pending_micro=accounts.c.pending_micro - bindparam("p_held"),
        overdraft_micro=accounts.c.overdraft_micro + bindparam("p_overdraft"),
        updated_at=bindparam("p_now"),
    )
    .returning(*accounts.c)
)


@dataclass(frozen=True)
class Settlement:
    charged_micro: int
    overdraft_micro: int
    balance: Balance


async def reserve(
    ledger: Ledger,
    user_id: str,
    amount_micro: int,
    idempotency_key: str,
    request_id: str = "",
    ttl_seconds: int = 0,
    *,
    account_id: str = "",
    key_id: str = "",
    team_id: str = "",
) -> tuple[str, Balance]:
    """Hold `amount_micro` (the worst case) of the payer's available credits and of every budget of the
    request's key, user and team; refuses when the balance does not cover it or a hard limit would be passed.

    The payer is `account_id`: the user itself when empty, or its team's pool ("team:<team_id>").
    """
    require_user(user_id)
    require_key(idempotency_key)
    if amount_micro < 0:
        raise DomainError("invalid_request", "amount must not be negative", "amount_micro")
    payer = payer_of(user_id, account_id, team_id)
    keys = budgets.scope_keys(user_id, key_id[:200], team_id[:200])
    policy = ledger.policy
    ttl = min(ttl_seconds if ttl_seconds > 0 else policy.hold_ttl_seconds, policy.max_hold_ttl_seconds)
    request_id = request_id[:200]
    now = ledger.now()
    if ledger.procedures is not None and payer == user_id:
        hold_id = "h_" + uuid.uuid4().hex
        try:
            row = await ledger.procedures.reserve(
                hold_id,
                user_id,
                amount_micro,
                idempotency_key,
                request_id,
                now,
                now + ttl * 1000,
                ledger.opening,
                scopes=keys if amount_micro > 0 else None,
            )
        except KeyConflict as exc:
            return await _reserved_before(ledger, user_id, amount_micro, idempotency_key, request_id, exc)
        except Refused as refused:
            raise insufficient(refused.available, amount_micro) from None
        except Budgeted:
            pass
        else:
            return hold_id, balance_of_record(row)
    # The Python path: SQLite always; on PostgreSQL a request with budgets or paid by another account, whose
    # hold id tells settle and release to take this path too.
    hold_id = ("hb_" if ledger.procedures is not None else "h_") + uuid.uuid4().hex
    try:
        async with ledger.engine.begin() as conn:
            await conn.execute(
                _INSERT_HOLD,
                {
                    "hold_id": hold_id,
                    "user_id": payer,
                    "owner_id": user_id if payer != user_id else None,
                    "amount_micro": amount_micro,
                    "status": "pending",
                    "request_id": request_id,
                    "reserve_key": idempotency_key,
                    "created_at": now,
                    "expires_at": now + ttl * 1000,
                },
            )
            row = await _take(conn, payer, amount_micro, now)
            if row is None:
                # Whoever opens the account (this call or a concurrent first request), the retry sees it.
                await ensure_account(conn, policy, payer)
                row = await _take(conn, payer, amount_micro, now)
            if row is None:
                raise insufficient((await read_balance(conn, payer)).available_micro, amount_micro)
            await budgets.hold(conn, hold_id, keys, amount_micro, now)
            await note_low_balance(conn, row, now)
            return hold_id, balance_of(row)
    except IntegrityError as exc:
        return await _reserved_before(ledger, payer, amount_micro, idempotency_key, request_id, exc)
    except budgets.Exceeded as refused:
        async with ledger.engine.begin() as conn:
            await budgets.note_refusal(conn, refused.budget.budget_id, now)
        raise refused.error from None


def payer_of(user_id: str, account_id: str, team_id: str) -> str:
    """The account a hold takes its money from: the user's own, or the pool of the user's team."""
    if not account_id or account_id == user_id:
        return user_id
    if not team_id or account_id != TEAM_PREFIX + team_id or len(account_id) > 200:
        message = "account_id must be empty, the user, or team:<team_id> of the request's team"
        raise DomainError("invalid_request", message, "account_id")
    return account_id


def python_path(ledger: Ledger, hold_id: str) -> bool:
    """Whether this hold's settle and release run in Python (always on SQLite; budgeted or pooled holds)."""
    return ledger.procedures is None or hold_id.startswith("hb_")


async def _reserved_before(
    ledger: Ledger, user_id: str, amount_micro: int, key: str, request_id: str, exc: Exception
) -> tuple[str, Balance]:
    """The key was taken: the first hold when this is its repeat while it is pending, else an error.

    A hold that was settled, released or expired is never handed back: its repeat would let a caller
    spend without a new hold.
    """
    async with ledger.engine.connect() as conn:
        prior = (await conn.execute(select(holds).where(holds.c.reserve_key == key))).first()
        if prior is None:
            raise exc
        if (prior.user_id, prior.amount_micro, prior.request_id) != (user_id, amount_micro, request_id):
            raise key_reused(key) from None
        if prior.status != "pending":
            raise DomainError("conflict", f"the hold for this reservation key is already {prior.status}")
        return prior.hold_id, await read_balance(conn, user_id)


async def _take(conn: AsyncConnection, user_id: str, amount: int, now: int) -> Row[Any] | None:
    return (await conn.execute(_TAKE, {"p_user": user_id, "p_amount": amount, "p_now": now})).first()


async def _resolve(
    conn: AsyncConnection, hold_id: str, status: str, key: str, cost: int, now: int, from_status: str
) -> Row[Any] | None:
    params = {"p_hold": hold_id, "p_from": from_status, "p_status": status, "p_key": key, "p_cost": cost, "p_now": now}
    return (await conn.execute(_RESOLVE, params)).first()


def _checked(given: UsageEntry | None, default_status: str) -> UsageEntry | None:
    """The caller's usage record, validated before any row is touched (its status defaulted)."""
    if given is None:
        return None
    return replace(given, status=given.status or default_status).validated()


def _usage_for(hold: Row[Any], given: UsageEntry | None, cost: int, default_status: str) -> UsageEntry:
    """The hold's usage row: the caller's record, with the hold's user and the authoritative cost.

    A pooled hold's row names the user who asked (`owner_id`), not the team account that paid.
    """
    user = hold.owner_id or hold.user_id
    entry = given or UsageEntry(request_id=hold.request_id, user_id=user, status=default_status)
    return replace(entry, user_id=user, cost_micro=cost, request_id=entry.request_id or hold.request_id)


def _usage_args(given: UsageEntry | None, default_status: str) -> tuple[Any, ...]:
    """The usage columns a procedure takes (an empty request id means the hold's own)."""
    e = given or UsageEntry(request_id="", user_id="", status=default_status)
    return (
        e.request_id,
        e.api_key_id,
        e.model,
        e.provider,
        e.deployment,
        e.power_level,
        e.route,
        e.prompt_tokens,
        e.completion_tokens,
        float(e.latency_ms),
        e.status,
        e.byok,
        e.cache_hit,
        e.fallback_count,
        e.usage_estimated,
        e.decision or None,
        e.cache_read_tokens,
        e.cache_write_tokens,
        e.reasoning_tokens,
        e.end_user,
        orjson.dumps(e.tags).decode() if e.tags else None,
    )


async def settle(
    ledger: Ledger, hold_id: str, amount_micro: int, idempotency_key: str, entry: UsageEntry | None = None
) -> Settlement:
    """Charge the actual cost of a held request; beyond the hold, charge what is available and record the rest."""
    require_key(idempotency_key)
    if amount_micro < 0:
        raise DomainError("invalid_request", "amount must not be negative", "amount_micro")
    entry = _checked(entry, "ok")
    now = ledger.now()
    if not python_path(ledger, hold_id):
        assert ledger.procedures is not None
        try:
            row = await ledger.procedures.settle(
                hold_id, amount_micro, idempotency_key, now, ledger.policy.billing_code, _usage_args(entry, "ok")
            )
        except KeyConflict as exc:
            return await _settled_before(ledger, hold_id, amount_micro, idempotency_key, key_taken=True, exc=exc)
        if not row["resolved"]:
            return await _settled_before(ledger, hold_id, amount_micro, idempotency_key, key_taken=False)
        return Settlement(row["charged_micro"], row["shortfall_micro"], balance_of_record(row))
    try:
        async with ledger.engine.begin() as conn:
            hold = await _resolve(conn, hold_id, "settled", idempotency_key, amount_micro, now, "pending")
            held = 0
            was = "pending"
            if hold is not None:
                held = int(hold.amount_micro)
            else:
                was = "expired"
                # The sweeper expired it (its money is already back): the request still ran, so it is charged.
                hold = await _resolve(conn, hold_id, "settled", idempotency_key, amount_micro, now, "expired")
            if hold is None:
                raise _Unresolvable
            user_id = hold.user_id
            if amount_micro <= held:
                charged = amount_micro
            else:
                account = (
                    await conn.execute(
                        select(accounts.c.balance_micro, accounts.c.pending_micro)
                        .where(accounts.c.user_id == user_id)
                        .with_for_update()
                    )
                ).one()
                charged = min(amount_micro, int(account.balance_micro) - int(account.pending_micro) + held)
            overdraft = amount_micro - charged
            await conn.execute(
                _INSERT_JOURNAL,
                {
                    "user_id": user_id,
                    "kind": "settle",
                    "amount_micro": -charged,
                    "overdraft_micro": 0,
                    "hold_id": hold_id,
                    "request_id": hold.request_id,
                    "idempotency_key": idempotency_key,
                    "reason": "",
                    "actor": "",
                    "created_at": now,
                },
            )
            if overdraft:
                await conn.execute(
                    journal.insert().values(
                        user_id=user_id,
                        kind="overdraft",
                        amount_micro=0,
                        overdraft_micro=overdraft,
                        hold_id=hold_id,
                        request_id=hold.request_id,
                        idempotency_key=f"{idempotency_key}:overdraft",
                        reason="cost beyond the available balance",
                        actor="",
                        created_at=now,
                    )
                )
            used = _usage_for(hold, entry, amount_micro, "ok")
            usage_id = await insert_usage(conn, used, hold_id=hold_id, idempotency_key=None, now=now)
            await enqueue_billing(conn, ledger, usage_id, used, hold_id, now, str(hold.user_id))
            params = {"p_user": user_id, "p_charged": charged, "p_held": held, "p_overdraft": overdraft, "p_now": now}
            row = (await conn.execute(_SETTLE_ACCOUNT, params)).one()
            await budgets.resolve(conn, hold_id, "settled", amount_micro, now, was)
            await note_low_balance(conn, row, now)
            return Settlement(charged, overdraft, balance_of(row))
    except _Unresolvable:
        return await _settled_before(ledger, hold_id, amount_micro, idempotency_key, key_taken=False)
    except IntegrityError as exc:
        return await _settled_before(ledger, hold_id, amount_micro, idempotency_key, key_taken=True, exc=exc)


class _Unresolvable(Exception):
    """The hold was not pending (or expired): find out what happened to it."""


async def _settled_before(
    ledger: Ledger, hold_id: str, amount_micro: int, key: str, *, key_taken: bool, exc: Exception | None = None
) -> Settlement:
    """Why the hold did not settle: the first settle's result when this is its repeat, else the error."""
    async with ledger.engine.connect() as conn:
        hold = (await conn.execute(select(holds).where(holds.c.hold_id == hold_id))).first()
        if hold is None:
            by_key = (await conn.execute(select(holds.c.hold_id).where(holds.c.resolve_key == key))).first()
            if by_key is not None:
                raise key_reused(key) from None
            raise DomainError("not_found", f"No hold {hold_id!r}", "hold_id") from None
        if hold.resolve_key == key:
            if hold.status != "settled" or int(hold.cost_micro) != amount_micro:
                raise key_reused(key) from None
            rows = (
                await conn.execute(
                    select(journal.c.kind, journal.c.amount_micro, journal.c.overdraft_micro).where(
                        journal.c.idempotency_key.in_((key, f"{key}:overdraft"))
                    )
                )
            ).all()
            charged = -sum(int(r.amount_micro) for r in rows if r.kind == "settle")
            overdraft = sum(int(r.overdraft_micro) for r in rows if r.kind == "overdraft")
            return Settlement(charged, overdraft, await read_balance(conn, hold.user_id))
        if key_taken and hold.status == "pending":
            raise key_reused(key) from exc
        raise DomainError("conflict", f"Hold {hold_id!r} is already {hold.status}", "hold_id") from None


async def release(ledger: Ledger, hold_id: str, idempotency_key: str, entry: UsageEntry | None = None) -> Balance:
    """Give a hold back without charge (the attempt failed or was cancelled); records its usage row."""
    require_key(idempotency_key)
    entry = _checked(entry, "error")
    now = ledger.now()
    if not python_path(ledger, hold_id):
        assert ledger.procedures is not None
        try:
            row = await ledger.procedures.release(hold_id, idempotency_key, now, _usage_args(entry, "error"))
        except KeyConflict as exc:
            return await _released_before(ledger, hold_id, idempotency_key, key_taken=True, exc=exc)
        if not row["resolved"]:
            return await _released_before(ledger, hold_id, idempotency_key, key_taken=False)
        return balance_of_record(row)
    try:
        async with ledger.engine.begin() as conn:
            hold = await _resolve(conn, hold_id, "released", idempotency_key, 0, now, "pending")
            if hold is None:
                raise _Unresolvable
            used = _usage_for(hold, entry, 0, "error")
            await insert_usage(conn, used, hold_id=hold_id, idempotency_key=None, now=now)
            row = (
                await conn.execute(
                    update(accounts)
                    .where(accounts.c.user_id == hold.user_id)
                    .values(pending_micro=accounts.c.pending_micro - int(hold.amount_micro), updated_at=now)
                    .returning(*accounts.c)
                )
            ).one()
            await budgets.resolve(conn, hold_id, "released", 0, now, "pending")
            return balance_of(row)
    except _Unresolvable:
        return await _released_before(ledger, hold_id, idempotency_key, key_taken=False)
    except IntegrityError as exc:
        return await _released_before(ledger, hold_id, idempotency_key, key_taken=True, exc=exc)


async def _released_before(
    ledger: Ledger, hold_id: str, key: str, *, key_taken: bool, exc: Exception | None = None
) -> Balance:
    """Why the hold did not release: already released or expired (its money is back), or the error."""
    async with ledger.engine.connect() as conn:
        hold = (await conn.execute(select(holds).where(holds.c.hold_id == hold_id))).first()
        if hold is None:
            raise DomainError("not_found", f"No hold {hold_id!r}", "hold_id") from None
        if hold.resolve_key == key and hold.status != "released":
            raise key_reused(key) from None
        if key_taken and hold.status == "pending":
            raise key_reused(key) from exc
        if hold.status == "settled":
            raise DomainError("conflict", f"Hold {hold_id!r} is already settled", "hold_id") from None
        # Released (by this key or another) or expired: its money is back already.
        return await read_balance(conn, hold.user_id)


async def expire_due(ledger: Ledger, batch: int = 500, now: int | None = None) -> int:
    """Expire up to `batch` pending holds past their expiry and return their money; the count expired.

    Safe with several replicas: each claims different rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL;
    SQLite's single writer serializes sweepers).
    """
    now = ledger.now() if now is None else now
    due = (
        select(holds.c.hold_id)
        .where(holds.c.status == "pending", holds.c.expires_at <= now)
        .order_by(holds.c.expires_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    async with ledger.engine.begin() as conn:
        expired = (
            await conn.execute(
                update(holds)
                .where(holds.c.hold_id.in_(due), holds.c.status == "pending")
                .values(status="expired", resolved_at=now)
                .returning(holds.c.hold_id, holds.c.user_id, holds.c.owner_id, holds.c.amount_micro, holds.c.request_id)
            )
        ).all()
        if not expired:
            return 0
        returned: dict[str, int] = defaultdict(int)
        for hold in expired:
            returned[hold.user_id] += int(hold.amount_micro)
            entry = UsageEntry(request_id=hold.request_id, user_id=hold.owner_id or hold.user_id, status="expired")
            await insert_usage(conn, entry, hold_id=hold.hold_id, idempotency_key=None, now=now)
        for user_id in sorted(returned):  # a fixed lock order: two sweepers never deadlock
            await conn.execute(
                update(accounts)
                .where(accounts.c.user_id == user_id)
                .values(pending_micro=accounts.c.pending_micro - returned[user_id], updated_at=now)
            )
        await budgets.expire(conn, sorted(h.hold_id for h in expired), now)
    log.info("expired %d holds", len(expired))
    return len(expired)


async def sweep(ledger: Ledger, interval: float, batch: int) -> None:
    """The background sweeper: expire due holds every `interval` seconds, forever."""
    while True:
        try:
            while await expire_due(ledger, batch) == batch:
                pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not unreachable(exc):  # an outage is logged once, by the runtime
                log.warning("hold sweep failed: %s", exc)
        await asyncio.sleep(interval)
