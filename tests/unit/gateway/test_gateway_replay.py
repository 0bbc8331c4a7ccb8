"""Idempotency records and the response cache over the in-process store."""

from __future__ import annotations

import pytest

from services.gateway.replay import Idempotency, ResponseCache, Stored, fingerprint
from services.gateway.store import Store
from services.runtime.errors import DomainError

STORED = Stored(200, {"content-type": "application/json"}, b'{"ok": true}')


async def test_claim_replay_conflict_and_reuse() -> None:
    idem = Idempotency(Store(), ttl=60)
    body = fingerprint("chat", b"{}")
    assert await idem.claim("u1", "k1", body) is None
    with pytest.raises(DomainError) as in_flight:
        await idem.claim("u1", "k1", body)
    assert in_flight.value.code == "conflict"
    await idem.complete("u1", "k1", body, STORED)
    assert await idem.claim("u1", "k1", body) == STORED
    with pytest.raises(DomainError) as reused:
        await idem.claim("u1", "k1", fingerprint("chat", b'{"other": 1}'))
    assert reused.value.code == "idempotency_key_reused"
    # Another user's identical key is a different record.
    assert await idem.claim("u2", "k1", body) is None


async def test_abandoned_claim_can_be_retried() -> None:
    idem = Idempotency(Store(), ttl=60)
    assert await idem.claim("u", "k", "h") is None
    await idem.abandon("u", "k")
    assert await idem.claim("u", "k", "h") is None


def test_cache_eligibility_and_scoping() -> None:
    cache = ResponseCache(Store(), ttl=60, enabled=True)
    assert cache.eligible({"temperature": 0})
    assert cache.eligible({"cache": True, "temperature": 0.7})
    assert not cache.eligible({"temperature": 0.7})
    assert not cache.eligible({"temperature": 0, "stream": True})
    assert not cache.eligible({"temperature": 0, "cache": False})
    assert not ResponseCache(Store(), ttl=60, enabled=False).eligible({"temperature": 0})
    payload = {"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "x"}]}
    assert ResponseCache.key("a", "chat", payload) != ResponseCache.key("b", "chat", payload)
    assert ResponseCache.key("a", "chat", payload) == ResponseCache.key("a", "chat", {**payload, "cache": True})


def test_stored_round_trip() -> None:
    assert Stored.load(STORED.dump()) == STORED
