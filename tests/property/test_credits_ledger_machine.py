"""A Hypothesis state machine over the ledger: grants, reserves (on a user's account or a team's pool),
settles, releases, expiry, budgets set and changed, and repeated or reused idempotency keys, against a model,
with every invariant checked after each step.

Invariants: balance == sum(journal) == the model's; pending == sum(pending holds) == the model's;
available >= 0; every hold in the state the model says (each resolved once); a repeated key changes
nothing; a reused key with another payload is refused; every budget's spent and reserved are the model's,
and a reserve is refused exactly when it would take a hard limit past `spent + reserved + amount`.
`TOLLGATE_PROPERTY_EXAMPLES` and `TOLLGATE_PROPERTY_STEPS` raise the counts for a long run (defaults 30 and 30).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import func, select

from services.credits import budgets, holds
from services.credits.__main__ import MIGRATIONS, VERSION_TABLE
from services.credits.ledger import Balance, Ledger, Policy
from services.credits.schema import accounts, journal
from services.credits.schema import holds as holds_table
from services.runtime.db import create_engine, migrate
from services.runtime.errors import DomainError

T = TypeVar("T")
GRANT = 10_000_000
EXAMPLES = int(os.environ.get("TOLLGATE_PROPERTY_EXAMPLES", "30"))
STEPS = int(os.environ.get("TOLLGATE_PROPERTY_STEPS", "30"))

amounts = st.integers(min_value=0, max_value=6_000_000)
# Costs reach past any balance so that overdrafts happen often.
costs = st.one_of(amounts, st.integers(min_value=0, max_value=25_000_000))


@dataclass
class Account:
    balance: int = GRANT
    pending: int = 0


@dataclass
class Hold:
    user: str
    amount: int
    status: str = "pending"
    settle: tuple[str, int] | None = None  # key and cost of its settle


@dataclass
class Limit:
    """A budget as the model sees it: the key's ("key:k0") or the team's ("team:t")."""

    limit: int
    spent: int = 0
    reserved: int = 0


@dataclass
class Model:
    accounts: dict[str, Account] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    budgets: dict[str, Limit] = field(default_factory=dict)
    # The budgets each hold counts against.
    counted: dict[str, list[str]] = field(default_factory=dict)


SCOPES = ("key:k0", "team:t")
FIXED_NOW = 1_780_000_000_000  # mid-June 2026: every step in one budget period


def machine(loop: asyncio.AbstractEventLoop, ledger: Ledger) -> type[RuleBasedStateMachine]:
    def run(coro: Coroutine[Any, Any, T]) -> T:
        return loop.run_until_complete(coro)

    class LedgerMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.prefix = uuid.uuid4().hex[:8]
            self.users = [f"{self.prefix}-{n}" for n in range(2)]
            self.team = f"{self.prefix}-team"
            self.pool = f"team:{self.team}"
            self.model = Model()
            self.keys = 0
            self.last_grant: tuple[str, int, str, int] | None = None

        @property
        def payers(self) -> list[str]:
            return [*self.users, self.pool]

        def key(self) -> str:
            self.keys += 1
            return f"{self.prefix}:{self.keys}"

        def account(self, user: str) -> Account:
            # A team's pool opens empty; users open with the default grant.
            return self.model.accounts.setdefault(user, Account(0 if user == self.pool else GRANT))

        @rule(n=st.integers(0, 2), amount=st.integers(1, 5_000_000))
        def grant(self, n: int, amount: int) -> None:
            user, key = self.payers[n], self.key()
            tx_id, balance = run(ledger.grant(user, amount, key))
            self.account(user).balance += amount
            assert balance.balance_micro == self.account(user).balance
            self.last_grant = (user, amount, key, tx_id)

        @precondition(lambda self: self.last_grant is not None)
        @rule(other=st.integers(1, 5_000_000))
        def grant_again(self, other: int) -> None:
            assert self.last_grant is not None
            user, amount, key, tx_id = self.last_grant
            assert run(ledger.grant(user, amount, key))[0] == tx_id
            if other != amount:
                with pytest.raises(DomainError) as err:
                    run(ledger.grant(user, other, key))
                assert err.value.code == "idempotency_key_reused"

        def scope_id(self, scope: str) -> str:
            return "k0-" + self.prefix if scope == "key:k0" else self.team

        @rule(which=st.sampled_from(SCOPES), limit=st.integers(1, 12_000_000))
        def set_budget(self, which: str, limit: int) -> None:
            scope = which.split(":")[0]
            wanted = budgets.Budget("", scope, self.scope_id(which), "monthly", "UTC", limit)
            saved = run(budgets.save(ledger, wanted))
            model = self.model.budgets.setdefault(which, Limit(limit))
            model.limit = limit
            assert (saved.limit_micro, saved.spent_micro, saved.reserved_micro) == (limit, model.spent, model.reserved)

        @rule(n=st.integers(0, 1), amount=amounts, repeat=st.booleans(), pooled=st.booleans())
        def reserve(self, n: int, amount: int, repeat: bool, pooled: bool) -> None:
            user, key = self.users[n], self.key()
            payer = self.pool if pooled else user
            # User 0 calls with key k0; both are members of the team.
            key_id = self.scope_id("key:k0") if n == 0 else ""
            counted = [s for s in SCOPES if s in self.model.budgets and (s == "team:t" or n == 0)]

            def call(amount: int) -> tuple[str, Balance]:
                return run(
                    holds.reserve(
                        ledger,
                        user,
                        amount,
                        key,
                        key,
                        account_id=self.pool if pooled else "",
                        key_id=key_id,
                        team_id=self.team,
                    )
                )

            opened = payer in self.model.accounts
            acct = self.account(payer)
            if acct.balance - acct.pending < amount:
                with pytest.raises(DomainError) as err:
                    call(amount)
                assert err.value.code == "insufficient_credits"
                if not opened:  # the refused reserve rolled back the account it was opening
                    del self.model.accounts[payer]
                return
            over = [s for s in counted if (b := self.model.budgets[s]).spent + b.reserved + amount > b.limit]
            if amount > 0 and over:
                with pytest.raises(DomainError) as err:
                    call(amount)
                assert err.value.code == "budget_exceeded"
                if not opened:  # the refused reserve rolled back the account it was opening
                    del self.model.accounts[payer]
                return
            hold_id, balance = call(amount)
            acct.pending += amount
            self.model.holds[hold_id] = Hold(payer, amount)
            self.model.counted[hold_id] = counted if amount > 0 else []
            for s in self.model.counted[hold_id]:
                self.model.budgets[s].reserved += amount
            assert balance.reserved_micro == acct.pending and balance.user_id == payer
            if repeat:
                assert call(amount)[0] == hold_id
                with pytest.raises(DomainError) as err:
                    call(amount + 1)
                assert err.value.code == "idempotency_key_reused"

        def pick(self, index: int, *statuses: str) -> str | None:
            # In the order the holds were made: hold ids are random, and a replay must pick the same hold.
            chosen = [h for h, v in self.model.holds.items() if v.status in statuses]
            return chosen[index % len(chosen)] if chosen else None

        @precondition(lambda self: bool(self.model.holds))
        @rule(index=st.integers(0, 50), cost=costs)
        def settle(self, index: int, cost: int) -> None:
            hold_id = self.pick(index, "pending", "expired", "settled", "released")
            assert hold_id is not None
            hold, key = self.model.holds[hold_id], self.key()
            acct = self.account(hold.user)
            if hold.status in ("settled", "released"):
                with pytest.raises(DomainError) as err:
                    run(holds.settle(ledger, hold_id, cost, key))
                assert err.value.code == "conflict"
                return
            held = hold.amount if hold.status == "pending" else 0
            charged = min(cost, acct.balance - acct.pending + held)
            done = run(holds.settle(ledger, hold_id, cost, key))
            assert (done.charged_micro, done.overdraft_micro) == (charged, cost - charged)
            for scope in self.model.counted[hold_id]:
                self.model.budgets[scope].reserved -= held
                self.model.budgets[scope].spent += cost
            acct.balance -= charged
            acct.pending -= held
            hold.status, hold.settle = "settled", (key, cost)

        @precondition(lambda self: sum(h.status == "pending" for h in self.model.holds.values()) >= 2)
        @rule(picks=st.lists(st.integers(0, 50), min_size=2, max_size=4), share=st.integers(0, 100))
        def settle_together(self, picks: list[int], share: int) -> None:
            """Several settles at once, as the router's SettleBatch makes them (each within its hold)."""
            pending = [h for h, v in self.model.holds.items() if v.status == "pending"]
            chosen = list(dict.fromkeys(pending[i % len(pending)] for i in picks))
            jobs = [(h, self.model.holds[h].amount * share // 100, self.key()) for h in chosen]

            async def together() -> list[Any]:
                return list(await asyncio.gather(*(holds.settle(ledger, h, cost, key) for h, cost, key in jobs)))

            for (hold_id, cost, key), done in zip(jobs, run(together()), strict=True):
                assert (done.charged_micro, done.overdraft_micro) == (cost, 0)
                hold = self.model.holds[hold_id]
                for scope in self.model.counted[hold_id]:
                    self.model.budgets[scope].reserved -= hold.amount
                    self.model.budgets[scope].spent += cost
                acct = self.account(hold.user)
                acct.balance -= cost
                acct.pending -= hold.amount
                hold.status, hold.settle = "settled", (key, cost)

        @precondition(lambda self: any(h.settle for h in self.model.holds.values()))
        @rule(index=st.integers(0, 50))
        def settle_again(self, index: int) -> None:
            settled = [h for h, v in self.model.holds.items() if v.settle]
            hold_id = settled[index % len(settled)]
            key, cost = self.model.holds[hold_id].settle or ("", 0)
            run(holds.settle(ledger, hold_id, cost, key))
            with pytest.raises(DomainError) as err:
                run(holds.settle(ledger, hold_id, cost + 1, key))
            assert err.value.code == "idempotency_key_reused"

        @precondition(lambda self: bool(self.model.holds))
        @rule(index=st.integers(0, 50), twice=st.booleans())
        def release(self, index: int, twice: bool) -> None:
            hold_id = self.pick(index, "pending", "expired", "settled", "released")
            assert hold_id is not None
            hold, key = self.model.holds[hold_id], self.key()
            if hold.status == "settled":
                with pytest.raises(DomainError) as err:
                    run(holds.release(ledger, hold_id, key))
                assert err.value.code == "conflict"
                return
            run(holds.release(ledger, hold_id, key))
            if hold.status == "pending":
                for scope in self.model.counted[hold_id]:
                    self.model.budgets[scope].reserved -= hold.amount
                self.account(hold.user).pending -= hold.amount
                hold.status = "released"
            if twice:
                run(holds.release(ledger, hold_id, key))

        @rule()
        def expire_all_due(self) -> None:
            run(holds.expire_due(ledger, batch=10_000, now=2**62))
            for hold_id, hold in self.model.holds.items():
                if hold.status == "pending":
                    for scope in self.model.counted[hold_id]:
                        self.model.budgets[scope].reserved -= hold.amount
                    self.account(hold.user).pending -= hold.amount
                    hold.status = "expired"

        @invariant()
        def budgets_match_model(self) -> None:
            for scope, model in self.model.budgets.items():
                kind = scope.split(":")[0]
                [found] = run(budgets.find(ledger, kind, self.scope_id(scope)))
                assert (found.spent_micro, found.reserved_micro) == (model.spent, model.reserved), scope

        @invariant()
        def ledger_matches_model_and_itself(self) -> None:
            async def read() -> tuple[dict[str, Any], dict[str, int], dict[str, int], dict[str, str]]:
                async with ledger.engine.connect() as conn:
                    rows = await conn.execute(select(accounts).where(accounts.c.user_id.in_(self.payers)))
                    accts = {r.user_id: r for r in rows}
                    sums = dict(
                        (
                            await conn.execute(
                                select(journal.c.user_id, func.sum(journal.c.amount_micro))
                                .where(journal.c.user_id.in_(self.payers))
                                .group_by(journal.c.user_id)
                            )
                        ).all()
                    )
                    pending = dict(
                        (
                            await conn.execute(
                                select(holds_table.c.user_id, func.sum(holds_table.c.amount_micro))
                                .where(holds_table.c.user_id.in_(self.payers), holds_table.c.status == "pending")
                                .group_by(holds_table.c.user_id)
                            )
                        ).all()
                    )
                    states = dict(
                        (
                            await conn.execute(
                                select(holds_table.c.hold_id, holds_table.c.status).where(
                                    holds_table.c.user_id.in_(self.payers)
                                )
                            )
                        ).all()
                    )
                return accts, sums, pending, states

            accts, sums, pending, states = run(read())
            for user, acct in self.model.accounts.items():
                row = accts[user]
                assert row.balance_micro == int(sums.get(user) or 0) == acct.balance
                assert row.pending_micro == int(pending.get(user) or 0) == acct.pending
                assert row.balance_micro - row.pending_micro >= 0
            assert states == {h: v.status for h, v in self.model.holds.items()}

    return LedgerMachine


def _run(url: str, procedures: bool = True) -> None:
    loop = asyncio.new_event_loop()
    engine = create_engine(url, pool_size=2)
    ledger = Ledger(
        engine,
        Policy(default_grant_micro=GRANT, low_threshold_micro=1_000_000),
        procedures=procedures,
        clock=lambda: FIXED_NOW,
    )
    assert (ledger.procedures is not None) == (procedures and url.startswith("postgres"))
    try:
        loop.run_until_complete(migrate(engine, MIGRATIONS, VERSION_TABLE))
        run_state_machine_as_test(
            machine(loop, ledger),
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        loop.run_until_complete(ledger.close())
        loop.run_until_complete(engine.dispose())
        loop.close()


def test_ledger_state_machine_sqlite(tmp_path: Path) -> None:
    _run(f"sqlite:///{tmp_path / 'credits.db'}")


@pytest.mark.postgres
def test_ledger_state_machine_postgres(postgres_url: str) -> None:
    """PostgreSQL as production runs it: one database function per operation."""
    _run(postgres_url)


@pytest.mark.postgres
def test_ledger_state_machine_postgres_python_path(postgres_url: str) -> None:
    _run(postgres_url, procedures=False)
