"""One limiter for HTTP and the native gRPC API: the gateway's and the router's count the same windows."""

from __future__ import annotations

import time

import pytest

from services.gateway.limits import Limiter as GatewayLimiter
from services.gateway.settings import GatewaySettings
from services.gateway.store import Store
from services.router.settings import RouterSettings
from services.runtime.ratelimit import Limiter, MemoryCounters, RateLimited, SharedCounters
from tollgate.keyvault.v1 import keyvault_pb2

KEY = keyvault_pb2.Principal(user_id="ann", key_id="k-ann", rpm_limit=3)


def _same_minute() -> None:
    if time.time() % 60 > 55:
        time.sleep(61 - time.time() % 60)


@pytest.mark.redis
async def test_a_keys_minute_is_counted_once_over_http_and_grpc(redis_url: str, redis_prefix: str) -> None:
    store = Store(redis_url, redis_prefix)
    counters = SharedCounters(redis_url, redis_prefix)
    gateway = GatewayLimiter(GatewaySettings(), store)
    router = Limiter(RouterSettings(), counters)
    try:
        _same_minute()
        await gateway.admit(KEY)
        await router.admit(KEY)
        admission = await gateway.admit(KEY)
        assert admission is not None and admission.headers()["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(RateLimited) as refused:
            await router.admit(KEY)
        assert refused.value.headers["x-ratelimit-limit-requests"] == "3"
        assert int(refused.value.headers["retry-after"]) >= 1
    finally:
        await store.close()
        await counters.close()


async def test_tokens_refuse_once_the_minute_is_spent() -> None:
    settings = RouterSettings(rate_limit_user_tpm=10)
    limiter = Limiter(settings, MemoryCounters())
    user = keyvault_pb2.Principal(user_id="bo", key_id="k-bo")
    _same_minute()
    admission = await limiter.admit(user)
    await limiter.spend(admission, 10)
    with pytest.raises(RateLimited, match="tokens per minute on this user"):
        await limiter.admit(user)
    assert await Limiter(RouterSettings(), MemoryCounters()).admit(user) is None  # no limit, nothing counted


async def test_redis_trouble_falls_back_to_memory() -> None:
    counters = SharedCounters("redis://127.0.0.1:1/0", "x:")
    limiter = Limiter(RouterSettings(), counters)
    try:
        _same_minute()
        for _ in range(3):
            await limiter.admit(KEY)
        with pytest.raises(RateLimited):
            await limiter.admit(KEY)
    finally:
        await counters.close()
