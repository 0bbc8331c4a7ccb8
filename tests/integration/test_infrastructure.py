"""The suite's real dependencies answer: PostgreSQL (a database of our own) and Redis."""

from __future__ import annotations

import asyncio

import redis

from services.runtime.db import create_engine, ping


def test_postgres_database_of_our_own(postgres_url: str) -> None:
    async def check() -> bool:
        engine = create_engine(postgres_url)
        try:
            return await ping(engine)
        finally:
            await engine.dispose()

    assert asyncio.run(check())


def test_redis_round_trip(redis_url: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set(redis_prefix + "k", "v", ex=10)
    assert client.get(redis_prefix + "k") == b"v"
    client.close()
