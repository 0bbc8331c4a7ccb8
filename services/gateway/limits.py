"""Rate limits per API key and per user: requests and tokens per minute, with OpenAI's headers; and failed
authentications per client address.

Requests are counted when they arrive; tokens when the provider has reported them, so a request is
refused for tokens once the minute's tokens are spent. The limits of a key come from the key itself
(set when it was created) or from the gateway's defaults; a user's limits cover all of their keys.
The limiter is the runtime's (`services/runtime/ratelimit.py`), the one the router applies to its native
gRPC API; here it counts in the gateway's store (Redis when configured, memory while Redis fails).
An address that presented `auth_failure_limit` refused keys within a minute gets 429 for every key it
presents until the minute ends, so guessing keys costs a minute per few guesses.

A request that names a model is also counted in that model's windows: the key's own RPM/TPM for the model
(its access policy's `model_limits`, and its team's) and the model's RPM/TPM across every caller (the catalog's
`rpm`/`tpm`). A key with `max_parallel` holds a lease while its request is in flight (`ParallelCap`): a lease
on Redis lapses `parallel_lease_seconds` after its gateway last renewed it, so a gateway that dies mid-request
frees its slots within that time. While Redis fails, each gateway process counts its own leases in memory
(a key may then have up to `max_parallel` in flight per process).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from dataclasses import dataclass, field

from prometheus_client import Counter
from starlette.requests import Request

from services.gateway.settings import GatewaySettings
from services.gateway.store import Store
from services.runtime import ratelimit
from services.runtime.ratelimit import WINDOW, Admission, RateLimited, Window, smallest
from tollgate.keyvault.v1 import keyvault_pb2

__all__ = [
    "LIMITED",
    "WINDOW",
    "Admission",
    "AuthFailures",
    "Limiter",
    "ParallelCap",
    "RateLimited",
    "Slot",
    "client_address",
]

LIMITED = Counter("tollgate_rate_limited_total", "Requests refused by a rate limit", ["scope", "kind"])
for _scope, _kind in (("key", "requests"), ("key", "tokens"), ("user", "requests"), ("user", "tokens")):
    LIMITED.labels(_scope, _kind)  # every series from the start: an alert's rate() has something to read
LIMITED.labels("address", "auth_failures")
for _scope, _kind in (("key_model", "requests"), ("key_model", "tokens"), ("model", "requests"), ("model", "tokens")):
    LIMITED.labels(_scope, _kind)
LIMITED.labels("key", "parallel")


class Limiter(ratelimit.Limiter):
    def __init__(self, settings: GatewaySettings, store: Store) -> None:
        super().__init__(settings, store, LIMITED)
        self.store = store


@dataclass
class Slot:
    """One request's lease on its key's parallel cap; `release` once it has finished (idempotent)."""

    store: Store
    key: str
    token: str
    renewing: asyncio.Task[None] | None = field(default=None, repr=False)
    released: bool = False

    async def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self.renewing is not None:
            self.renewing.cancel()
        await self.store.unlease(self.key, self.token)


class ParallelCap:
    """Requests of one key in flight at once, across every gateway sharing the store's Redis."""

    def __init__(self, store: Store, lease_seconds: float, longest: float) -> None:
        self.store = store
        self.lease = max(1.0, lease_seconds)
        self.longest = longest  # no request runs longer: a slot nobody released stops being renewed then

    async def _renew(self, key: str, token: str) -> None:
        until = time.monotonic() + self.longest
        while time.monotonic() < until:
            await asyncio.sleep(self.lease / 3)
            with contextlib.suppress(Exception):
                await self.store.renew(key, token, self.lease)

    async def acquire(self, principal: keyvault_pb2.Principal) -> Slot | None:
        """A lease for this request, None when the key has no cap; 429 when `max_parallel` are in flight."""
        cap = smallest(principal.policy.max_parallel, principal.team_policy.max_parallel)
        if cap <= 0:
            return None
        key, token = f"par:key:{principal.key_id}", uuid.uuid4().hex
        if not await self.store.lease(key, token, cap, self.lease):
            LIMITED.labels("key", "parallel").inc()
            raise RateLimited(
                f"Too many requests in flight on this API key: limit {cap} parallel requests. Retry after 1s.",
                {"retry-after": "1"},
            )
        slot = Slot(self.store, key, token)
        slot.renewing = asyncio.create_task(self._renew(key, token))
        return slot


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
