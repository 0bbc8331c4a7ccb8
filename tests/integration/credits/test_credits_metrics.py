"""The ledger's gauges read from a real database, the in-process reconciliation, and operations by outcome."""

from __future__ import annotations

import contextlib

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import update

from services.credits import holds, metrics
from services.credits.ledger import Ledger
from services.credits.schema import accounts, billing_events, now_ms
from services.credits.usage import UsageEntry
from services.runtime.errors import DomainError
from tests.integration.credits.conftest import MICRO


def value(name: str, **labels: str) -> float:
    found = REGISTRY.get_sample_value(name, labels)
    assert found is not None, name
    return found


async def test_standing_counts_holds_backlog_and_low_accounts(ledger: Ledger) -> None:
    await holds.reserve(ledger, "nearly-broke", 9 * MICRO, "n:reserve", "n")  # 1 of 10 left, threshold 2
    await holds.reserve(ledger, "busy", 1000, "b:reserve", "b")
    done, _ = await holds.reserve(ledger, "paid", 5000, "p:reserve", "p")
    await holds.settle(ledger, done, 4000, "p:settle", UsageEntry(request_id="p", user_id="", model="m", provider="x"))
    async with ledger.engine.begin() as conn:
        await conn.execute(update(billing_events).values(created_at=now_ms() - 600_000))

    with contextlib.suppress(KeyError):
        metrics.OUTBOX_PENDING.remove("low_balance")
    await metrics.read_standing(ledger.engine, ["usage"])

    assert value("tollgate_holds_outstanding") == 2
    assert value("tollgate_holds_outstanding_micro") == 9 * MICRO + 1000
    assert value("tollgate_accounts_low_credit") == 1
    assert value("tollgate_outbox_pending", kind="usage") >= 1
    assert 590 <= value("tollgate_outbox_oldest_pending_seconds", kind="usage") <= 700
    assert value("tollgate_outbox_dead") == 0
    # A kind nobody receives is kept in the outbox on purpose: no backlog series for it.
    assert REGISTRY.get_sample_value("tollgate_outbox_pending", {"kind": "low_balance"}) is None


async def test_an_empty_backlog_is_zero_not_stale(ledger: Ledger) -> None:
    metrics.OUTBOX_OLDEST.labels("usage").set(12345)
    await metrics.read_standing(ledger.engine, ["usage"])
    assert value("tollgate_outbox_pending", kind="usage") == 0
    assert value("tollgate_outbox_oldest_pending_seconds", kind="usage") == 0


async def test_reconcile_gauge_follows_the_ledger(ledger: Ledger) -> None:
    hold_id, _ = await holds.reserve(ledger, "u", 1000, "u:reserve", "u")
    await holds.settle(ledger, hold_id, 500, "u:settle", UsageEntry(request_id="u", user_id=""))
    await metrics.reconcile_once(ledger.engine)
    assert value("tollgate_reconcile_mismatches") == 0
    assert value("tollgate_reconcile_last_run_timestamp_seconds") > 0
    async with ledger.engine.begin() as conn:  # a balance that no journal row explains
        await conn.execute(update(accounts).where(accounts.c.user_id == "u").values(balance_micro=1))
    await metrics.reconcile_once(ledger.engine)
    assert value("tollgate_reconcile_mismatches") >= 1


def test_an_operation_is_counted_by_its_outcome() -> None:
    before_ok = REGISTRY.get_sample_value("tollgate_ledger_operations_total", {"operation": "grant", "outcome": "ok"})
    with metrics.operation("grant"):
        pass
    with pytest.raises(DomainError), metrics.operation("grant"):
        raise DomainError("insufficient_credits", "no")
    assert value("tollgate_ledger_operations_total", operation="grant", outcome="ok") == (before_ok or 0) + 1
    assert value("tollgate_ledger_operations_total", operation="grant", outcome="insufficient_credits") >= 1
