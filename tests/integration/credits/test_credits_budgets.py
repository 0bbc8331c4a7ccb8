"""Budgets and team pools in the ledger, on SQLite, PostgreSQL's functions and PostgreSQL's Python path.

A reserve counts against every budget of its key, user and team; a hard limit refuses (never overspent,
under concurrency too); settle moves reserved to spent, release and expiry give it back; a new period
starts empty; alerts are queued once per threshold and period; a team pool pays for its members' holds
while their usage rows keep the user and the key.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import orjson
import pytest
from sqlalchemy import select

from services.credits import budgets, holds
from services.credits.budgets import Budget
from services.credits.ledger import Ledger
from services.credits.reconcile import reconcile
from services.credits.schema import billing_events, usage
from services.credits.schema import budgets as budgets_table
from services.credits.schema import holds as holds_table
from services.credits.usage import UsageEntry
from services.runtime.errors import DomainError

MICRO = 1_000_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


class Clock:
    def __init__(self, at: str) -> None:
        self.now = ms(at)

    def __call__(self) -> int:
        return self.now


def budget(scope: str = "key", scope_id: str = "k1", limit: int = 5 * MICRO, **kw: object) -> Budget:
    fields: dict[str, object] = {
        "budget_id": "",
        "scope": scope,
        "scope_id": scope_id,
        "period": "monthly",
        "timezone": "Europe/Paris",
        "limit_micro": limit,
    }
    fields.update(kw)
    return Budget(**fields)  # type: ignore[arg-type]


async def alerts(ledger: Ledger) -> list[dict[str, object]]:
    async with ledger.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(billing_events.c.payload)
                .where(billing_events.c.kind == "budget_alert")
                .order_by(billing_events.c.id)
            )
        ).all()
    return [orjson.loads(r.payload) for r in rows]


async def reserve(
    ledger: Ledger, amount: int, n: int | str, user: str = "u1", key_id: str = "k1", team_id: str = ""
) -> str:
    hold_id, _ = await holds.reserve(ledger, user, amount, f"r{n}:0:reserve", f"r{n}", key_id=key_id, team_id=team_id)
    return hold_id


async def test_periods_reset_at_the_zones_midnight_weeks_on_monday() -> None:
    # 2026-03-04 is a Wednesday; Paris is UTC+1 in winter, +2 from 29 March.
    now = ms("2026-03-04T23:30:00+00:00")  # already Thursday 00:30 in Paris
    assert budgets.period_bounds("daily", "Europe/Paris", now) == (
        ms("2026-03-05T00:00:00+01:00"),
        ms("2026-03-06T00:00:00+01:00"),
    )
    assert budgets.period_bounds("weekly", "Europe/Paris", now) == (
        ms("2026-03-02T00:00:00+01:00"),
        ms("2026-03-09T00:00:00+01:00"),
    )
    assert budgets.period_bounds("monthly", "Europe/Paris", now) == (
        ms("2026-03-01T00:00:00+01:00"),
        ms("2026-04-01T00:00:00+02:00"),
    )
    assert budgets.period_bounds("monthly", "America/New_York", now)[0] == ms("2026-03-01T00:00:00-05:00")
    assert budgets.period_bounds("monthly", "UTC", ms("2026-12-31T23:59:59+00:00"))[1] == ms("2027-01-01T00:00:00Z")


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"scope": "org"}, "scope"),
        ({"scope_id": ""}, "scope_id"),
        ({"period": "hourly"}, "period"),
        ({"timezone": ""}, "timezone"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"limit_micro": -1}, "limit"),
        ({"limit_micro": 0, "soft_limit_micro": 0}, "limit"),
        ({"soft_limit_micro": -5}, "soft_limit"),
        ({"alert_percents": (0,)}, "alert_percents"),
        ({"alert_percents": (50, 1001)}, "alert_percents"),
        ({"alert_percents": (-10,)}, "alert_percents"),
    ],
)
async def test_bad_budgets_are_refused_with_the_field_named_and_nothing_written(
    ledger: Ledger, change: dict[str, object], param: str
) -> None:
    with pytest.raises(DomainError) as caught:
        await budgets.save(ledger, budget(**change))  # type: ignore[arg-type]
    assert (caught.value.code, caught.value.param) == ("invalid_request", param)
    assert await budgets.find(ledger) == []


async def test_set_replaces_the_scope_periods_budget_and_lists_and_deletes(ledger: Ledger) -> None:
    first = await budgets.save(ledger, budget(limit=5 * MICRO))
    assert first.budget_id.startswith("bud_") and first.alert_percents == (50, 80, 100)
    second = await budgets.save(ledger, budget(limit=7 * MICRO, alert_percents=(90, 25)))
    assert second.budget_id == first.budget_id and second.limit_micro == 7 * MICRO
    assert second.alert_percents == (25, 90)
    daily = await budgets.save(ledger, budget(period="daily"))
    assert daily.budget_id != first.budget_id
    assert {b.budget_id for b in await budgets.find(ledger, "key", "k1")} == {first.budget_id, daily.budget_id}
    assert [b.budget_id for b in await budgets.find(ledger, budget_id=daily.budget_id)] == [daily.budget_id]
    with pytest.raises(DomainError) as caught:
        await budgets.save(ledger, budget(budget_id=daily.budget_id, period="weekly"))
    assert caught.value.param == "budget_id"
    assert await budgets.remove(ledger, daily.budget_id) is True
    assert await budgets.remove(ledger, daily.budget_id) is False
    assert [b.budget_id for b in await budgets.find(ledger)] == [first.budget_id]


async def test_hard_limit_refuses_with_budget_exceeded_and_leaves_nothing_held(ledger: Ledger) -> None:
    b = await budgets.save(ledger, budget(limit=3 * MICRO))
    await reserve(ledger, 2 * MICRO, 1)
    before = await ledger.balance("u1")
    with pytest.raises(DomainError) as caught:
        await reserve(ledger, 2 * MICRO, 2)
    err = caught.value
    assert err.code == "budget_exceeded" and err.kind.http_status == 402
    for part in ("monthly", "key 'k1'", b.budget_id, "limit of 3.000000 credits", "resets at", "Europe/Paris"):
        assert part in err.message
    assert await ledger.balance("u1") == before  # the refused hold took nothing from the account
    async with ledger.engine.connect() as conn:
        assert (await conn.execute(select(holds_table).where(holds_table.c.request_id == "r2"))).first() is None
    [after] = await budgets.find(ledger)
    assert (after.spent_micro, after.reserved_micro) == (0, 2 * MICRO)
    # Other keys of the user are not bound by k1's budget.
    await reserve(ledger, 2 * MICRO, 3, key_id="k2")


async def test_every_budget_of_key_user_and_team_counts_and_the_tightest_refuses(ledger: Ledger) -> None:
    await budgets.save(ledger, budget("key", "k1", 10 * MICRO))
    user = await budgets.save(ledger, budget("user", "u1", 4 * MICRO))
    team = await budgets.save(ledger, budget("team", "t1", 6 * MICRO))
    await reserve(ledger, 3 * MICRO, 1, team_id="t1")
    await reserve(ledger, 2 * MICRO, 2, user="u2", key_id="k9", team_id="t1")
    with pytest.raises(DomainError) as caught:
        await reserve(ledger, 2 * MICRO, 3, team_id="t1")  # the user's 4 and the team's 6 would pass
    assert user.budget_id in caught.value.message or team.budget_id in caught.value.message
    with pytest.raises(DomainError) as caught:
        await reserve(ledger, 2 * MICRO, 4, user="u3", key_id="k8", team_id="t1")  # the team's 6
    assert team.budget_id in caught.value.message
    figures = {b.scope: (b.spent_micro, b.reserved_micro) for b in await budgets.find(ledger)}
    assert figures == {"key": (0, 3 * MICRO), "user": (0, 3 * MICRO), "team": (0, 5 * MICRO)}
    assert (await reconcile(ledger.engine)).ok


async def test_settle_moves_reserved_to_spent_release_and_expiry_give_back_overdraft_is_kept(ledger: Ledger) -> None:
    await ledger.grant("u1", 100 * MICRO, "g1")
    await budgets.save(ledger, budget(limit=5 * MICRO))
    settled = await reserve(ledger, 2 * MICRO, 1)
    released = await reserve(ledger, 1 * MICRO, 2)
    expired = await reserve(ledger, 1 * MICRO, 3)
    await holds.settle(ledger, settled, MICRO // 2, "r1:0:settle")
    await holds.release(ledger, released, "r2:0:release")
    assert await holds.expire_due(ledger, now=ledger.now() + 3_600_000) == 1
    [b] = await budgets.find(ledger)
    assert (b.spent_micro, b.reserved_micro) == (MICRO // 2, 0)
    # A late settle of the expired hold charges its cost alone; a settle beyond the budget is recorded.
    await holds.settle(ledger, expired, 3 * MICRO, "r3:0:settle")
    over = await reserve(ledger, MICRO, 4)
    await holds.settle(ledger, over, 4 * MICRO, "r4:0:settle")
    [b] = await budgets.find(ledger)
    assert (b.spent_micro, b.reserved_micro) == (MICRO // 2 + 7 * MICRO, 0)
    with pytest.raises(DomainError) as caught:
        await reserve(ledger, 1, 5)
    assert caught.value.code == "budget_exceeded"
    assert (await reconcile(ledger.engine)).ok


async def test_soft_limit_never_refuses_and_alerts_each_threshold_once(ledger: Ledger) -> None:
    await ledger.grant("u1", 100 * MICRO, "g1")
    b = await budgets.save(ledger, budget(limit=0, soft_limit_micro=10 * MICRO, alert_percents=(50, 80, 100)))
    for i in range(6):
        hold_id = await reserve(ledger, 3 * MICRO, i)
        await holds.settle(ledger, hold_id, 3 * MICRO, f"r{i}:0:settle")
    sent = await alerts(ledger)
    assert [a["threshold_percent"] for a in sent] == [50, 80, 100]
    assert {a["budget_id"] for a in sent} == {b.budget_id}
    assert sent[0]["spent_micro"] == 6 * MICRO and sent[0]["reason"] == "spent"
    [after] = await budgets.find(ledger)
    assert after.spent_micro == 18 * MICRO


async def test_a_hard_limit_refusal_counts_as_reaching_100_percent_once(ledger: Ledger) -> None:
    await ledger.grant("u1", 100 * MICRO, "g1")
    await budgets.save(ledger, budget(limit=10 * MICRO, alert_percents=(50, 100)))
    hold_id = await reserve(ledger, 6 * MICRO, 1)
    await holds.settle(ledger, hold_id, 6 * MICRO, "r1:0:settle")
    for i in (2, 3):
        with pytest.raises(DomainError):
            await reserve(ledger, 5 * MICRO, i)
    sent = await alerts(ledger)
    assert [(a["threshold_percent"], a["reason"]) for a in sent] == [(50, "spent"), (100, "limit_reached")]


async def test_a_new_period_starts_empty_and_old_holds_do_not_touch_it(ledger_backend: tuple[str, str]) -> None:
    from services.credits.__main__ import MIGRATIONS, VERSION_TABLE
    from services.runtime.db import create_engine, migrate

    from .conftest import POLICY

    url, path = ledger_backend
    engine = create_engine(url, pool_size=5)
    await migrate(engine, MIGRATIONS, VERSION_TABLE)
    clock = Clock("2026-01-31T22:00:00+00:00")  # 23:00 in Paris, the last hour of January
    ledger = Ledger(engine, POLICY, procedures=path == "procedures", clock=clock)
    try:
        await budgets.save(ledger, budget(limit=4 * MICRO, alert_percents=(50,)))
        spent = await reserve(ledger, 2 * MICRO, 1)
        await holds.settle(ledger, spent, 2 * MICRO, "r1:0:settle")
        straddling = await reserve(ledger, 2 * MICRO, 2)
        with pytest.raises(DomainError):
            await reserve(ledger, MICRO, 3)
        clock.now = ms("2026-01-31T23:00:00+00:00")  # midnight in Paris: February
        [b] = await budgets.find(ledger)
        assert (b.spent_micro, b.reserved_micro, b.period_start) == (0, 0, ms("2026-02-01T00:00:00+01:00"))
        fresh = await reserve(ledger, 3 * MICRO, 4)
        # January's hold settles in February: January is closed, February does not pay for it.
        await holds.settle(ledger, straddling, 2 * MICRO, "r2:0:settle")
        [b] = await budgets.find(ledger)
        assert (b.spent_micro, b.reserved_micro) == (0, 3 * MICRO)
        await holds.settle(ledger, fresh, 2 * MICRO, "r4:0:settle")
        [b] = await budgets.find(ledger)
        assert (b.spent_micro, b.reserved_micro) == (2 * MICRO, 0)
        # The 50 % alert is once per period: January's and February's.
        assert [a["period_start"] for a in await alerts(ledger)] == [
            ms("2026-01-01T00:00:00+01:00") // 1000,
            ms("2026-02-01T00:00:00+01:00") // 1000,
        ]
        assert (await reconcile(engine)).ok
    finally:
        await ledger.close()
        await engine.dispose()


async def test_fifty_concurrent_reserves_never_pass_the_budget(ledger: Ledger) -> None:
    await budgets.save(ledger, budget("key", "hot", 20 * MICRO + 1))
    amount = MICRO // 2 + 1
    results = await asyncio.gather(
        *(reserve(ledger, amount, f"c{i}", key_id="hot", user=f"u{i % 5}") for i in range(50)),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, DomainError) and r.code == "budget_exceeded"]
    assert len(won) + len(refused) == 50, [r for r in results if not isinstance(r, str | DomainError)]
    assert len(won) == (20 * MICRO + 1) // amount
    [b] = await budgets.find(ledger)
    assert b.reserved_micro == len(won) * amount <= b.limit_micro
    await asyncio.gather(*(holds.settle(ledger, h, amount, f"{h}:settle") for h in won))
    [b] = await budgets.find(ledger)
    assert (b.spent_micro, b.reserved_micro) == (len(won) * amount, 0)
    assert (await reconcile(ledger.engine)).ok


async def test_team_pool_pays_and_usage_keeps_the_user_and_key(ledger: Ledger) -> None:
    await ledger.grant("team:t1", 50 * MICRO, "grant-t1", "grant", "pool", "admin")
    own = await ledger.balance("u1")
    hold_id, balance = await holds.reserve(
        ledger, "u1", 4 * MICRO, "p1:0:reserve", "p1", account_id="team:t1", key_id="k1", team_id="t1"
    )
    assert balance.user_id == "team:t1"
    assert balance.reserved_micro == 4 * MICRO
    done = await holds.settle(
        ledger,
        hold_id,
        3 * MICRO,
        "p1:0:settle",
        UsageEntry(request_id="p1", user_id="u1", api_key_id="k1", model="m", status="ok"),
    )
    assert done.balance.user_id == "team:t1"
    team = await ledger.balance("team:t1")
    assert (team.balance_micro, team.reserved_micro) == (50 * MICRO - 3 * MICRO, 0)  # a pool opens empty
    assert await ledger.balance("u1") == own
    async with ledger.engine.connect() as conn:
        row = (await conn.execute(select(usage).where(usage.c.request_id == "p1"))).one()
    assert (row.user_id, row.api_key_id, row.cost_micro) == ("u1", "k1", 3 * MICRO)
    # Expiry and release give the pool back; the expiry row names the user too.
    h2, _ = await holds.reserve(ledger, "u2", MICRO, "p2:0:reserve", "p2", account_id="team:t1", team_id="t1")
    assert await holds.expire_due(ledger, now=ledger.now() + 3_600_000) == 1
    async with ledger.engine.connect() as conn:
        row = (await conn.execute(select(usage).where(usage.c.hold_id == h2))).one()
    assert row.user_id == "u2"
    assert (await ledger.balance("team:t1")).reserved_micro == 0
    assert (await reconcile(ledger.engine)).ok


async def test_a_team_pool_opens_empty_and_refuses_what_it_does_not_hold(ledger: Ledger) -> None:
    with pytest.raises(DomainError) as caught:
        await holds.reserve(ledger, "u1", 1, "e:0:reserve", "e", account_id="team:empty", team_id="empty")
    assert caught.value.code == "insufficient_credits"
    pool = await ledger.balance("team:empty")
    assert (pool.balance_micro, pool.reserved_micro) == (0, 0)
    assert (await ledger.transactions("team:empty"))[0] == []
    assert (await reconcile(ledger.engine)).ok


@pytest.mark.parametrize(
    ("account_id", "team_id"), [("team:t2", "t1"), ("team:t1", ""), ("someone-else", "t1"), ("team:", "")]
)
async def test_a_hold_cannot_name_another_payer(ledger: Ledger, account_id: str, team_id: str) -> None:
    with pytest.raises(DomainError) as caught:
        await holds.reserve(ledger, "u1", MICRO, "x:0:reserve", "x", account_id=account_id, team_id=team_id)
    assert caught.value.param == "account_id"
    async with ledger.engine.connect() as conn:
        assert (await conn.execute(select(holds_table))).first() is None


async def test_free_holds_do_not_count_against_budgets(ledger: Ledger) -> None:
    await budgets.save(ledger, budget(limit=MICRO))
    hold_id = await reserve(ledger, MICRO, 1)
    await holds.settle(ledger, hold_id, 2 * MICRO, "r1:0:settle")  # past the limit: recorded
    free = await reserve(ledger, 0, 2)  # a BYOK call holds nothing and is not refused
    await holds.settle(ledger, free, 0, "r2:0:settle")
    async with ledger.engine.connect() as conn:
        spent = (await conn.execute(select(budgets_table.c.spent_micro))).scalar_one()
    assert spent == 2 * MICRO


async def test_a_new_time_zone_starts_a_new_period_and_old_holds_leave_it_alone(ledger: Ledger) -> None:
    await budgets.save(ledger, budget(limit=5 * MICRO, timezone="UTC"))
    pending = await reserve(ledger, 2 * MICRO, 1)
    moved = await budgets.save(ledger, budget(limit=5 * MICRO, timezone="Pacific/Kiritimati"))  # UTC+14
    assert moved.period_start != budgets.period_bounds("monthly", "UTC", ledger.now())[0]
    assert (moved.spent_micro, moved.reserved_micro) == (0, 0)
    await holds.settle(ledger, pending, MICRO, "r1:0:settle")
    [b] = await budgets.find(ledger)
    assert (b.spent_micro, b.reserved_micro) == (0, 0)
    assert (await reconcile(ledger.engine)).ok


async def test_a_team_pools_usage_event_bills_the_team_and_names_the_user(ledger: Ledger) -> None:
    """The Lago usage event of a pooled request bills the payer (the team account), not the user who asked; the
    user stays a property. A user paying for itself is billed as itself, without the extra property."""
    await ledger.grant("team:t7", 50 * MICRO, "grant-t7", "grant", "pool", "admin")
    pooled, _ = await holds.reserve(
        ledger, "u7", 4 * MICRO, "b1:0:reserve", "b1", account_id="team:t7", key_id="k7", team_id="t7"
    )
    own, _ = await holds.reserve(ledger, "u8", 4 * MICRO, "b2:0:reserve", "b2", key_id="k8")
    for hold_id, request_id, user in ((pooled, "b1", "u7"), (own, "b2", "u8")):
        entry = UsageEntry(request_id=request_id, user_id=user, api_key_id="k", model="m", status="ok")
        await holds.settle(ledger, hold_id, 3 * MICRO, f"{request_id}:0:settle", entry)
    async with ledger.engine.connect() as conn:
        rows = (await conn.execute(select(billing_events).where(billing_events.c.kind == "usage"))).all()
    events = {row.transaction_id: (row.user_id, orjson.loads(row.payload)["event"]) for row in rows}
    customer, event = events["b1"]
    assert customer == event["external_subscription_id"] == "team:t7"
    assert event["properties"]["user_id"] == "u7" and event["properties"]["cost_micro"] == 3 * MICRO
    customer, event = events["b2"]
    assert customer == event["external_subscription_id"] == "u8"
    assert "user_id" not in event["properties"]
    assert (await reconcile(ledger.engine)).ok
