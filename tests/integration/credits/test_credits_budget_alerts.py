"""Budget alerts reach a real HTTP receiver once per threshold, signed so that the receiver can verify them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson
import pytest
import uvicorn
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.credits import budgets, holds
from services.credits.budgets import Budget
from services.credits.ledger import Ledger
from services.credits.outbox import Destination, Dispatcher, signature, verify
from services.credits.schema import billing_events
from services.runtime.errors import DomainError

MICRO = 1_000_000
SECRET = "whsec-test-0123456789"


@dataclass
class Receiver:
    """Checks each signature as a receiver would (by hand, not with our helper); fails the first post."""

    url: str = ""
    calls: int = 0
    received: list[dict[str, object]] = field(default_factory=list)
    bad: int = 0

    async def hook(self, request: Request) -> Response:
        self.calls += 1
        body = await request.body()
        parts = dict(p.split("=", 1) for p in request.headers.get("x-tollgate-signature", "").split(","))
        expected = hmac.new(SECRET.encode(), parts.get("t", "").encode() + b"." + body, hashlib.sha256).hexdigest()
        fresh = parts.get("t", "").isdigit() and abs(time.time() - int(parts["t"])) < 300
        if not (fresh and hmac.compare_digest(expected, parts.get("v1", ""))):
            self.bad += 1
            return Response(status_code=400)
        if self.calls == 1:
            return Response(status_code=503)  # the outbox retries
        self.received.append(orjson.loads(body))
        return Response(status_code=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    fake = Receiver()
    app = Starlette(routes=[Route("/hook", fake.hook, methods=["POST"])])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    fake.url = f"http://127.0.0.1:{port}/hook"
    yield fake
    server.should_exit = True
    await task


def test_signature_verifies_and_refuses_tampering_and_stale_stamps() -> None:
    body = b'{"type":"budget.threshold_reached"}'
    header = signature(SECRET, body, 1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify(SECRET, body, header, 1_700_000_100)
    assert not verify(SECRET, body + b" ", header, 1_700_000_100)
    assert not verify("another-secret", body, header, 1_700_000_100)
    assert not verify(SECRET, body, header, 1_700_000_000 + 301)
    assert not verify(SECRET, body, "t=abc,v1=00", 1_700_000_000)
    assert not verify(SECRET, body, "", 1_700_000_000)


async def test_each_threshold_is_delivered_once_signed(ledger: Ledger, receiver: Receiver) -> None:
    await ledger.grant("u1", 100 * MICRO, "g1")
    b = await budgets.save(
        ledger,
        Budget(
            budget_id="",
            scope="key",
            scope_id="k1",
            period="daily",
            timezone="Asia/Tokyo",
            limit_micro=10 * MICRO,
            alert_percents=(50, 80, 100),
        ),
    )
    dispatcher = Dispatcher(
        ledger.engine, {"budget_alert": Destination(receiver.url, {}, secret=SECRET)}, max_backoff_seconds=0.001
    )
    try:
        for i in range(12):
            try:
                hold_id, _ = await holds.reserve(ledger, "u1", MICRO, f"a{i}:0:reserve", f"a{i}", key_id="k1")
            except DomainError as refused:
                assert refused.code == "budget_exceeded"
                continue
            await holds.settle(ledger, hold_id, MICRO, f"a{i}:0:settle")
            await dispatcher.dispatch_once()
        for _ in range(50):
            await dispatcher.dispatch_once()
            async with ledger.engine.connect() as conn:
                waiting = (
                    await conn.execute(select(billing_events.c.id).where(billing_events.c.state != "sent"))
                ).all()
            if not waiting:
                break
            await asyncio.sleep(0.01)
    finally:
        await dispatcher.close()
    assert receiver.bad == 0 and receiver.calls == len(receiver.received) + 1
    assert [a["threshold_percent"] for a in receiver.received] == [50, 80, 100]
    assert {a["budget_id"] for a in receiver.received} == {b.budget_id}
    assert receiver.received[2]["spent_micro"] == 10 * MICRO
