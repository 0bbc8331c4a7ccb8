"""Rate limits per API key and per user: requests and tokens per minute, with OpenAI's headers; and failed
authentications per client address.

Requests are counted when they arrive; tokens when the provider has reported them, so a request is
refused for tokens once the minute's tokens are spent. The limits of a key come from the key itself
(set when it was created) or from the gateway's defaults; a user's limits cover all of their keys.
The limiter is the runtime's (`services/runtime/ratelimit.py`), the one the router applies to its native
gRPC API; here it counts in the gateway's store (Redis when configured, memory while Redis fails).
An address that presented `auth_failure_limit` refused keys within a minute gets 429 for every key it
presents until the minute ends, so guessing keys costs a minute per few guesses.
"""

from __future__ import annotations

import math
import time

from prometheus_client import Counter
from starlette.requests import Request

from services.gateway.settings import GatewaySettings
from services.gateway.store import Store
from services.runtime import ratelimit
from services.runtime.ratelimit import WINDOW, Admission, RateLimited, Window

__all__ = ["LIMITED", "WINDOW", "Admission", "AuthFailures", "Limiter", "RateLimited", "client_address"]

LIMITED = Counter("tollgate_rate_limited_total", "Requests refused by a rate limit", ["scope", "kind"])
for _scope, _kind in (("key", "requests"), ("key", "tokens"), ("user", "requests"), ("user", "tokens")):
    LIMITED.labels(_scope, _kind)  # every series from the start: an alert's rate() has something to read
LIMITED.labels("address", "auth_failures")


class Limiter(ratelimit.Limiter):
    def __init__(self, settings: GatewaySettings, store: Store) -> None:
        super().__init__(settings, store, LIMITED)
        self.store = store


def client_address(request: Request) -> str:
    """The client's address (a trusted proxy's `X-Forwarded-For` already applied by the HTTP server)."""
    return request.client.host if request.client else "unknown"


class AuthFailures:
    """Failed authentications per client address and minute (shared through Redis when configured)."""

    def __init__(self, limit: int, store: Store) -> None:
        self.limit = limit
        self.counters = store

    @staticmethod
    def _window(address: str) -> str:
        return f"rl:authfail:{address}:{int(time.time() // WINDOW)}"

    async def admit(self, address: str) -> None:
        """Refuse to look at any key from an address that has failed too often this minute."""
        if self.limit <= 0:
            return
        verdict = await self.counters.check((Window(self._window(address), self.limit, False),), WINDOW)
        if not verdict.allowed:
            LIMITED.labels("address", "auth_failures").inc()
            wait = max(1, math.ceil(verdict.retry_after))
            raise RateLimited(
                f"Too many failed authentications from this address: limit {self.limit} per minute. "
                f"Retry after {wait}s.",
                {"retry-after": str(wait)},
            )

    async def failed(self, address: str) -> None:
        if self.limit > 0:
            await self.counters.add(self._window(address), 1, WINDOW)
