"""Idempotent retries and the response cache: two ways of answering without calling a provider again.

`Idempotency-Key`: the first request with a key claims it (atomically, across replicas); a retry with the
same key and request within the TTL gets the stored response, without a second provider call or charge;
the same key with another request is refused (422); a retry while the first is still running is refused
(409). A request that fails, or a stream that does not end whole, releases its key so that the client may
retry it. A claim that is never settled (its gateway died) lapses with the request's deadline, not the
TTL. With Redis configured but unreachable, a request with a key is refused (503) rather than remembered
in one process only.

The response cache answers deterministic requests (`temperature` 0, or `"cache": true` in the body) from
an earlier identical request of the same user. A hit makes no provider call and is not charged.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import Counter
from starlette.responses import Response

from services.gateway.store import Store, Unavailable
from services.runtime.errors import DomainError

log = logging.getLogger("tollgate.gateway.replay")

CACHE = Counter("tollgate_cache_total", "Response cache lookups", ["result"])
for _result in ("hit", "miss"):
    CACHE.labels(_result)  # both series exist from the start, so a hit ratio is never "no data"
IDEMPOTENT_REPLAYS = Counter("tollgate_idempotent_replays_total", "Responses replayed for a repeated Idempotency-Key")

_PENDING = b"pending"
# Headers describing one particular response; everything else (x-request-id, limits) belongs to the new one.
_KEPT_HEADERS = ("content-type", "x-tollgate-provider", "x-tollgate-model", "x-tollgate-cost")


@dataclass(frozen=True)
class Stored:
    status: int
    headers: dict[str, str]
    body: bytes

    def dump(self) -> bytes:
        return orjson.dumps({"status": self.status, "headers": self.headers, "body": self.body.decode()})

    @classmethod
    def load(cls, raw: bytes) -> Stored:
        data = orjson.loads(raw)
        return cls(data["status"], data["headers"], data["body"].encode())

    @classmethod
    def of(cls, response: Response, body: bytes) -> Stored:
        headers = {k: v for k, v in response.headers.items() if k in _KEPT_HEADERS}
        return cls(response.status_code, headers, body)

    def response(self, extra: dict[str, str]) -> Response:
        return Response(self.body, self.status, headers={**self.headers, **extra})


def fingerprint(route: str, body: bytes, *context: str) -> str:
    """What makes two requests the same: the route, the body and whatever else shapes the answer."""
    return hashlib.sha256("\0".join((route, *context)).encode() + b"\0" + body).hexdigest()


@dataclass(frozen=True)
class Claim:
    """A request's hold on its Idempotency-Key: the record and the exact pending value it wrote."""

    record: str
    pending: bytes
    body_hash: str


class Idempotency:
    def __init__(self, store: Store, ttl: float, pending_ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self.pending_ttl = pending_ttl

    @staticmethod
    def _key(user: str, key: str) -> str:
        return "idem:" + hashlib.sha256(f"{user}\0{key}".encode()).hexdigest()

    async def claim(self, user: str, key: str, body_hash: str) -> Claim | Stored:
        """Claim `key` for this request, or return the response stored for it."""
        if not key or len(key) > 255:
            raise DomainError("invalid_request", "Idempotency-Key must be 1 to 255 characters", "Idempotency-Key")
        record = self._key(user, key)
        pending = orjson.dumps({"hash": body_hash, "state": _PENDING.decode(), "claim": secrets.token_hex(8)})
        if await self.store.claim(record, pending, self.pending_ttl):
            return Claim(record, pending, body_hash)
        raw = await self.store.record(record)
        if raw is None:  # expired between the two calls: claim it again
            return await self.claim(user, key, body_hash)
        held = orjson.loads(raw)
        if held["hash"] != body_hash:
            raise DomainError(
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different request body",
                "Idempotency-Key",
            )
        if held["state"] == _PENDING.decode():
            raise DomainError("conflict", "A request with this Idempotency-Key is still in progress", "Idempotency-Key")
        IDEMPOTENT_REPLAYS.inc()
        return Stored.load(held["response"].encode())

    async def complete(self, claim: Claim, stored: Stored) -> None:
        """Keep the response for the TTL, unless the claim lapsed meanwhile. The client has its answer either
        way: a store that fails now leaves the pending claim to lapse."""
        record = orjson.dumps({"hash": claim.body_hash, "state": "done", "response": stored.dump().decode()})
        try:
            await self.store.swap(claim.record, claim.pending, record, self.ttl)
        except Unavailable:
            log.warning("an Idempotency-Key's response was not stored: the shared store is unavailable")

    async def abandon(self, claim: Claim) -> None:
        """Free the key so that the client may retry: the request failed, or its stream did not end whole."""
        try:
            await self.store.swap(claim.record, claim.pending, None)
        except Unavailable:
            log.warning("an Idempotency-Key was not freed: the shared store is unavailable; its claim will lapse")


class ResponseCache:
    def __init__(self, store: Store, ttl: float, enabled: bool) -> None:
        self.store = store
        self.ttl = ttl
        self.enabled = enabled

    def eligible(self, payload: dict[str, Any]) -> bool:
        if not self.enabled or payload.get("stream") or payload.get("cache") is False:
            return False
        return payload.get("cache") is True or payload.get("temperature") == 0

    @staticmethod
    def key(user: str, route: str, payload: dict[str, Any], *context: str) -> str:
        """The body plus everything outside it that changes the answer (`context`: the power-level header)."""
        canonical = orjson.dumps({k: v for k, v in payload.items() if k != "cache"}, option=orjson.OPT_SORT_KEYS)
        scope = "\0".join((user, route, *context)) + "\0"
        return "cache:" + hashlib.sha256(scope.encode() + canonical).hexdigest()

    async def get(self, key: str) -> Stored | None:
        raw = await self.store.get(key)
        CACHE.labels("hit" if raw else "miss").inc()
        return Stored.load(raw) if raw else None

    async def put(self, key: str, stored: Stored) -> None:
        await self.store.put(key, stored.dump(), self.ttl)
