"""The ledger under concurrency: no overspending, duplicate keys charge once, first use opens one account."""

from __future__ import annotations

import asyncio

import pytest

from services.credits import holds
from services.credits.__main__ import MIGRATIONS, VERSION_TABLE
from services.credits.ledger import Ledger, Policy
from services.credits.reconcile import reconcile
from services.runtime.db import create_engine, migrate
from services.runtime.errors import DomainError

MICRO = 1_000_000


@pytest.mark.postgres
@pytest.mark.slow
async def test_thousand_concurrent_reserves_on_one_account_never_overspend(postgres_url: str) -> None:
    engine = create_engine(postgres_url, pool_size=20)
    await migrate(engine, MIGRATIONS, VERSION_TABLE)
    ledger = Ledger(engine, Policy(default_grant_micro=1000 * MICRO))
    amount = 3 * MICRO
    try:
        results = await asyncio.gather(
            *(holds.reserve(ledger, "hot", amount, f"req{i}:0:reserve", f"req{i}") for i in range(1000)),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, tuple)]
        refused = [r for r in results if isinstance(r, DomainError) and r.code == "insufficient_credits"]
        assert len(won) == 1000 * MICRO // amount == 333
        assert len(refused) == 1000 - 333
        balance = await ledger.balance("hot")
        assert (balance.balance_micro, balance.reserved_micro, balance.available_micro) == (
            1000 * MICRO,
            333 * amount,
            MICRO,
        )
        assert len({hold_id for hold_id, _ in won}) == 333
        report = await reconcile(engine)
        assert report.ok, report.lines()
    finally:
        await ledger.close()
        await engine.dispose()


async def test_same_key_sent_concurrently_charges_once(ledger: Ledger) -> None:
    reserved = await asyncio.gather(*(holds.reserve(ledger, "twin", 4 * MICRO, "r:0:reserve", "r") for _ in range(8)))
    assert len({hold_id for hold_id, _ in reserved}) == 1
    hold_id = reserved[0][0]
    settled = await asyncio.gather(*(holds.settle(ledger, hold_id, 3 * MICRO, "r:0:settle") for _ in range(8)))
    assert {s.charged_micro for s in settled} == {3 * MICRO}
    granted = await asyncio.gather(*(ledger.grant("twin", MICRO, "gift-1") for _ in range(8)))
    assert len({tx for tx, _ in granted}) == 1
    balance = await ledger.balance("twin")
    assert (balance.balance_micro, balance.reserved_micro) == (10 * MICRO - 3 * MICRO + MICRO, 0)
    page, _ = await ledger.transactions("twin")
    assert sorted(t.kind for t in page) == ["grant", "settle", "top-up"]
    assert (await reconcile(ledger.engine)).ok


async def test_settle_and_release_race_resolves_hold_once(ledger: Ledger) -> None:
    for n in range(5):
        hold_id, _ = await holds.reserve(ledger, "race", MICRO, f"x{n}:reserve", f"x{n}")
        outcomes = await asyncio.gather(
            holds.settle(ledger, hold_id, MICRO, f"x{n}:settle"),
            holds.release(ledger, hold_id, f"x{n}:release"),
            holds.expire_due(ledger, now=2**62),
            return_exceptions=True,
        )
        assert all(not isinstance(o, BaseException) or isinstance(o, DomainError) for o in outcomes), outcomes
    report = await reconcile(ledger.engine)
    assert report.ok, report.lines()
    balance = await ledger.balance("race")
    assert balance.reserved_micro == 0


async def test_forty_concurrent_first_requests_of_a_new_user_are_all_served(ledger: Ledger) -> None:
    """Opening the account and the first holds do not race: nobody gets a false 402 on first use."""
    for user in (f"newcomer{n}" for n in range(10)):  # the window is narrow: several new users widen the odds
        results = await asyncio.gather(
            *(holds.reserve(ledger, user, MICRO // 10, f"{user}:{i}:reserve", f"{user}{i}") for i in range(40)),
            return_exceptions=True,
        )
        assert [r for r in results if isinstance(r, BaseException)] == []
        balance = await ledger.balance(user)
        assert (balance.balance_micro, balance.reserved_micro) == (10 * MICRO, 40 * (MICRO // 10))
    report = await reconcile(ledger.engine)
    assert report.ok, report.lines()


async def test_a_resolved_hold_is_never_handed_back_for_its_key(ledger: Ledger) -> None:
    hold_id, _ = await holds.reserve(ledger, "replayer", MICRO, "once:0:reserve", "once")
    await holds.settle(ledger, hold_id, MICRO // 2, "once:0:settle")
    with pytest.raises(DomainError) as refused:
        await holds.reserve(ledger, "replayer", MICRO, "once:0:reserve", "once")
    assert refused.value.code == "conflict"
    released_id, _ = await holds.reserve(ledger, "replayer", MICRO, "twice:0:reserve", "twice")
    await holds.release(ledger, released_id, "twice:0:release")
    with pytest.raises(DomainError):
        await holds.reserve(ledger, "replayer", MICRO, "twice:0:reserve", "twice")
