"""The SQL that moves money: accounts, the journal, balances, grants.

Every change of an account is one guarded statement — `UPDATE accounts … WHERE <enough money>
RETURNING …` — in the same transaction as the journal row or hold transition that explains it, so
concurrent callers can never overspend and the balance always equals the sum of the journal. On
PostgreSQL the row lock of that `UPDATE` serializes writers of one account; on SQLite every
transaction starts with `BEGIN IMMEDIATE` (see `services.runtime.db`).

Accounts are created on first use with the configured default grant, written as a `grant` row; a team's
pool ("team:<team_id>") opens empty and holds what admins grant it.

On PostgreSQL the money-moving operations (grant here, reserve / settle / release in `holds`) run as
one call of a database function each (`procedures`); this Python path is what SQLite runs, and the
functions repeat it statement for statement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, and_, case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Insert

from services.credits import outbox
from services.credits.procedures import KeyConflict, Procedures, Refused
from services.credits.schema import accounts, journal, now_ms
from services.credits.settings import to_credits
from services.runtime.errors import DomainError

GRANT_KINDS = ("grant", "top-up", "refund", "adjustment")
MAX_KEY = 300


@dataclass(frozen=True)
class Policy:
    """What new accounts start with and how long holds live."""

    default_grant_micro: int = 1000 * 1_000_000
    low_threshold_micro: int = 10 * 1_000_000
    default_tier: str = "standard"
    hold_ttl_seconds: int = 600
    max_hold_ttl_seconds: int = 3600
    billing_code: str = "llm_usage"


@dataclass(frozen=True)
class Balance:
    user_id: str
    balance_micro: int
    reserved_micro: int
    overdraft_micro: int
    low_threshold_micro: int
    tier: str

    @property
    def available_micro(self) -> int:
        return max(0, self.balance_micro - self.reserved_micro)

    @property
    def low(self) -> bool:
        return self.available_micro < self.low_threshold_micro


@dataclass(frozen=True)
class Transaction:
    id: int
    user_id: str
    kind: str
    amount_micro: int
    overdraft_micro: int
    hold_id: str
    request_id: str
    idempotency_key: str
    reason: str
    created_at: int


class Ledger:
    """The credits database and the account policy; the functions of `holds` and `usage` take one."""

    def __init__(
        self, engine: AsyncEngine, policy: Policy, *, procedures: bool = True, clock: Callable[[], int] = now_ms
    ) -> None:
        self.engine = engine
        self.policy = policy
        # Unix ms; tests move it to cross a budget period.
        self.now = clock
        # PostgreSQL moves money in one round trip per operation; `procedures=False` keeps the Python path.
        self.procedures = Procedures(engine) if procedures and engine.dialect.name == "postgresql" else None

    @property
    def opening(self) -> tuple[int, int, str]:
        """What a new account starts with: default grant, low-balance threshold, tier."""
        return self.policy.default_grant_micro, self.policy.low_threshold_micro, self.policy.default_tier

    def opening_for(self, account: str) -> tuple[int, int, str]:
        """`opening`, without the default grant for a team's pool."""
        grant, threshold, tier = self.opening
        return (0 if is_pool(account) else grant), threshold, tier

    async def close(self) -> None:
        """Close the procedures' connections (the engine belongs to the caller)."""
        if self.procedures is not None:
            await self.procedures.close()

    async def balance(self, user_id: str) -> Balance:
        require_user(user_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(accounts).where(accounts.c.user_id == user_id))).first()
        if row is not None:
            return balance_of(row)
        async with self.engine.begin() as conn:
            await ensure_account(conn, self.policy, user_id)
            return await read_balance(conn, user_id)

    async def grant(
        self,
        user_id: str,
        amount_micro: int,
        idempotency_key: str,
        kind: str = "top-up",
        reason: str = "",
        actor: str = "",
    ) -> tuple[int, Balance]:
        """Credit (or, for an `adjustment`, debit) an account; returns the journal row id and the balance."""
        require_user(user_id)
        require_key(idempotency_key)
        kind = kind or "top-up"
        if kind not in GRANT_KINDS:
            raise DomainError("invalid_request", f"kind must be one of {', '.join(GRANT_KINDS)}", "kind")
        if amount_micro == 0 or (amount_micro < 0 and kind != "adjustment"):
            raise DomainError("invalid_request", "amount must be positive (negative only for an adjustment)", "amount")
        reason, actor = reason[:500], actor[:200]
        now = now_ms()
        if self.procedures is not None:
            try:
                row = await self.procedures.grant(
                    user_id, amount_micro, idempotency_key, kind, reason, actor, now, self.opening_for(user_id)
                )
            except KeyConflict as exc:
                return await self._granted_before(user_id, kind, amount_micro, idempotency_key, exc)
            except Refused as refused:
                raise below_zero(amount_micro, refused.available) from None
            return int(row["transaction_id"]), balance_of_record(row)
        try:
            async with self.engine.begin() as conn:
                await ensure_account(conn, self.policy, user_id)
                tx_id = (
                    await conn.execute(
                        journal.insert()
                        .values(
                            user_id=user_id,
                            kind=kind,
                            amount_micro=amount_micro,
                            overdraft_micro=0,
                            idempotency_key=idempotency_key,
                            reason=reason,
                            actor=actor,
                            created_at=now,
                            request_id="",
                        )
                        .returning(journal.c.id)
                    )
                ).scalar_one()
                new_available = accounts.c.balance_micro + amount_micro - accounts.c.pending_micro
                row = (
                    await conn.execute(
                        update(accounts)
                        .where(accounts.c.user_id == user_id, new_available >= 0)
                        .values(
                            balance_micro=accounts.c.balance_micro + amount_micro,
                            low_alerted=case(
                                (new_available >= accounts.c.low_threshold_micro, False),
                                else_=accounts.c.low_alerted,
                            ),
                            updated_at=now,
                        )
                        .returning(*accounts.c)
                    )
                ).first()
                if row is None:
                    raise below_zero(amount_micro, (await read_balance(conn, user_id)).available_micro)
                await note_low_balance(conn, row, now)
                return int(tx_id), balance_of(row)
        except IntegrityError as exc:
            return await self._granted_before(user_id, kind, amount_micro, idempotency_key, exc)

    async def _granted_before(
        self, user_id: str, kind: str, amount_micro: int, key: str, exc: Exception
    ) -> tuple[int, Balance]:
        """The key was taken: the first grant's result when this is its repeat, else a reused-key error."""
        async with self.engine.connect() as conn:
            prior = (await conn.execute(select(journal).where(journal.c.idempotency_key == key))).first()
            if prior is None:
                raise exc
            if (prior.user_id, prior.kind, prior.amount_micro) != (user_id, kind, amount_micro):
                raise key_reused(key) from None
            return int(prior.id), await read_balance(conn, user_id)

    async def transactions(
        self, user_id: str, limit: int = 50, before_id: int | None = None
    ) -> tuple[list[Transaction], int | None]:
        """The account's journal, newest first; the second value is the cursor of the next page."""
        require_user(user_id)
        limit = max(1, min(limit or 50, 500))
        query = select(journal).where(journal.c.user_id == user_id)
        if before_id is not None:
            query = query.where(journal.c.id < before_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(journal.c.id.desc()).limit(limit + 1))).all()
        page = [transaction_of(r) for r in rows[:limit]]
        return page, (page[-1].id if len(rows) > limit else None)


POOL_PREFIX = "team:"


def is_pool(account: str) -> bool:
    """A team's shared pool (its account id is "team:<team_id>")."""
    return account.startswith(POOL_PREFIX)


def require_user(user_id: str) -> None:
    if not user_id or len(user_id) > 200:
        raise DomainError("invalid_request", "user_id is required (at most 200 characters)", "user_id")


def require_key(key: str) -> None:
    if not key or len(key) > MAX_KEY - 20:
        raise DomainError("invalid_request", "idempotency_key is required (at most 280 characters)", "idempotency_key")


def key_reused(key: str) -> DomainError:
    return DomainError(
        "idempotency_key_reused",
        f"Idempotency key {key!r} was already used with a different request",
        "idempotency_key",
    )


def below_zero(amount_micro: int, available_micro: int) -> DomainError:
    return DomainError(
        "invalid_request",
        f"This adjustment of {to_credits(amount_micro)} credits would take the available balance "
        f"({to_credits(available_micro)} credits) below zero",
        "amount",
    )


def insufficient(available_micro: int, estimate_micro: int) -> DomainError:
    return DomainError(
        "insufficient_credits",
        f"Insufficient credits: {to_credits(available_micro)} credits available, this request may cost up to "
        f"{to_credits(estimate_micro)} credits",
    )


def balance_of_record(row: Any) -> Balance:
    """The balance from a procedure's reply (an asyncpg record with the account's columns)."""
    return Balance(
        user_id=row["user_id"],
        balance_micro=row["balance_micro"],
        reserved_micro=row["pending_micro"],
        overdraft_micro=row["overdraft_micro"],
        low_threshold_micro=row["low_threshold_micro"],
        tier=row["tier"],
    )


def balance_of(row: Row[Any]) -> Balance:
    return Balance(
        user_id=row.user_id,
        balance_micro=int(row.balance_micro),
        reserved_micro=int(row.pending_micro),
        overdraft_micro=int(row.overdraft_micro),
        low_threshold_micro=int(row.low_threshold_micro),
        tier=row.tier,
    )


def transaction_of(row: Row[Any]) -> Transaction:
    return Transaction(
        id=int(row.id),
        user_id=row.user_id,
        kind=row.kind,
        amount_micro=int(row.amount_micro),
        overdraft_micro=int(row.overdraft_micro),
        hold_id=row.hold_id or "",
        request_id=row.request_id,
        idempotency_key=row.idempotency_key,
        reason=row.reason,
        created_at=int(row.created_at),
    )


async def read_balance(conn: AsyncConnection, user_id: str) -> Balance:
    row = (await conn.execute(select(accounts).where(accounts.c.user_id == user_id))).first()
    if row is None:
        raise DomainError("not_found", f"No credits account for user {user_id!r}", "user_id")
    return balance_of(row)


def insert_ignoring_conflicts(conn: AsyncConnection, table: Any) -> Insert:
    """`INSERT … ON CONFLICT DO NOTHING` in the connection's dialect."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()  # type: ignore[no-any-return]


async def ensure_account(conn: AsyncConnection, policy: Policy, user_id: str) -> bool:
    """Create the account with its default grant (none for a team's pool) unless it exists; True when created."""
    now = now_ms()
    grant = 0 if is_pool(user_id) else policy.default_grant_micro
    created = (
        await conn.execute(
            insert_ignoring_conflicts(conn, accounts)
            .values(
                user_id=user_id,
                balance_micro=grant,
                pending_micro=0,
                overdraft_micro=0,
                tier=policy.default_tier,
                low_threshold_micro=policy.low_threshold_micro,
                low_alerted=False,
                created_at=now,
                updated_at=now,
            )
            .returning(accounts.c.user_id)
        )
    ).first()
    if created is None:
        return False
    if grant:
        await conn.execute(
            journal.insert().values(
                user_id=user_id,
                kind="grant",
                amount_micro=grant,
                overdraft_micro=0,
                idempotency_key=f"account-opened:{user_id}",
                reason="default grant",
                actor="",
                request_id="",
                created_at=now,
            )
        )
    return True


async def note_low_balance(conn: AsyncConnection, row: Row[Any], now: int) -> None:
    """Queue one low-balance event when the account first goes below its threshold (re-armed by a top-up)."""
    available = int(row.balance_micro) - int(row.pending_micro)
    if row.low_alerted or available >= int(row.low_threshold_micro):
        return
    flipped = (
        await conn.execute(
            update(accounts)
            .where(and_(accounts.c.user_id == row.user_id, accounts.c.low_alerted.is_(False)))
            .values(low_alerted=True)
            .returning(accounts.c.user_id)
        )
    ).first()
    if flipped is not None:
        await outbox.enqueue_low_balance(conn, row.user_id, available, int(row.low_threshold_micro), now)
