"""Rate limits per API key and per user (requests and tokens per minute), for every service that takes keys.

One limiter for the gateway (HTTP, counting in its own store) and the router (its native gRPC API, counting
in `SharedCounters`): the same windows, keys and Redis script, so with one Redis and one
`TOLLGATE_REDIS_PREFIX` a key's minute is counted once whether its requests come over HTTP or gRPC. Requests
are counted when they arrive, tokens when the provider has reported them. The limits of a key come from the
key itself (set when it was created) or from the defaults; a user's limits cover all of their keys. Without
Redis (or while it fails) the windows live in process memory.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter

from services.runtime.errors import DomainError
from services.runtime.settings import EdgeSettings
from tollgate.keyvault.v1 import keyvault_pb2

log = logging.getLogger("tollgate.ratelimit")

LIMITED = Counter("tollgate_rpc_rate_limited_total", "gRPC calls refused by a rate limit", ["scope", "kind"])
WINDOW = 60
RETRY_REDIS_AFTER = 5.0

# Checks every window, then counts the request in the request windows; the same script as the gateway's.
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
    """One counter: requests (counted now) or tokens (counted when known)."""

    key: str
    limit: int
    requests: bool


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    used: tuple[int, ...]
    blocked: int = -1  # index of the window that refused
    retry_after: float = 0.0


def window_left(window_seconds: int) -> float:
    """Seconds until the current window ends: windows are wall-clock minutes, whenever a counter began."""
    return window_seconds - (time.time() % window_seconds)


class Counters(Protocol):
    async def check(self, windows: Sequence[Window], window_seconds: int) -> Verdict: ...

    async def add(self, key: str, amount: int, window_seconds: int) -> int: ...


class MemoryCounters:
    def __init__(self) -> None:
        self._counters: dict[str, tuple[float, int]] = {}

    def _count(self, key: str) -> int:
        entry = self._counters.get(key)
        return 0 if entry is None or entry[0] <= time.monotonic() else entry[1]

    async def check(self, windows: Sequence[Window], window_seconds: int) -> Verdict:
        if len(self._counters) > 100_000:
            now = time.monotonic()
            self._counters = {k: v for k, v in self._counters.items() if v[0] > now}
        used = [self._count(w.key) for w in windows]
        for i, w in enumerate(windows):
            if w.limit > 0 and (used[i] + 1 > w.limit if w.requests else used[i] >= w.limit):
                left = min(self._counters[w.key][0] - time.monotonic(), window_left(window_seconds))
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


class RedisCounters:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._limit = self.client.register_script(_LIMIT_SCRIPT)

    async def check(self, windows: Sequence[Window], window_seconds: int) -> Verdict:
        ordered = sorted(range(len(windows)), key=lambda i: not windows[i].requests)
        n = sum(1 for w in windows if w.requests)
        args = [n, *(windows[i].limit for i in ordered), window_seconds]
        allowed, blocked, pttl, *used_sorted = await self._limit(keys=[windows[i].key for i in ordered], args=args)
        used = [0] * len(windows)
        for pos, i in enumerate(ordered):
            used[i] = int(used_sorted[pos])
        wait = min(max(int(pttl), 1) / 1000, window_left(window_seconds))
        return Verdict(bool(allowed), tuple(used), ordered[blocked - 1] if blocked else -1, wait)

    async def add(self, key: str, amount: int, window_seconds: int) -> int:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.incrby(key, amount)
            pipe.expire(key, window_seconds, nx=True)
            count, _ = await pipe.execute()
        return int(count)

    async def close(self) -> None:
        await self.client.aclose()


class SharedCounters:
    """Redis first (under `prefix`), process memory when Redis is absent or failing."""

    def __init__(self, redis_url: str = "", prefix: str = "tollgate:") -> None:
        self.prefix = prefix
        self.memory = MemoryCounters()
        self.redis = RedisCounters(redis_url) if redis_url else None
        self._down_until = 0.0

    async def _remote(self, call: Any) -> Any:
        if self.redis is None or time.monotonic() < self._down_until:
            return None
        try:
            return await call(self.redis)
        except Exception as exc:
            if self._down_until == 0.0:
                log.warning("Redis failed (%s); rate limits use process memory until it answers", type(exc).__name__)
            self._down_until = time.monotonic() + RETRY_REDIS_AFTER
            return None

    async def check(self, windows: Sequence[Window], window_seconds: int) -> Verdict:
        scoped = [Window(self.prefix + w.key, w.limit, w.requests) for w in windows]
        found = await self._remote(lambda r: r.check(scoped, window_seconds))
        return found if isinstance(found, Verdict) else await self.memory.check(scoped, window_seconds)

    async def add(self, key: str, amount: int, window_seconds: int) -> int:
        found = await self._remote(lambda r: r.add(self.prefix + key, amount, window_seconds))
        return int(found) if found is not None else await self.memory.add(self.prefix + key, amount, window_seconds)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.close()


def _reset(seconds: float) -> str:
    """OpenAI's reset format: `1s`, `6m0s`."""
    whole = max(1, math.ceil(seconds))
    return f"{whole // 60}m{whole % 60}s" if whole >= 60 else f"{whole}s"


@dataclass(frozen=True)
class Admission:
    windows: tuple[Window, ...]
    verdict: Verdict

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        left = window_left(WINDOW)
        for kind, requests in (("requests", True), ("tokens", False)):
            pairs = [
                (w, used)
                for w, used in zip(self.windows, self.verdict.used, strict=True)
                if w.requests is requests and w.limit > 0
            ]
            if not pairs:
                continue
            window, used = min(pairs, key=lambda p: p[0].limit - p[1])
            out[f"x-ratelimit-limit-{kind}"] = str(window.limit)
            out[f"x-ratelimit-remaining-{kind}"] = str(max(0, window.limit - used))
            out[f"x-ratelimit-reset-{kind}"] = _reset(left)
        return out


class RateLimited(DomainError):
    def __init__(self, message: str, headers: dict[str, str]) -> None:
        super().__init__("rate_limit_exceeded", message)
        self.headers = headers


def smallest(*limits: int) -> int:
    """The tightest of several limits, 0 (none) when none is set."""
    return min((n for n in limits if n > 0), default=0)


class Limiter:
    """The limits of a principal's key and user, counted in `counters`; refusals counted in `refused`."""

    def __init__(self, settings: EdgeSettings, counters: Counters, refused: Counter = LIMITED) -> None:
        self.settings = settings
        self.counters = counters
        self.refused = refused

    def _windows(self, principal: keyvault_pb2.Principal) -> tuple[Window, ...]:
        s, slot = self.settings, int(time.time() // WINDOW)
        return (
            Window(f"rl:key:{principal.key_id}:r:{slot}", principal.rpm_limit or s.rate_limit_key_rpm, True),
            Window(f"rl:user:{principal.user_id}:r:{slot}", s.rate_limit_user_rpm, True),
            Window(f"rl:key:{principal.key_id}:t:{slot}", principal.tpm_limit or s.rate_limit_key_tpm, False),
            Window(f"rl:user:{principal.user_id}:t:{slot}", s.rate_limit_user_tpm, False),
        )

    async def admit(self, principal: keyvault_pb2.Principal) -> Admission | None:
        """Count this request, or refuse it (RESOURCE_EXHAUSTED) with `retry-after` and the limit headers."""
        windows = self._windows(principal)
        if not any(w.limit > 0 for w in windows):
            return None
        verdict = await self.counters.check(windows, WINDOW)
        admission = Admission(windows, verdict)
        if not verdict.allowed:
            blocked = windows[verdict.blocked]
            scope = "key" if blocked.key.startswith("rl:key:") else "user"
            kind = "requests" if blocked.requests else "tokens"
            self.refused.labels(scope, kind).inc()
            raise RateLimited(
                f"Rate limit reached for {kind} per minute on this {'API key' if scope == 'key' else 'user'}: "
                f"limit {blocked.limit}. Retry after {math.ceil(verdict.retry_after)}s.",
                {**admission.headers(), "retry-after": str(max(1, math.ceil(verdict.retry_after)))},
            )
        return admission

    async def spend(self, admission: Admission | None, tokens: int) -> None:
        """Count the tokens a finished request used."""
        if admission is None or tokens <= 0:
            return
        for window in admission.windows:
            if not window.requests and window.limit > 0:
                await self.counters.add(window.key, tokens, WINDOW)

    async def admit_model(
        self, principal: keyvault_pb2.Principal, model: str, rpm: int, tpm: int, aliases: Sequence[str] = ()
    ) -> Admission | None:
        """Count a request for `model` in the key's windows for it and the model's own, or refuse it (429).
        A policy's limit may name the model by its id or any of its `aliases`: each applies, whatever name
        the request used (the windows are the id's)."""
        slot = int(time.time() // WINDOW)
        names = (model, *aliases)
        limits = [
            found[name]
            for found in (principal.policy.model_limits, principal.team_policy.model_limits)
            for name in names
            if name in found
        ]
        key_rpm = smallest(*(lim.rpm for lim in limits))
        key_tpm = smallest(*(lim.tpm for lim in limits))
        windows = (
            Window(f"rl:km:{principal.key_id}:{model}:r:{slot}", key_rpm, True),
            Window(f"rl:model:{model}:r:{slot}", rpm, True),
            Window(f"rl:km:{principal.key_id}:{model}:t:{slot}", key_tpm, False),
            Window(f"rl:model:{model}:t:{slot}", tpm, False),
        )
        if not any(w.limit > 0 for w in windows):
            return None
        verdict = await self.counters.check(windows, WINDOW)
        admission = Admission(windows, verdict)
        if not verdict.allowed:
            blocked = windows[verdict.blocked]
            scope = "key_model" if blocked.key.startswith("rl:km:") else "model"
            kind = "requests" if blocked.requests else "tokens"
            self.refused.labels(scope, kind).inc()
            whose = f"this API key's use of model '{model}'" if scope == "key_model" else f"model '{model}'"
            wait = max(1, math.ceil(verdict.retry_after))
            raise RateLimited(
                f"Rate limit reached for {kind} per minute on {whose}: limit {blocked.limit}. Retry after {wait}s.",
                {**admission.headers(), "retry-after": str(wait)},
            )
        return admission
