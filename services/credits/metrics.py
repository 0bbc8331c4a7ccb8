"""What the ledger shows Prometheus: every money operation by kind and outcome, and the ledger's standing.

Operations are counted and timed as they happen. The standing (holds outstanding, the outbox's backlog,
accounts below their low-balance threshold, the last reconciliation) is read from the database by a
background task every `TOLLGATE_CREDITS_METRICS_INTERVAL_SECONDS`, never on a scrape, so a scrape costs the
database nothing. Labels are operation names, outcome codes and event kinds only: never a user.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.credits.reconcile import reconcile
from services.credits.schema import accounts, billing_events, holds, now_ms
from services.runtime.errors import DomainError

log = logging.getLogger("tollgate.credits.metrics")

OPERATIONS = Counter(
    "tollgate_ledger_operations_total",
    "Ledger operations by kind and outcome (ok or an error code)",
    ["operation", "outcome"],
)
OPERATION_SECONDS = Histogram(
    "tollgate_ledger_operation_seconds",
    "Time one ledger operation took, database included",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
HOLDS_OUTSTANDING = Gauge("tollgate_holds_outstanding", "Holds reserved and neither settled, released nor expired")
HELD_MICRO = Gauge("tollgate_holds_outstanding_micro", "Micro-credits the outstanding holds keep from their accounts")
OUTBOX_PENDING = Gauge("tollgate_outbox_pending", "Billing-outbox events waiting to be delivered", ["kind"])
OUTBOX_OLDEST = Gauge(
    "tollgate_outbox_oldest_pending_seconds", "Age of the oldest billing-outbox event not yet delivered", ["kind"]
)
OUTBOX_DEAD = Gauge("tollgate_outbox_dead", "Billing-outbox events the receiver refused as malformed (kept)")
LOW_CREDIT_ACCOUNTS = Gauge(
    "tollgate_accounts_low_credit", "Accounts whose available credits are below their threshold"
)
RECONCILE_MISMATCHES = Gauge("tollgate_reconcile_mismatches", "Mismatches the last in-process reconciliation found")
RECONCILE_LAST = Gauge(
    "tollgate_reconcile_last_run_timestamp_seconds", "When the last in-process reconciliation finished (0: never)"
)
STANDING_LAST = Gauge(
    "tollgate_ledger_metrics_last_read_timestamp_seconds", "When the ledger's standing was last read (0: never)"
)


@contextmanager
def operation(name: str) -> Iterator[None]:
    """Count and time one ledger operation; its outcome is `ok` or the domain error's code."""
    started, outcome = time.perf_counter(), "ok"
    try:
        yield
    except DomainError as err:
        outcome = err.code
        raise
    except BaseException:
        outcome = "internal_error"
        raise
    finally:
        OPERATIONS.labels(name, outcome).inc()
        OPERATION_SECONDS.labels(name).observe(time.perf_counter() - started)


async def read_standing(engine: AsyncEngine, delivered: Sequence[str]) -> None:
    """Set the standing gauges from the database; `delivered` are the outbox kinds that have a destination
    (an event of a kind nobody receives stays in the outbox on purpose and is no backlog)."""
    now = now_ms()
    async with engine.connect() as conn:
        count, held = (
            await conn.execute(
                select(func.count(), func.coalesce(func.sum(holds.c.amount_micro), 0)).where(
                    holds.c.status == "pending"
                )
            )
        ).one()
        backlog = {
            row.kind: (int(row.n), int(row.oldest))
            for row in await conn.execute(
                select(
                    billing_events.c.kind,
                    func.count().label("n"),
                    func.min(billing_events.c.created_at).label("oldest"),
                )
                .where(billing_events.c.state == "pending")
                .group_by(billing_events.c.kind)
            )
        }
        dead = (
            await conn.execute(select(func.count()).select_from(billing_events).where(billing_events.c.state == "dead"))
        ).scalar_one()
        low = (
            await conn.execute(
                select(func.count())
                .select_from(accounts)
                .where(accounts.c.balance_micro - accounts.c.pending_micro < accounts.c.low_threshold_micro)
            )
        ).scalar_one()
    HOLDS_OUTSTANDING.set(int(count))
    HELD_MICRO.set(int(held))
    for kind in delivered:
        pending, oldest = backlog.get(kind, (0, now))
        OUTBOX_PENDING.labels(kind).set(pending)
        OUTBOX_OLDEST.labels(kind).set(max(0.0, (now - oldest) / 1000) if pending else 0.0)
    OUTBOX_DEAD.set(int(dead))
    LOW_CREDIT_ACCOUNTS.set(int(low))
    STANDING_LAST.set(time.time())


async def reconcile_once(engine: AsyncEngine) -> None:
    report = await reconcile(engine)
    RECONCILE_MISMATCHES.set(len(report.mismatches))
    RECONCILE_LAST.set(time.time())
    for mismatch in report.mismatches[:20]:
        log.error("reconcile: %s", mismatch)


async def watch(engine: AsyncEngine, delivered: Sequence[str], interval: float, reconcile_every: float) -> None:
    """The background task: the standing every `interval` seconds, a reconciliation every `reconcile_every`
    (0: never; `tollgate credits reconcile` remains the operator's own check)."""
    if interval <= 0:
        return
    next_reconcile = time.monotonic() if reconcile_every > 0 else float("inf")
    while True:
        try:
            await read_standing(engine, delivered)
            if time.monotonic() >= next_reconcile:
                next_reconcile = time.monotonic() + reconcile_every
                await reconcile_once(engine)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("ledger metrics not read: %s", exc)
        await asyncio.sleep(interval)
