"""The gateway's shared state: Redis when configured, else process memory; Redis trouble falls back to memory.

Three uses, each atomic on both backends: fixed-window rate-limit counters (one Lua script checks every
window and counts the request, so replicas sharing Redis agree exactly), idempotency records (`SET NX`),
and cached responses. When Redis stops answering, requests keep flowing on the in-process state; the
fallback is counted in a metric and logged once, and Redis is tried again after a short pause.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

from prometheus_client import Counter

log = logging.getLogger("tollgate.gateway.store")
T = TypeVar("T")

FALLBACKS = Counter("tollgate_store_fallback_total", "Operations served from memory because Redis failed", ["op"])
RETRY_REDIS_AFTER = 5.0

_LIMIT_SCRIPT = """
local n = tonumber(ARGV[1])
local window = tonumber(ARGV[#ARGV])
local used = {}
for i = 1, #KEYS do
  used[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
for i = 1, #KEYS do
  local limit = tonumber(ARGV[i + 1])
  if limit > 0 and ((i <= n and used[i] + 1 > limit) or (i > n and used[i] >= limit)) then
    return {0, i, redis.call('PTTL', KEYS[i]), unpack(used)}
  end
end
for i = 1, n do
  used[i] = redis.call('INCR', KEYS[i])
  if used[i] == 1 then redis.call('PEXPIRE', KEYS[i], window * 1000) end
end
return {1, 0, 0, unpack(used)}
"""


@dataclass(frozen=True)
class Window:
    """One counter to check: requests (counted now) or tokens (counted when known)."""

    key: str
    limit: int
    requests: bool


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    used: tuple[int, ...]
    blocked: int = -1  # index of the window that refused
    retry_after: float = 0.0


class MemoryStore:
    """Process-local state with the same semantics as the Redis store."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._values: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._counters: dict[str, tuple[float, int]] = {}
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

    def _count(self, key: str) -> int:
        entry = self._counters.get(key)
        if entry is None or entry[0] <= time.monotonic():
            return 0
        return entry[1]

    async def check(self, windows: Sequence[Window], window_seconds: int) -> Verdict:
        if len(self._counters) > 100_000:
            now = time.monotonic()
            self._counters = {k: v for k, v in self._counters.items() if v[0] > now}
        used = [self._count(w.key) for w in windows]
        for i, w in enumerate(windows):
            if w.limit > 0 and (used[i] + 1 > w.limit if w.requests else used[i] >= w.limit):
                left = self._counters[w.key][0] - time.monotonic()
                return Verdict(False, tuple(used), i, max(left, 0.001))
        for i, w in enumerate(windows):
            if w.requests:
                used[i] = await self.add(w.key, 1, window_seconds)
        return Verdict(True, tuple(used))

    async def add(self, key: str, amount: int, window_seconds: int) -> int:
        expires, count = self._counters.get(key, (0.0, 0))
        if expires <= time.monotonic():
            expires, count = time.monotonic() + window_seconds, 0
        self._counters[key] = (expires, count + amount)
        return count + amount


class RedisStore:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._limit = self.client.register_script(_LIMIT_SCRIPT)

    async def get(self, key: str) -> bytes | None:
        return cast(bytes | None, await self.client.get(key))

    async def put(self, key: str, value: bytes, ttl: float, only_new: bool = False) -> bool:
        return bool(await self.client.set(key, value, px=int(ttl * 1000), nx=only_new))

    async def delete(self, key: str) -> None:
        await self.client.delete(key)

    async def check(self, windows: Sequence[Window], window_seconds: int) -> Verdict:
        ordered = sorted(range(len(windows)), key=lambda i: not windows[i].requests)
        keys = [windows[i].key for i in ordered]
        n = sum(1 for w in windows if w.requests)
        args = [n, *(windows[i].limit for i in ordered), window_seconds]
        allowed, blocked, pttl, *used_sorted = await self._limit(keys=keys, args=args)
        used = [0] * len(windows)
        for pos, i in enumerate(ordered):
            used[i] = int(used_sorted[pos])
        return Verdict(bool(allowed), tuple(used), ordered[blocked - 1] if blocked else -1, max(int(pttl), 1) / 1000)

    async def add(self, key: str, amount: int, window_seconds: int) -> int:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.incrby(key, amount)
            pipe.expire(key, window_seconds, nx=True)
            count, _ = await pipe.execute()
        return int(count)

    async def close(self) -> None:
        await self.client.aclose()


class Store:
    """Redis first, memory when Redis is absent or failing."""

    def __init__(self, redis_url: str = "", prefix: str = "tollgate:", max_entries: int = 10_000) -> None:
        self.prefix = prefix
        self.memory = MemoryStore(max_entries)
        self.redis = RedisStore(redis_url) if redis_url else None
        self._redis_down_until = 0.0
        self._warned = False

    async def _run(
        self, op: str, remote: Callable[[RedisStore], Awaitable[T]], local: Callable[[MemoryStore], Awaitable[T]]
    ) -> T:
        if self.redis is not None and time.monotonic() >= self._redis_down_until:
            try:
                result = await remote(self.redis)
            except Exception as exc:
                self._redis_down_until = time.monotonic() + RETRY_REDIS_AFTER
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "Redis failed (%s: %s); using in-process state until it answers again", type(exc).__name__, exc
                    )
            else:
                if self._warned:
                    self._warned = False
                    log.info("Redis answers again; shared state restored")
                return result
        if self.redis is not None:
            FALLBACKS.labels(op).inc()
        return await local(self.memory)

    async def get(self, key: str) -> bytes | None:
        key = self.prefix + key
        return await self._run("get", lambda r: r.get(key), lambda m: m.get(key))

    async def put(self, key: str, value: bytes, ttl: float, only_new: bool = False) -> bool:
        key = self.prefix + key
        return await self._run(
            "put", lambda r: r.put(key, value, ttl, only_new), lambda m: m.put(key, value, ttl, only_new)
        )

    async def delete(self, key: str) -> None:
        key = self.prefix + key
        await self._run("delete", lambda r: r.delete(key), lambda m: m.delete(key))

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

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.close()
