"""Holds are a true worst case, seen from outside: `n` and a large tool list reserve proportionally more,
and a burst of requests against a slow upstream that bills the most it may never spends past the balance.

The whole suite runs as processes (`tests/e2e/support.py`); the demo upstream plays a provider that reports
the largest usage a request allows (`/_control` `usage: worst`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.launcher import Suite
from tests.e2e.support import balance_micro, bearer, cost_micro, create_key, reconcile, start_suite

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LINE: dict[str, Any] = {"model": "echo-wide", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 50}
TOOL: dict[str, Any] = {
    "type": "function",
    "function": {"name": "lookup", "description": "d" * 1000, "parameters": {"type": "object", "properties": {}}},
}
PRICE = (0.01, 0.02)  # echo-wide and echo-slow, credits per 1k tokens


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    running = start_suite(Path(tmp_path_factory.mktemp("holds")))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(suite: Suite) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{suite.host}:{suite.ports.gateway}", timeout=30) as session:
        yield session


@pytest.fixture(scope="module")
def admin(suite: Suite) -> str:
    return suite.bootstrap_keys()["admin_key"]


def _user_with(suite: Suite, http: httpx.Client, admin: str, micro: int) -> str:
    """A new user's key, the user's balance set to `micro` through the admin route."""
    user = f"holds-{uuid.uuid4().hex[:8]}"
    key = create_key(suite, user)
    delta = micro - balance_micro(http, key)
    reply = http.post(
        "/v1/admin/credits",
        headers=bearer(admin),
        json={"user_id": user, "amount": format(Decimal(delta).scaleb(-6), "f"), "kind": "adjustment", "reason": "t"},
    )
    assert reply.status_code == 201, reply.text
    assert balance_micro(http, key) == micro
    return key


def _estimate(http: httpx.Client, key: str, body: dict[str, Any]) -> float:
    reply = http.post("/v1/models/select", json=body, headers=bearer(key))
    assert reply.status_code == 200, reply.text
    return float(reply.json()["candidates"][0]["estimated_cost"])


def test_n_and_a_large_tool_list_need_the_credits_of_their_worst_case(
    suite: Suite, http: httpx.Client, admin: str
) -> None:
    key = _user_with(suite, http, admin, 10_000)  # 0.01 credits: a one-line request holds about 0.0019
    many = {**LINE, "n": 128}
    tools = {**LINE, "tools": [TOOL] * 200}
    assert len(str(tools)) > 200_000

    # The estimate grows by exactly what the extra choices may write: 127 x 50 tokens at 0.02 per 1k.
    assert _estimate(http, key, many) - _estimate(http, key, LINE) == pytest.approx(127 * 50 * PRICE[1] / 1000)
    assert _estimate(http, key, tools) > 200_000 * PRICE[0] / 1000

    for body in (many, tools):
        refused = http.post("/v1/chat/completions", json=body, headers=bearer(key))
        assert refused.status_code == 402, refused.text
        assert refused.json()["error"]["code"] == "insufficient_credits"
    assert balance_micro(http, key) == 10_000  # refused before the provider: nothing charged

    served = http.post("/v1/chat/completions", json=LINE, headers=bearer(key))
    assert served.status_code == 200, served.text
    assert balance_micro(http, key) == 10_000 - cost_micro(1, 2, *PRICE)  # demo upstream: 1 + 2 words


def test_a_burst_against_a_slow_upstream_never_spends_past_the_balance(
    suite: Suite, http: httpx.Client, admin: str
) -> None:
    with httpx.Client(base_url=f"http://{suite.host}:{suite.ports.upstream}", timeout=10) as upstream:
        upstream.post("/_control", json={"model": "slow-300", "usage": "worst"}).raise_for_status()
    body = {"model": "echo-slow", "messages": [{"role": "user", "content": "hello world"}], "max_tokens": 100, "n": 4}
    charge = cost_micro(len("hello world"), 100 * 4, *PRICE)  # what the upstream bills for each one
    balance = 5 * charge + charge // 2
    key = _user_with(suite, http, admin, balance)

    async def burst() -> list[int]:
        async with httpx.AsyncClient(
            base_url=f"http://{suite.host}:{suite.ports.gateway}",
            timeout=30,
            limits=httpx.Limits(max_connections=60),
        ) as client:
            replies = await asyncio.gather(
                *(client.post("/v1/chat/completions", json=body, headers=bearer(key)) for _ in range(50))
            )
        return [r.status_code for r in replies]

    statuses = asyncio.run(burst())
    served = statuses.count(200)
    assert set(statuses) <= {200, 402}, statuses
    assert 1 <= served <= balance // charge, statuses
    left = balance_micro(http, key)
    assert left == balance - served * charge >= 0

    database = suite.data_dir / "credits.db"
    with sqlite3.connect(database) as db:
        overdrafts = db.execute("SELECT count(*) FROM journal WHERE kind = 'overdraft'").fetchone()[0]
        owed = db.execute("SELECT coalesce(sum(overdraft_micro), 0) FROM accounts").fetchone()[0]
    assert (overdrafts, owed) == (0, 0)
    report = reconcile(f"sqlite:///{database}")
    assert report.returncode == 0, report.stdout + report.stderr
