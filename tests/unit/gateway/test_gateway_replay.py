"""Idempotency records and the response cache over the in-process store."""

from __future__ import annotations

import asyncio

import pytest

from services.gateway.replay import Claim, Idempotency, ResponseCache, Stored, fingerprint
from services.gateway.store import Store
from services.runtime.errors import DomainError

STORED = Stored(200, {"content-type": "application/json"}, b'{"ok": true}')


async def test_claim_replay_conflict_and_reuse() -> None:
    idem = Idempotency(Store(), ttl=60, pending_ttl=30)
    body = fingerprint("chat", b"{}")
    claim = await idem.claim("u1", "k1", body)
    assert isinstance(claim, Claim)
    with pytest.raises(DomainError) as in_flight:
        await idem.claim("u1", "k1", body)
    assert in_flight.value.code == "conflict"
    await idem.complete(claim, STORED)
    assert await idem.claim("u1", "k1", body) == STORED
    with pytest.raises(DomainError) as reused:
        await idem.claim("u1", "k1", fingerprint("chat", b'{"other": 1}'))
    assert reused.value.code == "idempotency_key_reused"
    # Another user's identical key is a different record.
    assert isinstance(await idem.claim("u2", "k1", body), Claim)


async def test_abandoned_claim_can_be_retried() -> None:
    idem = Idempotency(Store(), ttl=60, pending_ttl=30)
    claim = await idem.claim("u", "k", "h")
    assert isinstance(claim, Claim)
    await idem.abandon(claim)
    assert isinstance(await idem.claim("u", "k", "h"), Claim)


async def test_a_pending_claim_lapses_with_its_deadline_and_a_result_keeps_the_ttl() -> None:
    idem = Idempotency(Store(), ttl=60, pending_ttl=0.05)
    assert isinstance(await idem.claim("u", "stuck", "h"), Claim)  # its gateway died: never settled
    done = await idem.claim("u", "done", "h")
    assert isinstance(done, Claim)
    await idem.complete(done, STORED)
    await asyncio.sleep(0.1)
    assert isinstance(await idem.claim("u", "stuck", "h"), Claim)
    assert await idem.claim("u", "done", "h") == STORED


async def test_a_lapsed_claim_does_not_overwrite_its_successor() -> None:
    idem = Idempotency(Store(), ttl=60, pending_ttl=0.05)
    late = await idem.claim("u", "k", "h")
    assert isinstance(late, Claim)
    await asyncio.sleep(0.1)
    successor = await idem.claim("u", "k", "h")
    assert isinstance(successor, Claim)
    await idem.abandon(late)
    await idem.complete(late, Stored(500, {}, b"stale"))
    with pytest.raises(DomainError) as still_running:
        await idem.claim("u", "k", "h")
    assert still_running.value.code == "conflict"
    await idem.complete(successor, STORED)
    assert await idem.claim("u", "k", "h") == STORED


def test_the_fingerprint_covers_what_shapes_the_answer() -> None:
    assert fingerprint("chat", b"{}") != fingerprint("chat", b"{}", "PRECISION", "")
    assert fingerprint("chat", b"{}", "", "openai") != fingerprint("chat", b"{}", "", "groq")


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
    # The X-Power-Level header changes the model that answers, so it is part of the key.
    assert ResponseCache.key("a", "chat", payload, "ECO") != ResponseCache.key("a", "chat", payload, "PRECISION")


def test_stored_round_trip() -> None:
    assert Stored.load(STORED.dump()) == STORED
