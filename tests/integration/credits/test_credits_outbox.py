"""The billing outbox against a fake Lago endpoint that fails sometimes: every billable usage arrives, at
least once, deduplicated by transaction id; BYOK and free usage never does."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson
import pytest
import uvicorn
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.credits import holds, usage
from services.credits.ledger import Ledger
from services.credits.outbox import Destination, Dispatcher
from services.credits.reconcile import reconcile
from services.credits.schema import billing_events
from services.credits.usage import UsageEntry


@dataclass
class FakeLago:
    """Answers 503 to every third call and loses the answer (after storing) to every fifth."""

    url: str = ""
    calls: int = 0
    stored: dict[str, dict[str, object]] = field(default_factory=dict)
    alerts: list[dict[str, object]] = field(default_factory=list)
    authorization: set[str] = field(default_factory=set)

    async def events(self, request: Request) -> Response:
        self.calls += 1
        self.authorization.add(request.headers.get("authorization", ""))
        if self.calls % 3 == 0:
            return JSONResponse({"error": "try later"}, status_code=503)
        body = orjson.loads(await request.body())
        event = body["event"]
        if event["transaction_id"] in self.stored:
            return JSONResponse(
                {
                    "status": 422,
                    "error": "Unprocessable Entity",
                    "error_details": {"transaction_id": ["value_already_exist"]},
                },
                status_code=422,
            )
        self.stored[event["transaction_id"]] = event
        if self.calls % 5 == 0:
            return JSONResponse({"error": "lost"}, status_code=500)
        return JSONResponse({"event": event})

    async def alert(self, request: Request) -> Response:
        self.alerts.append(orjson.loads(await request.body()))
        return Response(status_code=204)


@pytest.fixture
async def fake_lago() -> AsyncIterator[FakeLago]:
    fake = FakeLago()
    app = Starlette(
        routes=[Route("/api/v1/events", fake.events, methods=["POST"]), Route("/alerts", fake.alert, methods=["POST"])]
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    server.should_exit = True
    await task


async def test_dispatcher_delivers_every_billable_usage_despite_failures(ledger: Ledger, fake_lago: FakeLago) -> None:
    for n in range(12):
        hold_id, _ = await holds.reserve(ledger, f"user{n % 3}", 100_000, f"b{n}:reserve", f"b{n}")
        entry = UsageEntry(
            request_id=f"b{n}", user_id="", model="demo", provider="demo", prompt_tokens=n, completion_tokens=2 * n
        )
        await holds.settle(ledger, hold_id, 1000 + n, f"b{n}:settle", entry)
    for rid, byok in (("own", True), ("free", False)):  # calls that hold nothing: never billed
        hold_id, _ = await holds.reserve(ledger, "user0", 0, f"{rid}:reserve", rid)
        await holds.settle(ledger, hold_id, 0, f"{rid}:settle", UsageEntry(request_id=rid, user_id="", byok=byok))
    await usage.record_usage(ledger, UsageEntry(request_id="hit", user_id="user0", cache_hit=True), "hit:u")
    released, _ = await holds.reserve(ledger, "user1", 100, "gone:reserve", "gone")
    await holds.release(ledger, released, "gone:release")

    dispatcher = Dispatcher(
        ledger.engine,
        {
            "usage": Destination(fake_lago.url + "/api/v1/events", {"authorization": "Bearer lago-test-key"}),
            "low_balance": Destination(fake_lago.url + "/alerts", {}),
        },
        batch=5,
        max_backoff_seconds=0.001,
    )
    try:
        for _ in range(30):
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

    assert not waiting
    assert set(fake_lago.stored) == {f"b{n}" for n in range(12)}
    assert fake_lago.calls > 12  # failures forced retries
    event = fake_lago.stored["b5"]
    assert event["external_subscription_id"] == "user2" and event["code"] == "llm_usage"
    assert event["properties"] == {
        "model": "demo",
        "provider": "demo",
        "deployment": "",
        "input_tokens": 5,
        "output_tokens": 10,
        "total_tokens": 15,
        "cost_micro": 1005,
        "cost": "0.001005",
    }
    assert fake_lago.authorization == {"Bearer lago-test-key"}
    assert (await reconcile(ledger.engine)).ok


async def test_refused_event_is_parked_and_alerts_flow(ledger: Ledger, fake_lago: FakeLago) -> None:
    hold_id, _ = await holds.reserve(ledger, "low", 9_000_000, "l:reserve", "l")
    await holds.settle(ledger, hold_id, 9_000_000, "l:settle")
    dispatcher = Dispatcher(
        ledger.engine,
        {
            "usage": Destination(fake_lago.url + "/nowhere", {}),
            "low_balance": Destination(fake_lago.url + "/alerts", {}),
        },
        max_backoff_seconds=0.001,
    )
    try:
        await dispatcher.dispatch_once()
    finally:
        await dispatcher.close()
    async with ledger.engine.connect() as conn:
        states = dict((await conn.execute(select(billing_events.c.kind, billing_events.c.state))).all())
    assert states == {"usage": "dead", "low_balance": "sent"}
    assert [(a["type"], a["user_id"], a["available_micro"]) for a in fake_lago.alerts] == [
        ("credits.low_balance", "low", 1_000_000)
    ]
