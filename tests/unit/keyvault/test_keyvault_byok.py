"""BYOK store: sealed at rest, masked in lists, one user's calls never touch another's rows."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.keyvault.byok import ProviderKeys, mask
from services.keyvault.last_used import LastUsed
from services.keyvault.masterkeys import KeyRing
from services.keyvault.schema import audit_events, provider_keys
from services.runtime.errors import DomainError

ALICE_KEY = "sk-alice-0123456789abcdefWXYZ"
BOB_KEY = "sk-ant-bob-0123456789abcdefQRST"


@pytest.fixture
def store(engine: AsyncEngine, ring_v1: KeyRing) -> ProviderKeys:
    return ProviderKeys(engine, ring_v1, "pepper-for-tests", LastUsed(engine, provider_keys))


@pytest.mark.parametrize(
    ("key", "masked"),
    [
        ("sk-proj-abcdefghijklmnopqrstuvwxyz1234", "sk-…1234"),
        ("sk-ant-api03-abcdefghijklmnop9876", "sk-…9876"),
        ("gsk_abcdefghijklmnopqrstu5678", "gsk…5678"),
        ("AIzaSyabcdefghijklmnopqrs0000", "AIz…0000"),
        ("whatever-abcdefghijklmn4321", "…4321"),
        ("short-key", "…"),
    ],
)
def test_mask(key: str, masked: str) -> None:
    assert mask(key) == masked


async def test_put_seals_and_reveal_opens(store: ProviderKeys, engine: AsyncEngine) -> None:
    info = await store.put("alice", "openai", ALICE_KEY, "work")
    assert (info.masked, info.label, info.master_key_version) == ("sk-…WXYZ", "work", 1)
    async with engine.connect() as conn:
        row = (await conn.execute(select(provider_keys))).one()
        audit = (await conn.execute(select(audit_events))).all()
    assert ALICE_KEY.encode() not in row.sealed
    assert ALICE_KEY not in str(audit)
    secret = await store.reveal("alice", "openai")
    assert secret is not None and secret.api_key == ALICE_KEY and secret.key_id == info.key_id


async def test_put_replaces_the_users_key_for_the_provider(store: ProviderKeys) -> None:
    first = await store.put("alice", "openai", ALICE_KEY)
    second = await store.put("alice", "openai", ALICE_KEY + "2")
    assert second.key_id != first.key_id
    assert [k.key_id for k in await store.list("alice")] == [second.key_id]
    secret = await store.reveal("alice", "openai")
    assert secret is not None and secret.api_key == ALICE_KEY + "2"


async def test_users_are_isolated(store: ProviderKeys) -> None:
    await store.put("alice", "openai", ALICE_KEY)
    await store.put("bob", "anthropic", BOB_KEY)
    assert [k.provider for k in await store.list("alice")] == ["openai"]
    assert await store.reveal("bob", "openai") is None
    assert await store.delete("bob", "openai") is False
    assert await store.delete("alice", "anthropic") is False
    assert await store.delete("alice", "openai") is True
    assert await store.list("alice") == []
    bob = await store.reveal("bob", "anthropic")
    assert bob is not None and bob.api_key == BOB_KEY


async def test_a_row_moved_to_another_user_does_not_open(store: ProviderKeys, engine: AsyncEngine) -> None:
    await store.put("alice", "openai", ALICE_KEY)
    async with engine.begin() as conn:
        await conn.execute(update(provider_keys).values(user_id="mallory"))
    with pytest.raises(DomainError) as err:
        await store.reveal("mallory", "openai")
    assert err.value.code == "internal_error"
    assert ALICE_KEY not in err.value.message


@pytest.mark.parametrize(
    ("provider", "key", "param"),
    [
        ("", ALICE_KEY, "provider"),
        ("Open AI", ALICE_KEY, "provider"),
        ("openai", "", "api_key"),
        ("openai", "sk-with space-0123456789", "api_key"),
    ],
)
async def test_bad_input_is_refused(store: ProviderKeys, provider: str, key: str, param: str) -> None:
    with pytest.raises(DomainError) as err:
        await store.put("alice", provider, key)
    assert (err.value.code, err.value.param) == ("invalid_request", param)
    if key:
        assert key not in err.value.message
