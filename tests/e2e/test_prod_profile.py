"""The production profile — PostgreSQL for every service's data, Redis for the edge — serves the SDK."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy.engine import make_url

from services.launcher import Ports, Suite
from tests.conftest import POSTGRES_URL
from tests.e2e.support import (
    TcpProxy,
    balance_micro,
    bearer,
    cost_micro,
    create_key,
    drop_suite_databases,
    production_suite_env,
    reconcile,
    settled,
    words,
)


@pytest.fixture(scope="module")
def credits_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TcpProxy]:
    """Credits reaches its database through a relay the outage test cuts (the machine's server stays up)."""
    url = make_url(POSTGRES_URL)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory, credits_db: TcpProxy) -> Iterator[Suite]:
    tmp = Path(tmp_path_factory.mktemp("prod"))
    prefix = f"tgtest_{uuid.uuid4().hex[:10]}"
    env = production_suite_env(tmp, prefix)
    relayed = make_url(env["TOLLGATE_CREDITS_DATABASE_URL"]).set(host="127.0.0.1", port=credits_db.port)
    env["TOLLGATE_CREDITS_DATABASE_URL"] = relayed.render_as_string(hide_password=False)
    suite = Suite(data_dir=tmp / "data", ports=Ports.free(), env=env, log_dir=tmp / "logs")
    suite.start()
    try:
        yield suite
        suite.stop()
        report = reconcile(env["TOLLGATE_CREDITS_DATABASE_URL"])
        assert report.returncode == 0, report.stdout + report.stderr
    finally:
        suite.stop()
        drop_suite_databases(prefix)


def test_production_mode_serves_stream_and_charges_exactly(prod: Suite) -> None:
    key = create_key(prod, f"prod-{uuid.uuid4().hex[:8]}")
    with (
        openai.OpenAI(base_url=prod.base_url, api_key=key, max_retries=0) as client,
        httpx.Client(base_url=f"http://{prod.host}:{prod.ports.gateway}", timeout=30) as http,
    ):
        assert http.get("/health/ready").status_code == 200
        before = balance_micro(http, key)
        stream = client.chat.completions.create(
            model="echo-paid",
            messages=[{"role": "user", "content": "production says hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = "", None
        for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            usage = chunk.usage or usage
        assert text == "echo: production says hello"
        assert usage is not None
        expected = cost_micro(words("production says hello"), words(text), 0.01, 0.02)
        assert before - balance_micro(http, key) == expected


def test_production_limits_live_in_redis(prod: Suite) -> None:
    key = create_key(prod, f"prod-limit-{uuid.uuid4().hex[:8]}", rpm=2)
    body = {"model": "echo-free", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=f"http://{prod.host}:{prod.ports.gateway}", timeout=30) as http:
        codes = [
            http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}).status_code
            for _ in range(3)
        ]
    assert codes == [200, 200, 429]


def test_forty_concurrent_first_requests_of_a_new_user_are_all_served(prod: Suite) -> None:
    """Opening a new user's account on PostgreSQL does not race the first holds (no false 402s)."""
    key = create_key(prod, f"first-{uuid.uuid4().hex[:8]}")
    body = {"model": "echo-paid", "messages": [{"role": "user", "content": "first"}], "max_tokens": 5}

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=f"http://{prod.host}:{prod.ports.gateway}", timeout=30) as http:
            replies = await asyncio.gather(
                *(
                    http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
                    for _ in range(40)
                )
            )
        return [r.status_code for r in replies]

    assert asyncio.run(burst()) == [200] * 40


def test_a_keys_budget_under_concurrency_on_postgresql(prod: Suite) -> None:
    """A key's budget on PostgreSQL, reached by 30 concurrent SDK requests: 402 `budget_exceeded` past it, what
    was charged never above it, nothing left reserved, and `tollgate credits reconcile` clean."""
    admin = bearer(create_key(prod, f"ops-{uuid.uuid4().hex[:8]}", scopes=("admin",)))
    prompt = " ".join(["ab"] * 100)  # 100 tokens in, 101 out: about 3,000 micro-credits a request
    with httpx.Client(base_url=f"http://{prod.host}:{prod.ports.gateway}", timeout=30) as http:
        made = http.post("/v1/admin/keys", json={"user_id": f"budget-{uuid.uuid4().hex[:8]}"}, headers=admin)
        assert made.status_code == 201, made.text
        key, key_id = made.json()["key"], made.json()["id"]
        body = {"scope": "key", "scope_id": key_id, "period": "daily", "timezone": "UTC", "limit": "0.02"}
        budget = http.post("/v1/budgets", json=body, headers=admin)
        assert budget.status_code == 201, budget.text

        async def burst() -> list[Any]:
            async with openai.AsyncOpenAI(base_url=prod.base_url, api_key=key, max_retries=0, timeout=60) as sdk:
                return await asyncio.gather(
                    *(
                        sdk.chat.completions.create(
                            model="echo-paid", messages=[{"role": "user", "content": prompt}], max_tokens=101
                        )
                        for _ in range(30)
                    ),
                    return_exceptions=True,
                )

        results = asyncio.run(burst())
        refused = [r for r in results if isinstance(r, Exception)]
        assert all(isinstance(r, openai.APIStatusError) and r.status_code == 402 for r in refused), refused
        assert refused and len(refused) < len(results)
        assert {r.response.json()["error"]["code"] for r in refused if isinstance(r, openai.APIStatusError)} == {
            "budget_exceeded"
        }
        settled(http, key)
        after = next(b for b in http.get("/v1/budgets", headers=admin).json()["data"] if b["id"] == budget.json()["id"])
        rows = http.get("/v1/usage", params={"key": key_id, "limit": 100}, headers=bearer(key)).json()["data"]
        charged = sum(row["cost_micro"] for row in rows if row["status"] == "ok")
        assert after["reserved_micro"] == 0
        assert after["spent_micro"] == charged <= after["limit_micro"] == 20_000
    report = reconcile(prod.env["TOLLGATE_CREDITS_DATABASE_URL"])
    assert report.returncode == 0, report.stdout + report.stderr


def test_a_database_outage_is_503_with_retry_after_and_said_once(prod: Suite, credits_db: TcpProxy) -> None:
    """Credits' database goes away mid-load: clients get 503 `service_unavailable` with `Retry-After` (never a
    500 or a traceback), credits' log says once that it is unreachable and once that it is back, and service
    returns when the database does."""
    key = create_key(prod, f"prod-outage-{uuid.uuid4().hex[:8]}")
    body = {"model": "echo-paid", "messages": [{"role": "user", "content": "outage"}]}
    log = prod.log_dir / "credits.log" if prod.log_dir else None
    assert log is not None
    with httpx.Client(base_url=f"http://{prod.host}:{prod.ports.gateway}", timeout=30, headers=bearer(key)) as http:
        assert http.post("/v1/chat/completions", json=body).status_code == 200
        credits_db.stop()
        statuses = []
        for _ in range(20):
            reply = http.post("/v1/chat/completions", json=body)
            statuses.append(reply.status_code)
            if reply.status_code != 200:
                assert reply.status_code == 503, reply.text
                assert reply.json()["error"]["code"] == "service_unavailable"
                assert int(reply.headers["retry-after"]) >= 1
        assert 503 in statuses
        credits_db.start()
        deadline = time.monotonic() + 15
        while http.post("/v1/chat/completions", json=body).status_code != 200:
            assert time.monotonic() < deadline, "service did not come back with the database"
            time.sleep(0.2)
        deadline = time.monotonic() + 10  # the readiness check (every 2 s) says it is back
        while "database reachable again" not in log.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.2)
    text = log.read_text()
    assert text.count("database unreachable") == 1 and text.count("database reachable again") == 1
    assert "Traceback" not in text and "unhandled error" not in text
