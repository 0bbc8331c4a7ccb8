"""The money-moving operations on PostgreSQL, one round trip each: `credits_reserve`, `credits_settle`,
`credits_release` and `credits_grant` (PL/pgSQL, created by migration 0002, settle and release extended by 0004).

Why: the Python path spends a round trip per statement — pool pre-ping (BEGIN, `;`, ROLLBACK), BEGIN,
three to six statements, COMMIT: about seventeen per reserve+settle, each costing Python, driver and
server CPU. Here each operation is one prepared `SELECT * FROM credits_…($1, …)` executed in autocommit,
so it is its own transaction: one network exchange, one commit, the same rows and guards as the
Python path (the functions repeat it statement for statement; the tests run the same cases on both).

Why a pool of our own: the service's SQLAlchemy pool pings every checkout with three extra round
trips, and asyncpg's default pool resets every connection on release with one more. These
connections only ever run the functions above — no session state, no LISTEN, no advisory locks, no
open transaction between calls — so they are released as they are, and a connection found dead is
replaced and the call repeated once. Repeating is safe because every operation is idempotent by its
key: a call that did commit before the connection dropped answers the repeat with its first result.

The domain meaning of outcomes stays with the callers (`holds`, `ledger`): a refusal comes back as
`Refused` carrying its figure (the available balance), a reused key as `KeyConflict`, and a hold that
was not open (`resolved` false) is for the caller to explain, as on the Python path.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

RESERVE = "SELECT * FROM credits_reserve($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
# The same behind one check that no budget applies (migration 0005): raises `budgeted` when one does.
RESERVE_PLAIN = "SELECT * FROM credits_reserve_plain($11, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"


# The hold's own arguments, then the 21 usage columns in `holds._usage_args` order (extended by migration 0004).
SETTLE = (
    "SELECT * FROM credits_settle($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, "
    "$18, $19, $20, $21, $22, $23, $24, $25, $26)"
)
RELEASE = (
    "SELECT * FROM credits_release($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, "
    "$18, $19, $20, $21, $22, $23, $24)"
)
GRANT = "SELECT * FROM credits_grant($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"


class Refused(Exception):
    """The guarded update found too little money; `available` is the account's available balance."""

    def __init__(self, available: int) -> None:
        super().__init__(available)
        self.available = available


class Budgeted(Exception):
    """A budget applies to the reserve: the caller takes the Python path, which keeps budgets."""


class KeyConflict(Exception):
    """A unique idempotency key was already taken (by this request earlier, or by another)."""


# A connection these errors leave is not reused: the server went away (or is going) under it.
_CUT = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    OSError,
)


async def _keep(_conn: asyncpg.Connection) -> None:
    """Release without a reset query: these connections keep no session state (see the module docstring)."""


class Procedures:
    """A small asyncpg pool on the engine's database and the four calls."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._size = engine.pool.size() if isinstance(engine.pool, QueuePool) else 10
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _open(self) -> Any:
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=1, max_size=self._size, reset=_keep, command_timeout=60
                )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _call(self, sql: str, *args: Any) -> Any:
        pool = self._pool or await self._open()
        for attempt in (1, 2):
            conn = await pool.acquire()
            try:
                return await conn.fetchrow(sql, *args)
            except asyncpg.UniqueViolationError as exc:
                raise KeyConflict(exc.constraint_name or "") from exc
            except asyncpg.RaiseError as exc:
                if exc.message in ("insufficient_credits", "below_zero"):
                    raise Refused(int(exc.detail or 0)) from None
                if exc.message == "budgeted":
                    raise Budgeted from None
                raise
            except _CUT:
                # Cut (a server restart, a failover): never reuse it; the repeat answers by its key. The pool
                # may have seen it die first and taken it back already.
                with contextlib.suppress(asyncpg.InterfaceError):
                    conn.terminate()
                if attempt == 2:
                    raise
            finally:
                await pool.release(conn)
        raise AssertionError("unreachable")

    async def reserve(
        self,
        hold_id: str,
        user_id: str,
        amount_micro: int,
        key: str,
        request_id: str,
        now: int,
        expires_at: int,
        opening: tuple[int, int, str],
        scopes: list[str] | None = None,
    ) -> Any:
        """The account row after the hold; `opening` is (default grant, low threshold, tier) of a new account.

        With `scopes` (the budget scopes of the request) it raises `Budgeted` when a budget applies.
        """
        args = (hold_id, user_id, amount_micro, key, request_id, now, expires_at, *opening)
        if scopes:
            return await self._call(RESERVE_PLAIN, *args, scopes)
        return await self._call(RESERVE, *args)

    async def settle(
        self, hold_id: str, amount_micro: int, key: str, now: int, billing_code: str, usage: tuple[Any, ...]
    ) -> Any:
        """`resolved`, `charged_micro`, `shortfall_micro` and the account's columns; `usage` as `usage_args`."""
        return await self._call(SETTLE, hold_id, amount_micro, key, now, billing_code, *usage)

    async def release(self, hold_id: str, key: str, now: int, usage: tuple[Any, ...]) -> Any:
        """`resolved` and the account's columns."""
        return await self._call(RELEASE, hold_id, key, now, *usage)

    async def grant(
        self,
        user_id: str,
        amount_micro: int,
        key: str,
        kind: str,
        reason: str,
        actor: str,
        now: int,
        opening: tuple[int, int, str],
    ) -> Any:
        """`transaction_id` (the journal row) and the account's columns."""
        return await self._call(GRANT, user_id, amount_micro, key, kind, reason, actor, now, *opening)
