"""Idempotent retries and the response cache: two ways of answering without calling a provider again.

`Idempotency-Key`: the first request with a key claims it (atomically, across replicas); a retry with the
same key and body within the TTL gets the stored response, without a second provider call or charge; the
same key with another body is refused (422); a retry while the first is still running is refused (409).
A request that fails releases its key so that the client may retry it.

The response cache answers deterministic requests (`temperature` 0, or `"cache": true` in the body) from
an earlier identical request of the same user. A hit makes no provider call and is not charged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import Counter
from starlette.responses import Response

from services.gateway.store import Store
from services.runtime.errors import DomainError

CACHE = Counter("tollgate_cache_total", "Response cache lookups", ["result"])
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


def fingerprint(route: str, body: bytes) -> str:
    return hashlib.sha256(route.encode() + b"\0" + body).hexdigest()


class Idempotency:
    def __init__(self, store: Store, ttl: float) -> None:
        self.store = store
        self.ttl = ttl

    @staticmethod
    def _key(user: str, key: str) -> str:
        return "idem:" + hashlib.sha256(f"{user}\0{key}".encode()).hexdigest()

    async def claim(self, user: str, key: str, body_hash: str) -> Stored | None:
        """Claim `key` for this request, or return the response stored for it."""
        if not key or len(key) > 255:
            raise DomainError("invalid_request", "Idempotency-Key must be 1 to 255 characters", "Idempotency-Key")
        record = self._key(user, key)
        pending = orjson.dumps({"hash": body_hash, "state": _PENDING.decode()})
        if await self.store.put(record, pending, self.ttl, only_new=True):
            return None
        raw = await self.store.get(record)
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

    async def complete(self, user: str, key: str, body_hash: str, stored: Stored) -> None:
        record = orjson.dumps({"hash": body_hash, "state": "done", "response": stored.dump().decode()})
        await self.store.put(self._key(user, key), record, self.ttl)

    async def abandon(self, user: str, key: str) -> None:
        await self.store.delete(self._key(user, key))


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
    def key(user: str, route: str, payload: dict[str, Any]) -> str:
        canonical = orjson.dumps({k: v for k, v in payload.items() if k != "cache"}, option=orjson.OPT_SORT_KEYS)
        return "cache:" + hashlib.sha256(f"{user}\0{route}\0".encode() + canonical).hexdigest()

    async def get(self, key: str) -> Stored | None:
        raw = await self.store.get(key)
        CACHE.labels("hit" if raw else "miss").inc()
        return Stored.load(raw) if raw else None

    async def put(self, key: str, stored: Stored) -> None:
        await self.store.put(key, stored.dump(), self.ttl)
