"""Rotation: rewrap to the active master key with traffic running, resume after an interruption, retire,
and refuse at start-up a key ring that cannot read what is stored."""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.keyvault import envelope, rotation
from services.keyvault.byok import ProviderKeys
from services.keyvault.last_used import LastUsed
from services.keyvault.masterkeys import KeyRing, MasterKeyError
from services.keyvault.schema import provider_keys
from services.runtime.errors import DomainError

USERS = [f"user{i}" for i in range(12)]
PROVIDERS = ["openai", "anthropic", "groq"]


def store(engine: AsyncEngine, ring: KeyRing) -> ProviderKeys:
    return ProviderKeys(engine, ring, "pepper", LastUsed(engine, provider_keys))


def rotated(ring: KeyRing) -> KeyRing:
    return KeyRing(keys={2: os.urandom(32), **ring.keys}, active=2)


async def fill(keys: ProviderKeys) -> dict[tuple[str, str], str]:
    expected = {}
    for user in USERS:
        for provider in PROVIDERS:
            value = f"sk-{user}-{provider}-initial-000000"
            await keys.put(user, provider, value)
            expected[(user, provider)] = value
    return expected


async def rotate_to_the_end(engine: AsyncEngine, ring: KeyRing, limit: int) -> int:
    total = 0
    cursor = 0
    while True:
        result = await rotation.rotate(engine, ring, limit, "test", after_id=cursor)
        total += result.rewrapped
        cursor = result.cursor
        if cursor == 0 and result.remaining == 0:
            return total


async def test_rotation_with_traffic_running_loses_nothing(engine: AsyncEngine, ring_v1: KeyRing) -> None:
    expected = await fill(store(engine, ring_v1))
    ring = rotated(ring_v1)
    new = store(engine, ring)
    old_replica = store(engine, ring_v1)  # a replica not yet restarted with the new ring
    allowed = {k: {v} for k, v in expected.items()}
    stop = asyncio.Event()
    rng = random.Random(7)
    reads = 0

    async def writer(keys: ProviderKeys, tag: str) -> None:
        n = 0
        while not stop.is_set():
            user, provider = rng.choice(USERS), rng.choice(PROVIDERS)
            n += 1
            if n % 7 == 0:
                if await keys.delete(user, provider):
                    expected.pop((user, provider), None)
                continue
            value = f"sk-{user}-{provider}-{tag}-{n:06d}"
            allowed.setdefault((user, provider), set()).add(value)
            await keys.put(user, provider, value)
            expected[(user, provider)] = value
            await asyncio.sleep(0)

    async def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            user, provider = rng.choice(USERS), rng.choice(PROVIDERS)
            secret = await new.reveal(user, provider)
            if secret is not None:
                assert secret.api_key in allowed[(user, provider)]
                reads += 1
            await asyncio.sleep(0)

    traffic = [
        asyncio.create_task(writer(new, "new")),
        asyncio.create_task(writer(old_replica, "old")),
        asyncio.create_task(reader()),
    ]
    rewrapped = 0
    cursor = 0
    for _ in range(200):
        result = await rotation.rotate(engine, ring, 4, "test", after_id=cursor)
        rewrapped += result.rewrapped
        cursor = result.cursor
        await asyncio.sleep(0)
        if cursor == 0 and rewrapped > 10:
            break
    stop.set()
    await asyncio.gather(*traffic)
    await rotate_to_the_end(engine, ring, 5)

    assert rewrapped > 0 and reads > 0
    status = await rotation.vault_status(engine, ring)
    assert {v.version: v.rows for v in status.versions} == {2: len(expected), 1: 0}
    async with engine.connect() as conn:
        stored = {(r.user_id, r.provider) for r in (await conn.execute(select(provider_keys))).all()}
    assert stored == set(expected)
    only_v2 = store(engine, KeyRing(keys={2: ring.keys[2]}, active=2))
    for (user, provider), value in expected.items():
        secret = await only_v2.reveal(user, provider)
        assert secret is not None and secret.api_key == value


async def test_an_interrupted_rotation_resumes(
    engine: AsyncEngine, ring_v1: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = await fill(store(engine, ring_v1))
    ring = rotated(ring_v1)
    first = await rotation.rotate(engine, ring, 5, "test")
    assert (first.rewrapped, first.remaining, first.total) == (5, len(expected) - 5, len(expected))

    # Interrupt the next pass in the middle of a batch, as Ctrl-C or a restart would.
    resealed = 0
    real_reseal = envelope.reseal

    def reseal_then_interrupt(*args: Any) -> bytes:
        nonlocal resealed
        resealed += 1
        if resealed == 8:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
        return real_reseal(*args)

    monkeypatch.setattr(envelope, "reseal", reseal_then_interrupt)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(rotate_to_the_end(engine, ring, 3))
    monkeypatch.setattr(envelope, "reseal", real_reseal)
    halfway = {v.version: v.rows for v in (await rotation.vault_status(engine, ring)).versions}
    assert halfway[1] == len(expected) - 5 - 7

    resumed = await rotate_to_the_end(engine, ring, 7)
    assert resumed == halfway[1]
    for (user, provider), value in expected.items():
        secret = await store(engine, ring).reveal(user, provider)
        assert secret is not None and secret.api_key == value


async def test_rows_that_do_not_open_are_passed_over(engine: AsyncEngine, ring_v1: KeyRing) -> None:
    keys = store(engine, ring_v1)
    await keys.put("alice", "openai", "sk-alice-000000000000000")
    await keys.put("bob", "openai", "sk-bob-00000000000000000")
    async with engine.begin() as conn:
        await conn.execute(update(provider_keys).where(provider_keys.c.user_id == "alice").values(provider="groq"))
    ring = rotated(ring_v1)
    result = await rotation.rotate(engine, ring, 10, "test")
    assert (result.rewrapped, result.failed, result.remaining) == (1, 1, 1)


async def test_retire_only_when_no_row_uses_the_version(engine: AsyncEngine, ring_v1: KeyRing) -> None:
    await rotation.reconcile(engine, ring_v1)
    await store(engine, ring_v1).put("alice", "openai", "sk-alice-000000000000000")
    ring = rotated(ring_v1)
    await rotation.reconcile(engine, ring)
    with pytest.raises(DomainError) as err:
        await rotation.retire(engine, ring, 1)
    assert err.value.code == "conflict"
    with pytest.raises(DomainError):
        await rotation.retire(engine, ring, 2)
    with pytest.raises(DomainError) as err:
        await rotation.retire(engine, ring, 9)
    assert err.value.code == "not_found"
    await rotate_to_the_end(engine, ring, 10)
    retired = await rotation.retire(engine, ring, 1)
    assert retired.retired_at
    # Once retired and unused, v1 may leave the configuration.
    await rotation.reconcile(engine, KeyRing(keys={2: ring.keys[2]}, active=2))


async def test_reconcile_refuses_a_ring_that_cannot_read_the_store(engine: AsyncEngine, ring_v1: KeyRing) -> None:
    await rotation.reconcile(engine, ring_v1)
    await store(engine, ring_v1).put("alice", "openai", "sk-alice-000000000000000")
    with pytest.raises(MasterKeyError, match="v1 is not the key"):
        await rotation.reconcile(engine, KeyRing(keys={1: os.urandom(32)}, active=1))
    with pytest.raises(MasterKeyError, match="need master key v1"):
        await rotation.reconcile(engine, KeyRing(keys={2: os.urandom(32)}, active=2))
