"""The gateway's shared state: Redis when configured, else process memory.

Four uses, each atomic on both backends: fixed-window rate-limit counters (one Lua script checks every
window and counts the request, so replicas sharing Redis agree exactly), leases of requests in flight (a sorted
set per key scored by each lease's end, on Redis's clock: a lease its gateway never returns lapses), idempotency
records (`SET NX`, compare-and-set), and cached responses. When Redis stops answering, limits, leases and the
cache keep working on in-process state (counted in a metric, logged once, Redis tried again after a short
pause); idempotency records do not: with Redis configured but unreachable they raise `Unavailable` (503),
because a record kept in one process's memory would let a retry through another replica run and be charged again.
In memory, records, kept values (stored responses, console sessions) and cached responses live in separate
stores, so cache entries never evict a record or a kept value.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar, cast

from prometheus_client import Counter

from services.runtime.errors import DomainError
from services.runtime.ratelimit import MemoryCounters, RedisCounters, Verdict, Window

__all__ = ["MemoryStore", "RedisStore", "Store", "Unavailable", "Verdict", "Window"]

log = logging.getLogger("tollgate.gateway.store")
T = TypeVar("T")

FALLBACKS = Counter("tollgate_store_fallback_total", "Operations served from memory because Redis failed", ["op"])
REFUSED = Counter("tollgate_store_unavailable_total", "Idempotency operations refused because Redis failed", ["op"])
RETRY_REDIS_AFTER = 5.0


# Compare-and-set: replace (or delete, ARGV[2] == "") the value only if it is still the one this caller wrote.
_SWAP_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""


# Leases: drop the lapsed ones, then take one if fewer than ARGV[2] are held. Times are Redis's own.
_LEASE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[2]) then return {0, held} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, held + 1}
"""
_RENEW_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local done = redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return done
"""


class Unavailable(DomainError):
    """The shared store is configured but not answering: 503 with `Retry-After`."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("service_unavailable", "The gateway's shared store is unavailable; retry shortly")
        self.headers = {"retry-after": str(max(1, math.ceil(retry_after)))}


class MemoryStore(MemoryCounters):
    """Process-local state with the same semantics as the Redis store (its counters are the runtime's)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        super().__init__()
        self._values: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._leases: dict[str, dict[str, float]] = {}  # key -> lease token -> its end (monotonic)
        self.max_entries = max_entries

    def _live(self, key: str) -> bytes | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._values[key]
            return None
        self._values.move_to_end(key)
        return entry[1]

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def put(self, key: str, value: bytes, ttl: float, only_new: bool = False) -> bool:
        if only_new and self._live(key) is not None:
            return False
        self._values[key] = (time.monotonic() + ttl, value)
        self._values.move_to_end(key)
        while len(self._values) > self.max_entries:
            self._values.popitem(last=False)
        return True

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def lease(self, key: str, token: str, most: int, ttl: float) -> bool:
        now = time.monotonic()
        held = {t: end for t, end in self._leases.get(key, {}).items() if end > now}
        if len(held) >= most:
            self._leases[key] = held
            return False
        held[token] = now + ttl
        self._leases[key] = held
        return True

    async def renew(self, key: str, token: str, ttl: float) -> None:
        held = self._leases.get(key, {})
        if token in held:
            held[token] = time.monotonic() + ttl

    async def unlease(self, key: str, token: str) -> None:
        held = self._leases.get(key)
        if held is not None:
            held.pop(token, None)
            if not held:
                del self._leases[key]

    async def swap(self, key: str, expected: bytes, value: bytes | None, ttl: float) -> bool:
        if self._live(key) != expected:
            return False
        if value is None:
            await self.delete(key)
        else:
            await self.put(key, value, ttl)
        return True


class RedisStore(RedisCounters):
    """Redis, for values and records; its counters are the runtime's."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._swap = self.client.register_script(_SWAP_SCRIPT)
        self._lease = self.client.register_script(_LEASE_SCRIPT)
        self._renew = self.client.register_script(_RENEW_SCRIPT)

    async def lease(self, key: str, token: str, most: int, ttl: float) -> bool:
        taken, _held = await self._lease(keys=[key], args=[token, most, max(1, int(ttl * 1000))])
        return bool(taken)

    async def renew(self, key: str, token: str, ttl: float) -> None:
        await self._renew(keys=[key], args=[token, max(1, int(ttl * 1000))])

    async def unlease(self, key: str, token: str) -> None:
        await self.client.zrem(key, token)

    async def get(self, key: str) -> bytes | None:
        return cast(bytes | None, await self.client.get(key))

    async def put(self, key: str, value: bytes, ttl: float, only_new: bool = False) -> bool:
        return bool(await self.client.set(key, value, px=int(ttl * 1000), nx=only_new))

    async def delete(self, key: str) -> None:
        await self.client.delete(key)

    async def swap(self, key: str, expected: bytes, value: bytes | None, ttl: float) -> bool:
        return bool(await self._swap(keys=[key], args=[expected, value or b"", int(ttl * 1000)]))


class Store:
    """Redis first; memory when Redis is absent, or failing for anything but idempotency records."""

    def __init__(
        self,
        redis_url: str = "",
        prefix: str = "tollgate:",
        max_entries: int = 10_000,
        max_records: int = 100_000,
    ) -> None:
        self.prefix = prefix
        self.memory = MemoryStore(max_entries)  # rate-limit windows and cached responses
        self.records = MemoryStore(max_records)  # idempotency records, apart from the cache's LRU
        self.kept = MemoryStore(
            max_records
        )  # stored responses and sessions: another user's cache entries never evict them
        self.redis = RedisStore(redis_url) if redis_url else None
        self._redis_down_until = 0.0
        self._warned = False

    def _failed(self, exc: Exception) -> None:
        self._redis_down_until = time.monotonic() + RETRY_REDIS_AFTER
        if not self._warned:
            self._warned = True
            log.warning("Redis failed (%s: %s); using in-process state until it answers again", type(exc).__name__, exc)

    def _answered(self) -> None:
        if self._warned:
            self._warned = False
            log.info("Redis answers again; shared state restored")

    async def _run(
        self,
        op: str,
        remote: Callable[[RedisStore], Awaitable[T]],
        local: Callable[[MemoryStore], Awaitable[T]],
        memory: MemoryStore | None = None,
    ) -> T:
        if self.redis is not None and time.monotonic() >= self._redis_down_until:
            try:
                result = await remote(self.redis)
            except Exception as exc:
                self._failed(exc)
            else:
                self._answered()
                return result
        if self.redis is not None:
            FALLBACKS.labels(op).inc()
        return await local(memory or self.memory)

    async def _strict(
        self, op: str, remote: Callable[[RedisStore], Awaitable[T]], local: Callable[[MemoryStore], Awaitable[T]]
    ) -> T:
        """Like `_run` for idempotency records, but with Redis configured there is no fallback."""
        if self.redis is None:
            return await local(self.records)
        wait = self._redis_down_until - time.monotonic()
        if wait > 0:
            REFUSED.labels(op).inc()
            raise Unavailable(wait)
        try:
            result = await remote(self.redis)
        except Exception as exc:
            self._failed(exc)
            REFUSED.labels(op).inc()
            raise Unavailable(RETRY_REDIS_AFTER) from None
        self._answered()
        return result

    def _memory(self, kept: bool) -> MemoryStore:
        """In memory, where a value lives: `kept` (stored responses, sessions) apart from the cache's LRU."""
        return self.kept if kept else self.memory

    async def get(self, key: str, kept: bool = False) -> bytes | None:
        key = self.prefix + key
        return await self._run("get", lambda r: r.get(key), lambda m: m.get(key), self._memory(kept))

    async def put(self, key: str, value: bytes, ttl: float, only_new: bool = False, kept: bool = False) -> bool:
        key = self.prefix + key
        return await self._run(
            "put",
            lambda r: r.put(key, value, ttl, only_new),
            lambda m: m.put(key, value, ttl, only_new),
            self._memory(kept),
        )

    async def delete(self, key: str, kept: bool = False) -> None:
        key = self.prefix + key
        await self._run("delete", lambda r: r.delete(key), lambda m: m.delete(key), self._memory(kept))

    async def claim(self, key: str, value: bytes, ttl: float) -> bool:
        """Write the record only if there is none (`SET NX`)."""
        key = self.prefix + key
        return await self._strict(
            "claim", lambda r: r.put(key, value, ttl, only_new=True), lambda m: m.put(key, value, ttl, only_new=True)
        )

    async def record(self, key: str) -> bytes | None:
        key = self.prefix + key
        return await self._strict("record", lambda r: r.get(key), lambda m: m.get(key))

    async def swap(self, key: str, expected: bytes, value: bytes | None, ttl: float = 0.0) -> bool:
        """Replace the record (or delete it, `value` None) only while it still holds `expected`."""
        key = self.prefix + key
        return await self._strict(
            "swap", lambda r: r.swap(key, expected, value, ttl), lambda m: m.swap(key, expected, value, ttl)
        )

    async def check(self, windows: Sequence[Window], window_seconds: int = 60) -> Verdict:
        scoped = [Window(self.prefix + w.key, w.limit, w.requests) for w in windows]
        return await self._run(
            "limit", lambda r: r.check(scoped, window_seconds), lambda m: m.check(scoped, window_seconds)
        )

    async def add(self, key: str, amount: int, window_seconds: int = 60) -> int:
        key = self.prefix + key
        return await self._run(
            "add", lambda r: r.add(key, amount, window_seconds), lambda m: m.add(key, amount, window_seconds)
        )

    async def lease(self, key: str, token: str, most: int, ttl: float) -> bool:
        """Take one of `most` leases on `key` for `ttl` seconds (False: all are held). While Redis fails, each
        process counts its own leases in memory."""
        key = self.prefix + key
        return await self._run(
            "lease", lambda r: r.lease(key, token, most, ttl), lambda m: m.lease(key, token, most, ttl), self.kept
        )

    async def renew(self, key: str, token: str, ttl: float) -> None:
        key = self.prefix + key
        await self._run("renew", lambda r: r.renew(key, token, ttl), lambda m: m.renew(key, token, ttl), self.kept)

    async def unlease(self, key: str, token: str) -> None:
        key = self.prefix + key
        await self._run("unlease", lambda r: r.unlease(key, token), lambda m: m.unlease(key, token), self.kept)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.close()
