"""The billing-event outbox and its dispatcher.

Events are written in the same transaction as the money movement they describe, so none is lost;
the dispatcher posts them afterwards, at least once, with exponential backoff. Usage events are
Lago-compatible (`{"event": {"transaction_id", "external_subscription_id", "code", "timestamp",
"properties"}}`) and deduplicated downstream by `transaction_id` (the request id); low-balance
alerts go to their own URL, and budget alerts to theirs, signed: `X-Tollgate-Signature: t=<unix>,v1=<hex>`
where hex is HMAC-SHA256 of "<t>.<body>" under the webhook secret (as Stripe signs), so a receiver can check
both the sender and the freshness. Several replicas may dispatch at once: each claims a batch by pushing its
`next_attempt_at` forward (a lease), with `FOR UPDATE SKIP LOCKED` on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.credits.schema import billing_events, now_ms
from services.runtime.db import unreachable

log = logging.getLogger("tollgate.credits.outbox")

# While one dispatcher is posting a claimed event, others leave it alone for this long.
LEASE_MS = 60_000


# Built once per dialect (the values come as parameters): SQLAlchemy reuses its cache key and compiled SQL.
_INSERT_EVENT = {
    "postgresql": postgresql.insert(billing_events)
    .on_conflict_do_nothing(index_elements=["transaction_id"])
    .returning(billing_events.c.id),
    "sqlite": sqlite.insert(billing_events)
    .on_conflict_do_nothing(index_elements=["transaction_id"])
    .returning(billing_events.c.id),
}


async def enqueue_usage(
    conn: AsyncConnection,
    usage_id: int,
    request_id: str,
    hold_id: str,
    customer: str,
    code: str,
    properties: dict[str, Any],
    now: int,
) -> None:
    """Queue the Lago usage event of one billable usage row; the transaction id is the request id, the customer
    (`external_subscription_id`) the account that pays."""
    statement = _INSERT_EVENT["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    for transaction_id in (request_id, f"{request_id}:{hold_id}"):
        event = {
            "transaction_id": transaction_id,
            "external_subscription_id": customer,
            "code": code,
            "timestamp": now // 1000,
            "properties": properties,
        }
        # A request billed twice (two settled attempts) keeps both events apart instead of dropping one.
        row = {
            "kind": "usage",
            "transaction_id": transaction_id,
            "user_id": customer,
            "usage_id": usage_id,
            "payload": orjson.dumps({"event": event}).decode(),
            "created_at": now,
            "next_attempt_at": now,
            "attempts": 0,
            "state": "pending",
            "last_error": "",
        }
        inserted = (await conn.execute(statement, row)).first()
        if inserted is not None:
            return
    raise RuntimeError(f"billing event for request {request_id} and hold {hold_id} already queued")


async def enqueue_low_balance(conn: AsyncConnection, user_id: str, available: int, threshold: int, now: int) -> None:
    payload = {
        "type": "credits.low_balance",
        "user_id": user_id,
        "available_micro": available,
        "threshold_micro": threshold,
        "timestamp": now // 1000,
    }
    await conn.execute(
        billing_events.insert().values(
            kind="low_balance",
            transaction_id=f"low-balance:{user_id}:{uuid.uuid4().hex}",
            user_id=user_id,
            usage_id=None,
            payload=orjson.dumps(payload).decode(),
            created_at=now,
            next_attempt_at=now,
            attempts=0,
            state="pending",
            last_error="",
        )
    )


SIGNATURE_HEADER = "X-Tollgate-Signature"


@dataclass(frozen=True)
class Destination:
    url: str
    headers: dict[str, str]
    # When set, every post carries `X-Tollgate-Signature` (see `signature`).
    secret: str = field(default="", repr=False)


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The `X-Tollgate-Signature` value: `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, body: bytes, header: str, now: int, tolerance: int = 300) -> bool:
    """A receiver's check: the signature matches and its timestamp is within `tolerance` seconds of `now`."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    stamp = parts.get("t", "")
    if not (stamp.isascii() and stamp.isdigit()) or abs(now - int(stamp)) > tolerance:
        return False
    expected = signature(secret, body, int(stamp)).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class Dispatcher:
    """Drains the outbox: claim a due batch, post each event, mark it sent or schedule its retry."""

    def __init__(
        self,
        engine: AsyncEngine,
        destinations: dict[str, Destination],
        *,
        batch: int = 100,
        max_backoff_seconds: float = 300.0,
        timeout_seconds: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.engine = engine
        self.destinations = {kind: d for kind, d in destinations.items() if d.url}
        self.batch = batch
        self.max_backoff_ms = int(max_backoff_seconds * 1000)
        self.client = client or httpx.AsyncClient(timeout=timeout_seconds)

    async def close(self) -> None:
        await self.client.aclose()

    async def _claim(self, now: int) -> list[Any]:
        due = (
            select(billing_events.c.id)
            .where(
                billing_events.c.state == "pending",
                billing_events.c.next_attempt_at <= now,
                billing_events.c.kind.in_(list(self.destinations)),
            )
            .order_by(billing_events.c.id)
            .limit(self.batch)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        async with self.engine.begin() as conn:
            rows = (
                await conn.execute(
                    update(billing_events)
                    .where(billing_events.c.id.in_(due), billing_events.c.state == "pending")
                    .values(next_attempt_at=now + LEASE_MS)
                    .returning(
                        billing_events.c.id, billing_events.c.kind, billing_events.c.payload, billing_events.c.attempts
                    )
                )
            ).all()
        return sorted(rows, key=lambda r: int(r.id))

    async def dispatch_once(self) -> int:
        """Post every due event once; the number delivered."""
        if not self.destinations:
            return 0
        delivered = 0
        for event in await self._claim(now_ms()):
            outcome = await self._post(self.destinations[event.kind], event.payload)
            now = now_ms()
            values: dict[str, Any]
            if outcome is None:
                values = {"state": "sent", "sent_at": now, "attempts": event.attempts + 1, "last_error": ""}
                delivered += 1
            elif outcome.startswith("refused"):
                values = {"state": "dead", "attempts": event.attempts + 1, "last_error": outcome[:500]}
                log.error("billing event %s refused: %s", event.id, outcome)
            else:
                values = {
                    "attempts": event.attempts + 1,
                    "last_error": outcome[:500],
                    "next_attempt_at": now + self._backoff_ms(event.attempts + 1),
                }
            async with self.engine.begin() as conn:
                await conn.execute(update(billing_events).where(billing_events.c.id == event.id).values(**values))
        return delivered

    def _backoff_ms(self, attempts: int) -> int:
        base = min(self.max_backoff_ms, 500 * 2 ** min(attempts, 20))
        return int(base / 2 + random.random() * base / 2)

    async def _post(self, destination: Destination, payload: str) -> str | None:
        """None when delivered; otherwise why not ("refused: …" when retrying cannot help)."""
        body = payload.encode()
        headers = {"content-type": "application/json", **destination.headers}
        if destination.secret:
            headers[SIGNATURE_HEADER] = signature(destination.secret, body, int(time.time()))
        try:
            response = await self.client.post(destination.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        status = response.status_code
        # Lago answers 422 when it already holds an event with this transaction id: delivered.
        if 200 <= status < 300 or status == 409 or (status == 422 and b"already" in response.content):
            return None
        if status in (408, 425, 429) or status >= 500:
            return f"HTTP {status}"
        return f"refused: HTTP {status}"

    async def run(self, interval: float) -> None:
        """The background loop: dispatch what is due, then wait `interval` seconds."""
        while True:
            try:
                await self.dispatch_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not unreachable(exc):  # an outage is logged once, by the runtime
                    log.warning("billing dispatch failed: %s", exc)
            await asyncio.sleep(interval)
