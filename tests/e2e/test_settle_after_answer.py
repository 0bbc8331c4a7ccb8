"""Settling after the answer, with real processes on SQLite and on PostgreSQL.

The router sends an answer once its settle is in its journal (synced to disk) and settles with credits
meanwhile. The crash this must survive: the answer delivered, credits not answering yet (frozen), the router
killed. The restarted router finds the settle in the journal and lands it: charged exactly once, the usage
row written, the hold gone, and reconcile clean.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.faults import Ledger
from services.launcher import Ports, Suite
from services.router.settlements import read_owed
from tests.e2e.support import (
    bearer,
    create_key,
    drop_suite_databases,
    eventually,
    production_suite_env,
    reconcile,
    start_suite,
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def running(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Suite, str]]:
    tmp = Path(tmp_path_factory.mktemp(f"settle-{request.param}"))
    if request.param == "sqlite":
        suite = start_suite(tmp)
        try:
            yield suite, f"sqlite:///{suite.data_dir / 'credits.db'}"
        finally:
            suite.stop()
        return
    prefix = f"tgtest_{uuid.uuid4().hex[:10]}"
    env = production_suite_env(tmp, prefix)
    suite = Suite(data_dir=tmp / "data", ports=Ports.free(), env=env, log_dir=tmp / "logs")
    suite.start()
    try:
        yield suite, env["TOLLGATE_CREDITS_DATABASE_URL"]
    finally:
        suite.stop()
        drop_suite_databases(prefix)


def _funded_key(suite: Suite) -> str:
    from tests.e2e.support import grpc_channel
    from tollgate.credits.v1 import credits_pb2, credits_pb2_grpc

    user = f"settle-{uuid.uuid4().hex[:8]}"
    key = create_key(suite, user)
    with grpc_channel(suite, "credits") as chan:
        credits_pb2_grpc.CreditsStub(chan).Grant(
            credits_pb2.GrantRequest(
                user_id=user, amount_micro=50_000_000, idempotency_key=f"grant-{user}", kind="grant", actor="e2e"
            ),
            timeout=10,
        )
    return key


def _balance(http: httpx.Client, key: str) -> dict[str, Any]:
    reply = http.get("/v1/credits", headers=bearer(key))
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def _journal_owes(suite: Suite, request_id: str) -> bool:
    folder = suite.data_dir / "router"
    return any(e.usage.request_id == request_id for p in folder.glob("settles-*.jsonl") for e in read_owed(p))


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_an_answer_whose_router_dies_before_the_settle_is_paid_once(running: tuple[Suite, str], stream: bool) -> None:
    suite, database_url = running
    ledger = Ledger(database_url)
    key = _funded_key(suite)
    rid = f"settle-crash-{uuid.uuid4().hex[:12]}"
    body = {"model": "slow-paid", "messages": [{"role": "user", "content": "pay for this later"}], "stream": stream}
    replies: list[httpx.Response] = []
    credits = suite.processes["credits"].pid
    with httpx.Client(base_url=f"http://{suite.host}:{suite.ports.gateway}", timeout=60) as http:
        before = _balance(http, key)

        def ask() -> None:
            reply = http.post("/v1/chat/completions", json=body, headers={**bearer(key), "X-Request-Id": rid})
            replies.append(reply)

        asking = threading.Thread(target=ask)
        asking.start()
        try:
            # The hold is taken and the provider has the request (it answers after 3 s): freeze credits.
            eventually(lambda: asyncio.run(ledger.pending()) > 0, "the request's hold")
            os.kill(credits, signal.SIGSTOP)
            asking.join(30)
            assert replies and replies[0].status_code == 200, replies and replies[0].text
            # Answered while credits cannot take a settle: the settle is owed in the router's journal.
            assert _journal_owes(suite, rid)
            suite.kill("router")
        finally:
            os.kill(credits, signal.SIGCONT)
        assert asyncio.run(ledger.settles([rid]))[rid] == 0
        suite.restart("router")
        eventually(lambda: suite.ready("router"), "the router back")
        eventually(lambda: asyncio.run(ledger.settles([rid]))[rid] == 1, "the owed settle landed", timeout=30)
        eventually(lambda: asyncio.run(ledger.pending()) == 0, "no hold left")
        time.sleep(1.0)  # a second settle would land by now
        assert asyncio.run(ledger.settles([rid]))[rid] == 1
        after = _balance(http, key)
        rows = http.get("/v1/usage", headers=bearer(key)).json()["data"]
    mine = [r for r in rows if r["request_id"] == rid]
    assert len(mine) == 1 and mine[0]["status"] == "ok" and mine[0]["cost_micro"] > 0
    assert before["balance_micro"] - after["balance_micro"] == mine[0]["cost_micro"]
    assert not _journal_owes(suite, rid)
    report = reconcile(database_url)
    assert report.returncode == 0, report.stdout + report.stderr
