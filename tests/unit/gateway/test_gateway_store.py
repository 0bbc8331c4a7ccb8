"""The gateway's shared state: exact windows, NX claims and TTLs, the same on memory and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.gateway.store import MemoryStore, Store, Unavailable, Window


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield Store()
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    shared = Store(url, prefix)
    yield shared
    await shared.close()


async def test_request_window_admits_exactly_its_limit(store: Store) -> None:
    windows = [Window("w:key", 5, True)]
    verdicts = await asyncio.gather(*(store.check(windows) for _ in range(12)))
    assert sum(v.allowed for v in verdicts) == 5
    refused = next(v for v in verdicts if not v.allowed)
    assert refused.blocked == 0
    assert 0 < refused.retry_after <= 60


async def test_refusal_reports_every_window(store: Store) -> None:
    windows = [Window("w:k", 1, True), Window("w:u", 10, True), Window("w:t", 0, False)]
    assert (await store.check(windows)).allowed
    refused = await store.check(windows)
    assert not refused.allowed
    assert refused.used == (1, 1, 0)


async def test_token_window_refuses_once_spent(store: Store) -> None:
    windows = [Window("w:req", 0, True), Window("w:tok", 100, False)]
    assert (await store.check(windows)).allowed
    await store.add("w:tok", 100)
    verdict = await store.check(windows)
    assert not verdict.allowed and verdict.blocked == 1


async def test_only_new_put_is_a_claim(store: Store) -> None:
    assert await store.put("claim", b"a", ttl=5, only_new=True)
    assert not await store.put("claim", b"b", ttl=5, only_new=True)
    assert await store.get("claim") == b"a"
    await store.delete("claim")
    assert await store.get("claim") is None


async def test_values_expire() -> None:
    memory = MemoryStore()
    await memory.put("k", b"v", ttl=0.01)
    await asyncio.sleep(0.02)
    assert await memory.get("k") is None


async def test_unreachable_redis_falls_back_to_memory() -> None:
    store = Store("redis://127.0.0.1:9/0")
    windows = [Window("fallback", 2, True)]
    verdicts = [await store.check(windows) for _ in range(3)]
    assert [v.allowed for v in verdicts] == [True, True, False]
    assert await store.put("x", b"y", ttl=5)
    assert await store.get("x") == b"y"
    await store.close()


async def test_unreachable_redis_refuses_idempotency_records() -> None:
    store = Store("redis://127.0.0.1:9/0")
    for attempt in (store.claim("r", b"pending", 5), store.record("r"), store.swap("r", b"pending", None)):
        with pytest.raises(Unavailable) as refused:
            await attempt
        assert refused.value.kind.http_status == 503
        assert refused.value.code == "service_unavailable"
        assert 1 <= int(refused.value.headers["retry-after"]) <= 5
    await store.close()


async def test_records_swap_only_while_they_hold_the_expected_value(store: Store) -> None:
    assert await store.claim("rec", b"mine", 5)
    assert not await store.claim("rec", b"theirs", 5)
    assert not await store.swap("rec", b"theirs", b"done", 5)
    assert await store.swap("rec", b"mine", b"done", 5)
    assert await store.record("rec") == b"done"
    assert not await store.swap("rec", b"mine", None)
    assert await store.swap("rec", b"done", None)
    assert await store.record("rec") is None


async def test_cache_entries_never_evict_records() -> None:
    store = Store(max_entries=3)
    assert await store.claim("idem:1", b"pending", 60)
    for i in range(10):
        await store.put(f"cache:{i}", b"answer", 60)
    assert await store.record("idem:1") == b"pending"
    assert await store.get("cache:0") is None and await store.get("cache:9") == b"answer"


async def test_kept_values_are_never_evicted_by_the_cache() -> None:
    store = Store(max_entries=2)
    await store.put("responses:alice:r", b"kept", 60, kept=True)
    for i in range(5):
        await store.put(f"cache:{i}", b"x", 60)
    assert await store.get("responses:alice:r", kept=True) == b"kept"
    assert await store.get("responses:alice:r") is None  # apart from the cache's entries


async def test_leases_admit_exactly_their_cap_and_lapse_when_never_returned(store: Store) -> None:
    taken = await asyncio.gather(*(store.lease("par:k", f"t{i}", 3, 0.5) for i in range(10)))
    assert sum(taken) == 3
    assert not await store.lease("par:k", "late", 3, 0.5)
    held = [f"t{i}" for i, ok in enumerate(taken) if ok]
    await store.unlease("par:k", held[0])
    assert await store.lease("par:k", "late", 3, 0.5)
    await store.renew("par:k", "late", 5.0)
    await asyncio.sleep(0.7)  # the others were never returned (their gateway died): they lapse, "late" was renewed
    assert await store.lease("par:k", "a", 3, 5.0) and await store.lease("par:k", "b", 3, 5.0)
    assert not await store.lease("par:k", "c", 3, 5.0)


async def test_parallel_cap_of_a_key_and_its_team(store: Store) -> None:
    from services.gateway.limits import ParallelCap, RateLimited
    from tollgate.keyvault.v1 import keyvault_pb2 as kv

    cap = ParallelCap(store, 30.0, 60.0)
    principal = kv.Principal(
        key_id="k", policy=kv.AccessPolicy(max_parallel=3), team_policy=kv.AccessPolicy(max_parallel=2)
    )
    first, second = await cap.acquire(principal), await cap.acquire(principal)
    with pytest.raises(RateLimited) as err:
        await cap.acquire(principal)
    assert err.value.headers["retry-after"] == "1" and "limit 2 parallel" in err.value.message
    assert first is not None and second is not None
    await first.release()
    await first.release()  # twice gives back one slot only
    third = await cap.acquire(principal)
    assert third is not None
    with pytest.raises(RateLimited):
        await cap.acquire(principal)
    for slot in (second, third):
        await slot.release()
    assert await cap.acquire(kv.Principal(key_id="free")) is None
