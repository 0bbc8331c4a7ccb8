"""PostgreSQL's one-call functions against the Python path: the same rows to the column, production uses them,
and a connection cut under them costs nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select, text

from services.credits import holds, usage
from services.credits.__main__ import MIGRATIONS, VERSION_TABLE
from services.credits.ledger import Ledger, Policy
from services.credits.reconcile import reconcile
from services.credits.schema import accounts, billing_events, journal, now_ms
from services.credits.schema import holds as holds_table
from services.credits.schema import usage as usage_table
from services.credits.usage import UsageEntry
from services.runtime.db import create_engine, migrate
from services.runtime.errors import DomainError

pytestmark = pytest.mark.postgres

MICRO = 1_000_000
POLICY = Policy(default_grant_micro=10 * MICRO, low_threshold_micro=2 * MICRO, hold_ttl_seconds=60)
# Moments and random parts differ between two runs; everything else must not.
VOLATILE = {"id", "usage_id", "created_at", "updated_at", "resolved_at", "expires_at", "next_attempt_at"}


@pytest.fixture
async def ledgers(postgres_url: str) -> AsyncIterator[tuple[Ledger, Ledger]]:
    engine = create_engine(postgres_url, pool_size=5)
    await migrate(engine, MIGRATIONS, VERSION_TABLE)
    functions, python = Ledger(engine, POLICY), Ledger(engine, POLICY, procedures=False)
    assert functions.procedures is not None and python.procedures is None
    yield functions, python
    await functions.close()
    await engine.dispose()


async def _story(ledger: Ledger, p: str) -> list[Any]:
    """Every kind of money movement once, with its repeats and refusals; the replies, as comparable values."""
    said: list[Any] = []

    def entry(request: str, **fields: Any) -> UsageEntry:
        return UsageEntry(request_id=request, user_id="ignored", **fields)

    async def refused(call: Any) -> None:
        with pytest.raises(DomainError) as err:
            await call
        said.append((err.value.code, re.sub(r"h_[0-9a-f]{32}", "h_X", err.value.message.replace(p, ""))))

    a, b = f"{p}ann", f"{p}bob"
    h1, bal = await holds.reserve(ledger, a, 3 * MICRO, f"{p}k1", f"{p}r1")
    said.append(bal)
    said.append((await holds.reserve(ledger, a, 3 * MICRO, f"{p}k1", f"{p}r1"))[0] == h1)
    await refused(holds.reserve(ledger, a, 4 * MICRO, f"{p}k1", f"{p}r1"))
    rich = entry(f"{p}r1", api_key_id="key", model='m "q"\n', provider="p", deployment="d", power_level="ECO")
    rich = UsageEntry(**{**rich.__dict__, "prompt_tokens": 10, "completion_tokens": 5, "latency_ms": 12.5})
    said.append(await holds.settle(ledger, h1, 1_250_000, f"{p}s1", rich))
    said.append(await holds.settle(ledger, h1, 1_250_000, f"{p}s1", rich))
    await refused(holds.settle(ledger, h1, 1_250_001, f"{p}s1"))
    await refused(holds.settle(ledger, h1, 1, f"{p}s1-other"))
    h2, _ = await holds.reserve(ledger, a, 4 * MICRO, f"{p}k2", f"{p}r2")
    h3, _ = await holds.reserve(ledger, a, 4 * MICRO, f"{p}k3", f"{p}r3")
    await refused(holds.reserve(ledger, a, MICRO, f"{p}k4", f"{p}r4"))
    # Beyond the hold and the balance: an overdraft row, and the account goes low (one alert).
    said.append(await holds.settle(ledger, h2, 6 * MICRO, f"{p}s2", entry("", model="big", cache_hit=True)))
    await refused(holds.settle(ledger, h3, 1, f"{p}s1"))
    said.append(await holds.release(ledger, h3, f"{p}x3", entry(f"{p}r3", model="m", status="", fallback_count=2)))
    said.append(await holds.release(ledger, h3, f"{p}x3"))
    await refused(holds.release(ledger, h2, f"{p}x2"))
    await refused(holds.release(ledger, "h_missing", f"{p}x9"))
    await refused(holds.settle(ledger, "h_missing", 1, f"{p}s9"))
    await refused(holds.settle(ledger, h3, 1, f"{p}s9", entry("r", status="bogus")))
    granted = await ledger.grant(a, 5 * MICRO, f"{p}g1", "top-up", "invoice", "admin")
    said.append(granted[1])
    said.append(await ledger.grant(a, 5 * MICRO, f"{p}g1", "top-up", "invoice", "admin") == granted)
    await refused(ledger.grant(a, 6 * MICRO, f"{p}g1"))
    await refused(ledger.grant(a, -20 * MICRO, f"{p}g2", "adjustment"))
    said.append((await ledger.grant(a, -MICRO, f"{p}g3", "adjustment", "correction"))[1])
    # A new account by grant, one by reserve; free, BYOK and twice-billed requests; expiry and a late settle.
    said.append((await ledger.grant(f"{p}cy", MICRO, f"{p}g4"))[1])
    free, _ = await holds.reserve(ledger, b, 0, f"{p}k5", f"{p}r5")
    said.append(await holds.settle(ledger, free, 0, f"{p}s5"))
    byok, _ = await holds.reserve(ledger, b, MICRO, f"{p}k6", f"{p}r6")
    said.append(await holds.settle(ledger, byok, 700, f"{p}s6", entry(f"{p}r6", byok=True, decision=b"\x00why")))
    for attempt in (7, 8):
        hold, _ = await holds.reserve(ledger, b, MICRO, f"{p}k{attempt}", f"{p}twice")
        said.append(await holds.settle(ledger, hold, 300, f"{p}s{attempt}", entry(f"{p}twice", model="x")))
    late, _ = await holds.reserve(ledger, b, 2 * MICRO, f"{p}k9", f"{p}r9", ttl_seconds=1)
    assert await holds.expire_due(ledger, now=now_ms() + 5_000) == 1
    said.append(await holds.settle(ledger, late, 3 * MICRO, f"{p}s9b"))
    free_usage = UsageEntry(request_id=f"{p}r10", user_id=b, model="cached", cache_hit=True)
    said.append(await usage.record_usage(ledger, free_usage, f"{p}u10") > 0)
    return said


async def _rows(ledger: Ledger, p: str) -> dict[str, list[dict[str, Any]]]:
    """Every row the story wrote, its own names and random parts replaced by stable ones."""
    async with ledger.engine.connect() as conn:
        names = {
            row.hold_id: f"hold{n}"
            for n, row in enumerate(
                await conn.execute(
                    select(holds_table.c.hold_id)
                    .where(holds_table.c.user_id.startswith(p))
                    .order_by(holds_table.c.reserve_key)
                )
            )
        }
        tables = {}
        for table, order in (
            (accounts, accounts.c.user_id),
            (journal, journal.c.id),
            (holds_table, holds_table.c.reserve_key),
            (usage_table, usage_table.c.id),
            (billing_events, billing_events.c.id),
        ):
            rows = await conn.execute(select(table).where(table.c.user_id.startswith(p)).order_by(order))
            tables[table.name] = [_stable(dict(row._mapping), p, names) for row in rows]
    return tables


def _stable(row: dict[str, Any], p: str, names: dict[str, str]) -> dict[str, Any]:
    out = {}
    for column, value in row.items():
        if column in VOLATILE:
            continue
        if isinstance(value, str):
            for hold_id, name in names.items():
                value = value.replace(hold_id, name)
            value = value.replace(p, "")
            value = re.sub(r'"timestamp":\d+', '"timestamp":T', value)
            value = re.sub(r"^(low-balance:.*):[0-9a-f]{32}$", r"\1:U", value)
        out[column] = value
    return out


async def test_functions_write_the_same_rows_as_the_python_path(ledgers: tuple[Ledger, Ledger]) -> None:
    functions, python = ledgers
    said_by_functions = await _story(functions, "F~")
    said_by_python = await _story(python, "P~")
    strip = re.compile(r"[FP]~")
    assert [strip.sub("", repr(s)) for s in said_by_functions] == [strip.sub("", repr(s)) for s in said_by_python]
    by_functions, by_python = await _rows(functions, "F~"), await _rows(python, "P~")
    for name, rows in by_python.items():
        assert len(by_functions[name]) == len(rows), name
        for mine, theirs in zip(by_functions[name], rows, strict=True):
            assert mine == theirs, name
    assert {name: len(rows) for name, rows in by_functions.items()} == {
        "accounts": 3,
        "journal": 14,
        "holds": 8,
        "usage": 10,
        "billing_events": 6,
    }
    report = await reconcile(functions.engine)
    assert report.ok, report.lines()


async def test_production_moves_money_through_the_functions(ledgers: tuple[Ledger, Ledger]) -> None:
    functions, _ = ledgers
    await holds.reserve(functions, "dee", MICRO, "d1", "r1")
    async with functions.engine.begin() as conn:
        await conn.execute(text("DROP FUNCTION credits_reserve"))
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await holds.reserve(functions, "dee", MICRO, "d2", "r2")


async def test_a_cut_connection_is_replaced_and_the_call_repeated_once(ledgers: tuple[Ledger, Ledger]) -> None:
    functions, _ = ledgers
    first, _ = await holds.reserve(functions, "eve", MICRO, "e1", "r1")
    async with functions.engine.connect() as conn:
        cut = await conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
        )
        assert cut.scalar_one() >= 1
    done = await holds.settle(functions, first, 400_000, "e1:settle")
    assert (done.charged_micro, done.balance.balance_micro) == (400_000, 10 * MICRO - 400_000)
    assert (await holds.settle(functions, first, 400_000, "e1:settle")).charged_micro == 400_000
