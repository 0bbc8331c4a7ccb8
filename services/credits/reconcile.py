"""Reconciliation: the ledger checked against itself, account by account.

For every account: balance == sum(journal); pending == sum(pending holds); available >= 0; what
its settled holds cost == what the journal charged plus what it recorded as overdraft == the cost
of their usage rows; and every billable usage row has its billing event in the outbox. Provider calls
are counted too: the router takes a hold for every call it makes (of nothing when it is not charged), so
every resolved hold has exactly one usage row, a pending hold none, and a usage row that says a provider
answered (anything but a failure before any call, or a cache hit) belongs to a hold. Every budget's spent
and reserved equal what its holds of the current period settled and still hold. Read in one
snapshot (REPEATABLE READ on PostgreSQL, one transaction on SQLite), so a live service does not
cause false alarms.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.credits.schema import accounts, billing_events, budget_holds, budgets, holds, journal, usage


@dataclass
class Report:
    accounts: int = 0
    journal_rows: int = 0
    usage_rows: int = 0
    provider_calls: int = 0
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def lines(self) -> list[str]:
        head = (
            f"{self.accounts} accounts, {self.journal_rows} journal rows, {self.usage_rows} usage rows, "
            f"{self.provider_calls} provider calls: "
        ) + ("ledger consistent" if self.ok else f"{len(self.mismatches)} mismatches")
        return [head, *(f"  MISMATCH {m}" for m in self.mismatches)]


async def reconcile(engine: AsyncEngine) -> Report:
    report = Report()
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            await _check(conn, report)
    return report


async def _check(conn: AsyncConnection, report: Report) -> None:
    sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    for row in await conn.execute(
        select(
            journal.c.user_id,
            journal.c.kind,
            func.count(),
            func.sum(journal.c.amount_micro),
            func.sum(journal.c.overdraft_micro),
        ).group_by(journal.c.user_id, journal.c.kind)
    ):
        user, kind, count, amount, overdraft = row
        report.journal_rows += int(count)
        sums[user]["journal"] += int(amount or 0)
        if kind == "settle":
            sums[user]["charged"] += -int(amount or 0)
        if kind == "overdraft":
            sums[user]["overdraft"] += int(overdraft or 0)

    for user, status, amount, cost in await conn.execute(
        select(holds.c.user_id, holds.c.status, func.sum(holds.c.amount_micro), func.sum(holds.c.cost_micro)).group_by(
            holds.c.user_id, holds.c.status
        )
    ):
        if status == "pending":
            sums[user]["pending"] += int(amount or 0)
        if status == "settled":
            sums[user]["settled_cost"] += int(cost or 0)

    # A usage row counts for the account its hold took from (a team pool pays for its members' rows).
    for user, cost in await conn.execute(
        select(holds.c.user_id, func.sum(usage.c.cost_micro))
        .select_from(usage.join(holds, holds.c.hold_id == usage.c.hold_id))
        .group_by(holds.c.user_id)
    ):
        sums[user]["usage_cost"] += int(cost or 0)
    report.usage_rows = int((await conn.execute(select(func.count()).select_from(usage))).scalar_one())

    for row in await conn.execute(select(accounts)):
        report.accounts += 1
        s = sums[row.user_id]
        who = f"user {row.user_id!r}:"
        if int(row.balance_micro) != s["journal"]:
            report.mismatches.append(f"{who} balance {row.balance_micro} != sum(journal) {s['journal']}")
        if int(row.pending_micro) != s["pending"]:
            report.mismatches.append(f"{who} pending {row.pending_micro} != sum(pending holds) {s['pending']}")
        if int(row.balance_micro) - int(row.pending_micro) < 0:
            report.mismatches.append(f"{who} available is negative")
        if int(row.overdraft_micro) != s["overdraft"]:
            report.mismatches.append(f"{who} overdraft {row.overdraft_micro} != sum(overdraft rows) {s['overdraft']}")
        if s["charged"] + s["overdraft"] != s["settled_cost"]:
            report.mismatches.append(
                f"{who} charged {s['charged']} + overdraft {s['overdraft']} != settled holds' cost {s['settled_cost']}"
            )
        if s["settled_cost"] != s["usage_cost"]:
            report.mismatches.append(
                f"{who} settled holds' cost {s['settled_cost']} != their usage rows' cost {s['usage_cost']}"
            )
    known = {row.user_id for row in await conn.execute(select(accounts.c.user_id))}
    for user in sorted(set(sums) - known):
        report.mismatches.append(f"user {user!r}: ledger rows without an account")

    unbilled = await conn.execute(
        select(usage.c.id, usage.c.request_id)
        .select_from(usage.outerjoin(billing_events, billing_events.c.usage_id == usage.c.id))
        .where(
            and_(
                usage.c.hold_id.is_not(None),
                usage.c.cost_micro > 0,
                usage.c.byok.is_(False),
                billing_events.c.id.is_(None),
            )
        )
        .limit(100)
    )
    for usage_id, request_id in unbilled:
        report.mismatches.append(f"usage row {usage_id} (request {request_id!r}) has no billing event")
    await _check_calls(conn, report)
    await _check_budgets(conn, report)


async def _check_budgets(conn: AsyncConnection, report: Report) -> None:
    """Each budget's figures are its current period's holds: spent = their settled cost, reserved = pending."""
    link = budget_holds
    in_period = and_(link.c.budget_id == budgets.c.budget_id, link.c.period_start == budgets.c.period_start)
    settled = func.coalesce(func.sum(case((link.c.status == "settled", link.c.cost_micro), else_=0)), 0)
    pending = func.coalesce(func.sum(case((link.c.status == "pending", link.c.amount_micro), else_=0)), 0)
    rows = await conn.execute(
        select(budgets.c.budget_id, budgets.c.spent_micro, budgets.c.reserved_micro, settled, pending)
        .select_from(budgets.outerjoin(link, in_period))
        .group_by(budgets.c.budget_id, budgets.c.spent_micro, budgets.c.reserved_micro)
    )
    for budget_id, spent, reserved, settled_cost, held in rows:
        if int(spent) != int(settled_cost):
            report.mismatches.append(f"budget {budget_id}: spent {spent} != its period's settled holds {settled_cost}")
        if int(reserved) != int(held):
            report.mismatches.append(f"budget {budget_id}: reserved {reserved} != its period's pending holds {held}")


async def _check_calls(conn: AsyncConnection, report: Report) -> None:
    """Every provider call (a hold) has exactly one usage row once resolved; no answered call lacks a hold."""
    report.provider_calls = int((await conn.execute(select(func.count()).select_from(holds))).scalar_one())
    # A hold the sweeper expired keeps that row when a late settle then charges it: expiry rows apart.
    expiries = func.coalesce(func.sum(case((usage.c.status == "expired", 1), else_=0)), 0)
    rows = func.count(usage.c.id) - expiries
    counted = (
        select(holds.c.hold_id, holds.c.request_id, holds.c.status, rows)
        .select_from(holds.outerjoin(usage, usage.c.hold_id == holds.c.hold_id))
        .group_by(holds.c.hold_id, holds.c.request_id, holds.c.status)
        .having(
            or_(
                and_(holds.c.status == "pending", func.count(usage.c.id) != 0),
                and_(holds.c.status == "expired", or_(rows != 0, expiries != 1)),
                and_(holds.c.status.in_(("settled", "released")), or_(rows != 1, expiries > 1)),
            )
        )
        .limit(100)
    )
    for hold_id, request_id, status, count in await conn.execute(counted):
        report.mismatches.append(f"hold {hold_id} (request {request_id!r}) is {status} with {count} usage rows")
    unheld = await conn.execute(
        select(usage.c.id, usage.c.request_id, usage.c.status)
        .where(usage.c.hold_id.is_(None), usage.c.cache_hit.is_(False), usage.c.status != "error")
        .limit(100)
    )
    for usage_id, request_id, status in unheld:
        report.mismatches.append(
            f"usage row {usage_id} (request {request_id!r}) says {status} but belongs to no provider call's hold"
        )
