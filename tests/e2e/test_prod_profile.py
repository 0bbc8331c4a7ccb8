"""The production profile — PostgreSQL for every service's data, Redis for the edge — serves the SDK."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import openai
import pytest

from services.launcher import Ports, Suite, production_env
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.e2e.support import CATALOG, PLATFORM_KEY, balance_micro, cost_micro, create_key, reconcile, words


async def _drop(names: list[str]) -> None:
    conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    tmp = Path(tmp_path_factory.mktemp("prod"))
    prefix = f"tgtest_{uuid.uuid4().hex[:10]}"
    try:
        env = production_env(tmp / "data", POSTGRES_URL, REDIS_URL, prefix=prefix)
    except OSError as exc:
        pytest.fail(f"PostgreSQL is needed for the production profile: {exc}")
    env |= {
        "TOLLGATE_CATALOG": str(CATALOG),
        "TOLLGATE_E2E_PLATFORM_KEY": PLATFORM_KEY,
        "TOLLGATE_REDIS_PREFIX": f"{prefix}:",
    }
    suite = Suite(data_dir=tmp / "data", ports=Ports.free(), env=env, log_dir=tmp / "logs")
    suite.start()
    try:
        yield suite
        suite.stop()
        report = reconcile(env["TOLLGATE_CREDITS_DATABASE_URL"])
        assert report.returncode == 0, report.stdout + report.stderr
    finally:
        suite.stop()
        asyncio.run(_drop([f"{prefix}_{svc}" for svc in ("credits", "keyvault", "health")]))


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
