"""Rate limits per API key and per user: requests and tokens per minute, with OpenAI's headers.

The limiter is the runtime's (`services/runtime/ratelimit.py`), the one the router applies to its native
gRPC API; here it counts in the gateway's store (Redis when configured, memory while Redis fails).
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter

from services.gateway.settings import GatewaySettings
from services.gateway.store import Store
from services.gateway.store import Window as StoreWindow
from services.runtime import ratelimit
from services.runtime.ratelimit import WINDOW, Admission, RateLimited, Verdict, Window

__all__ = ["LIMITED", "WINDOW", "Admission", "Limiter", "RateLimited"]

LIMITED = Counter("tollgate_rate_limited_total", "Requests refused by a rate limit", ["scope", "kind"])


class StoreCounters:
    """The gateway store's windows, as the runtime's limiter counts them."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def check(self, windows: Sequence[Window], window_seconds: int) -> Verdict:
        found = await self.store.check([StoreWindow(w.key, w.limit, w.requests) for w in windows], window_seconds)
        return Verdict(found.allowed, found.used, found.blocked, found.retry_after)

    async def add(self, key: str, amount: int, window_seconds: int) -> int:
        return await self.store.add(key, amount, window_seconds)


class Limiter(ratelimit.Limiter):
    def __init__(self, settings: GatewaySettings, store: Store) -> None:
        super().__init__(settings, StoreCounters(store), LIMITED)
        self.store = store
