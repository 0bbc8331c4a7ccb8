"""The ledger's rules on both databases: accounts, grants, holds, overdraft, idempotency, low balance, usage."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import select

from services.credits import holds, usage
from services.credits.ledger import Ledger
from services.credits.reconcile import reconcile
from services.credits.schema import billing_events, journal, now_ms
from services.credits.usage import UsageEntry
from services.runtime.errors import DomainError

MICRO = 1_000_000


async def _journal(ledger: Ledger, user: str) -> list[tuple[str, int, int]]:
    async with ledger.engine.connect() as conn:
        rows = await conn.execute(
            select(journal.c.kind, journal.c.amount_micro, journal.c.overdraft_micro)
            .where(journal.c.user_id == user)
            .order_by(journal.c.id)
        )
        return [(r.kind, int(r.amount_micro), int(r.overdraft_micro)) for r in rows]


async def _events(ledger: Ledger, kind: str) -> list[dict[str, object]]:
    async with ledger.engine.connect() as conn:
        rows = await conn.execute(select(billing_events.c.payload).where(billing_events.c.kind == kind))
        return [orjson.loads(r.payload) for r in rows]


async def test_account_opens_with_default_grant_as_journal_row(ledger: Ledger) -> None:
    balance = await ledger.balance("alice")
    assert (balance.balance_micro, balance.reserved_micro, balance.available_micro) == (10 * MICRO, 0, 10 * MICRO)
    assert await _journal(ledger, "alice") == [("grant", 10 * MICRO, 0)]
    await ledger.balance("alice")
    assert len(await _journal(ledger, "alice")) == 1


async def test_reserve_then_settle_below_hold_charges_actual(ledger: Ledger) -> None:
    hold_id, balance = await holds.reserve(ledger, "bob", 3 * MICRO, "r1:0:reserve", "r1")
    assert (balance.reserved_micro, balance.available_micro) == (3 * MICRO, 7 * MICRO)
    entry = UsageEntry(
        request_id="r1", user_id="bob", model="m", provider="p", prompt_tokens=10, completion_tokens=5, cost_micro=1
    )
    done = await holds.settle(ledger, hold_id, 1_250_000, "r1:0:settle", entry)
    assert (done.charged_micro, done.overdraft_micro) == (1_250_000, 0)
    assert (done.balance.balance_micro, done.balance.reserved_micro) == (10 * MICRO - 1_250_000, 0)
    rows, _ = await usage.list_usage(ledger, "bob")
    assert [(r.entry.cost_micro, r.entry.status, r.entry.prompt_tokens) for r in rows] == [(1_250_000, "ok", 10)]
    events = await _events(ledger, "usage")
    assert len(events) == 1
    event = events[0]["event"]
    assert isinstance(event, dict)
    assert event["transaction_id"] == "r1" and event["external_subscription_id"] == "bob"
    assert event["properties"]["cost_micro"] == 1_250_000


async def test_settle_above_hold_charges_available_and_records_overdraft(ledger: Ledger) -> None:
    hold_id, _ = await holds.reserve(ledger, "carol", 4 * MICRO, "k:reserve", "r")
    other, _ = await holds.reserve(ledger, "carol", 5 * MICRO, "k2:reserve", "r2")
    done = await holds.settle(ledger, hold_id, 6 * MICRO, "k:settle")
    # 10 credits, 5 held by another request: this one can take its 4 plus the 1 still free.
    assert (done.charged_micro, done.overdraft_micro) == (5 * MICRO, MICRO)
    assert (done.balance.balance_micro, done.balance.reserved_micro, done.balance.overdraft_micro) == (
        5 * MICRO,
        5 * MICRO,
        MICRO,
    )
    assert await _journal(ledger, "carol") == [
        ("grant", 10 * MICRO, 0),
        ("settle", -5 * MICRO, 0),
        ("overdraft", 0, MICRO),
    ]
    await holds.release(ledger, other, "k2:release")
    assert (await reconcile(ledger.engine)).ok


async def test_reserve_refuses_with_balance_and_estimate_in_credits(ledger: Ledger) -> None:
    await holds.reserve(ledger, "dave", 9 * MICRO, "a", "r")
    with pytest.raises(DomainError) as err:
        await holds.reserve(ledger, "dave", 2_500_000, "b", "r2")
    assert err.value.code == "insufficient_credits"
    assert "1.000000 credits available" in err.value.message and "2.500000 credits" in err.value.message
    balance = await ledger.balance("dave")
    assert balance.reserved_micro == 9 * MICRO


async def test_free_model_served_at_zero_balance_paid_refused(ledger: Ledger) -> None:
    hold_id, _ = await holds.reserve(ledger, "erin", 10 * MICRO, "all:reserve", "r0")
    await holds.settle(ledger, hold_id, 10 * MICRO, "all:settle")
    assert (await ledger.balance("erin")).available_micro == 0
    free, _ = await holds.reserve(ledger, "erin", 0, "free:reserve", "r1")
    assert (await holds.settle(ledger, free, 0, "free:settle")).charged_micro == 0
    await usage.record_usage(
        ledger, UsageEntry(request_id="r2", user_id="erin", model="free", cost_micro=0), "r2:usage"
    )
    with pytest.raises(DomainError) as err:
        await holds.reserve(ledger, "erin", 1, "paid:reserve", "r3")
    assert err.value.code == "insufficient_credits"


async def test_release_returns_hold_and_records_failed_usage(ledger: Ledger) -> None:
    hold_id, _ = await holds.reserve(ledger, "fay", 2 * MICRO, "x:reserve", "rx")
    failed = UsageEntry(request_id="rx", user_id="fay", model="m", status="error", cost_micro=999)
    balance = await holds.release(ledger, hold_id, "x:release", failed)
    assert (balance.balance_micro, balance.reserved_micro) == (10 * MICRO, 0)
    assert (await holds.release(ledger, hold_id, "x:release", failed)).reserved_micro == 0
    rows, _ = await usage.list_usage(ledger, "fay")
    assert [(r.entry.status, r.entry.cost_micro) for r in rows] == [("error", 0)]
    with pytest.raises(DomainError) as err:
        await holds.settle(ledger, hold_id, 1, "x:settle")
    assert err.value.code == "conflict"
    assert await _events(ledger, "usage") == []


async def test_each_hold_resolves_once(ledger: Ledger) -> None:
    hold_id, _ = await holds.reserve(ledger, "gil", MICRO, "g:reserve", "rg")
    first = await holds.settle(ledger, hold_id, 500_000, "g:settle")
    again = await holds.settle(ledger, hold_id, 500_000, "g:settle")
    assert (again.charged_micro, again.balance.balance_micro) == (first.charged_micro, first.balance.balance_micro)
    with pytest.raises(DomainError) as err:
        await holds.settle(ledger, hold_id, 500_000, "g:settle-other-key")
    assert err.value.code == "conflict"
    with pytest.raises(DomainError) as err:
        await holds.release(ledger, hold_id, "g:release")
    assert err.value.code == "conflict"
    with pytest.raises(DomainError) as err:
        await holds.settle(ledger, "h_missing", 1, "nothing")
    assert err.value.code == "not_found"
    with pytest.raises(DomainError) as err:
        await holds.release(ledger, "h_missing", "nothing")
    assert err.value.code == "not_found"


async def test_idempotency_key_reused_with_other_payload_is_refused(ledger: Ledger) -> None:
    hold_id, _ = await holds.reserve(ledger, "hal", MICRO, "k1", "r1")
    assert (await holds.reserve(ledger, "hal", MICRO, "k1", "r1"))[0] == hold_id
    with pytest.raises(DomainError) as err:
        await holds.reserve(ledger, "hal", 2 * MICRO, "k1", "r1")
    assert err.value.code == "idempotency_key_reused"
    await ledger.grant("hal", MICRO, "k1-grant")
    with pytest.raises(DomainError) as err:
        await ledger.grant("hal", 2 * MICRO, "k1-grant")
    assert err.value.code == "idempotency_key_reused"
    await holds.settle(ledger, hold_id, 100, "s1")
    with pytest.raises(DomainError) as err:
        await holds.settle(ledger, hold_id, 200, "s1")
    assert err.value.code == "idempotency_key_reused"
    other, _ = await holds.reserve(ledger, "hal", MICRO, "k2", "r2")
    with pytest.raises(DomainError) as err:
        await holds.settle(ledger, other, 100, "s1")
    assert err.value.code == "idempotency_key_reused"
    assert (await reconcile(ledger.engine)).ok


async def test_grant_is_idempotent_and_adjustment_cannot_go_below_zero(ledger: Ledger) -> None:
    first = await ledger.grant("ivy", 5 * MICRO, "topup-1", "top-up", "invoice 7", "admin")
    second = await ledger.grant("ivy", 5 * MICRO, "topup-1", "top-up", "invoice 7", "admin")
    assert first[0] == second[0] and second[1].balance_micro == 15 * MICRO
    await holds.reserve(ledger, "ivy", 10 * MICRO, "ivy:reserve", "r")
    with pytest.raises(DomainError) as err:
        await ledger.grant("ivy", -6 * MICRO, "adj-1", "adjustment")
    assert err.value.code == "invalid_request"
    assert (await ledger.grant("ivy", -5 * MICRO, "adj-2", "adjustment"))[1].available_micro == 0
    with pytest.raises(DomainError):
        await ledger.grant("ivy", -MICRO, "adj-3", "top-up")
    page, cursor = await ledger.transactions("ivy", limit=2)
    assert [t.kind for t in page] == ["adjustment", "top-up"] and cursor is not None
    rest, end = await ledger.transactions("ivy", limit=2, before_id=cursor)
    assert [t.kind for t in rest] == ["grant"] and end is None


async def test_low_balance_crossing_queues_one_event_until_topped_up(ledger: Ledger) -> None:
    hold_id, balance = await holds.reserve(ledger, "jo", 7 * MICRO, "j1", "r1")
    assert not balance.low
    done = await holds.settle(ledger, hold_id, 9 * MICRO, "j1:settle")
    assert done.balance.low and done.balance.available_micro == MICRO
    h2, _ = await holds.reserve(ledger, "jo", 100, "j2", "r2")
    await holds.settle(ledger, h2, 100, "j2:settle")
    assert len(await _events(ledger, "low_balance")) == 1
    await ledger.grant("jo", 5 * MICRO, "jo-topup")
    h3, _ = await holds.reserve(ledger, "jo", 5 * MICRO, "j3", "r3")
    await holds.settle(ledger, h3, 5 * MICRO, "j3:settle")
    alerts = await _events(ledger, "low_balance")
    assert len(alerts) == 2 and alerts[1]["user_id"] == "jo"


async def test_sweeper_expires_abandoned_hold_and_late_settle_still_charges(ledger: Ledger) -> None:
    abandoned, _ = await holds.reserve(ledger, "kim", 4 * MICRO, "dead:reserve", "dead", ttl_seconds=1)
    late, _ = await holds.reserve(ledger, "kim", 2 * MICRO, "late:reserve", "late", ttl_seconds=1)
    assert await holds.expire_due(ledger, now=now_ms() + 5_000) == 2
    assert await holds.expire_due(ledger, now=now_ms() + 5_000) == 0
    balance = await ledger.balance("kim")
    assert (balance.balance_micro, balance.reserved_micro) == (10 * MICRO, 0)
    done = await holds.settle(ledger, late, 3 * MICRO, "late:settle")
    assert (done.charged_micro, done.overdraft_micro, done.balance.balance_micro) == (3 * MICRO, 0, 7 * MICRO)
    assert (await holds.release(ledger, abandoned, "dead:release")).reserved_micro == 0
    rows, _ = await usage.list_usage(ledger, "kim")
    assert sorted(r.entry.status for r in rows) == ["expired", "expired", "ok"]
    assert (await reconcile(ledger.engine)).ok


async def test_record_usage_is_idempotent_and_never_billed(ledger: Ledger) -> None:
    byok = UsageEntry(request_id="rb", user_id="lee", model="gpt", provider="openai", cost_micro=5000, byok=True)
    first = await usage.record_usage(ledger, byok, "rb:usage")
    assert await usage.record_usage(ledger, byok, "rb:usage") == first
    with pytest.raises(DomainError) as err:
        await usage.record_usage(ledger, UsageEntry(request_id="other", user_id="lee"), "rb:usage")
    assert err.value.code == "idempotency_key_reused"
    assert (await ledger.balance("lee")).balance_micro == 10 * MICRO
    assert await _events(ledger, "usage") == []


async def test_usage_summary_groups(ledger: Ledger) -> None:
    for n, (model, provider, cost) in enumerate([("a", "p1", 100), ("a", "p2", 200), ("b", "p1", 300)]):
        hold_id, _ = await holds.reserve(ledger, f"u{n % 2}", 1000, f"s{n}:reserve", f"s{n}")
        entry = UsageEntry(
            request_id=f"s{n}", user_id="ignored", model=model, provider=provider, prompt_tokens=10, completion_tokens=1
        )
        await holds.settle(ledger, hold_id, cost, f"s{n}:settle", entry)
    by_model = await usage.summary(ledger, "", "model")
    assert [(g.key, g.requests, g.cost_micro, g.prompt_tokens) for g in by_model] == [
        ("a", 2, 300, 20),
        ("b", 1, 300, 10),
    ]
    by_user = await usage.summary(ledger, "", "user")
    assert [(g.key, g.cost_micro) for g in by_user] == [("u0", 400), ("u1", 200)]
    assert [(g.key, g.requests) for g in await usage.summary(ledger, "u0", "provider")] == [("p1", 2)]
    days = await usage.summary(ledger, "u0", "day")
    assert len(days) == 1 and len(days[0].key) == 10
    assert await usage.summary(ledger, "u0", "day", since_ms=now_ms() + 60_000) == []
    with pytest.raises(DomainError):
        await usage.summary(ledger, "", "week")
    page, cursor = await usage.list_usage(ledger, "", limit=2)
    assert len(page) == 2 and cursor is not None
    assert len((await usage.list_usage(ledger, "", limit=2, before_id=cursor))[0]) == 1
