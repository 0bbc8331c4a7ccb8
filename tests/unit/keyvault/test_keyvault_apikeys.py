"""Gateway API keys: format, keyed hashes, and `authenticate` refusing anything but a live key."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.keyvault.apikeys import ApiKeys, generate, key_hash, well_formed
from services.keyvault.last_used import LastUsed
from services.keyvault.schema import api_keys, audit_events
from services.runtime.errors import DomainError

PEPPER = "test-pepper-0123456789"


@pytest.fixture
def keys(engine: AsyncEngine) -> ApiKeys:
    return ApiKeys(engine, PEPPER, LastUsed(engine, api_keys, interval=60))


def test_generated_keys_are_tg_plus_32_random_bytes() -> None:
    key = generate()
    assert re.fullmatch(r"tg-[A-Za-z0-9_\-]{43}", key)
    assert well_formed(key)
    assert generate() != key


def test_hash_depends_on_the_pepper() -> None:
    key = generate()
    assert key_hash("a", key) != key_hash("b", key)


async def test_create_stores_only_the_keyed_hash(keys: ApiKeys, engine: AsyncEngine) -> None:
    key, info = await keys.create("alice", ["user"], name="laptop", rpm_limit=60, tpm_limit=1000)
    async with engine.connect() as conn:
        row = (await conn.execute(select(api_keys))).one()
        audit = (await conn.execute(select(audit_events))).all()
    assert key not in str(tuple(row)) and key not in str(audit)
    assert row.key_hash == key_hash(PEPPER, key)
    assert info.prefix == key[:7] + "…"
    principal = await keys.authenticate(key)
    assert (principal.user_id, principal.key_id, principal.scopes) == ("alice", info.key_id, ("user",))
    assert (principal.rpm_limit, principal.tpm_limit) == (60, 1000)


async def test_unknown_malformed_revoked_and_expired_keys_are_refused(keys: ApiKeys) -> None:
    key, info = await keys.create("alice")
    short_lived, _ = await keys.create("alice", expires_at=int(time.time() * 1000) + 50)
    for candidate in (generate(), "tg-short", "sk-" + "a" * 40, "", key + "x", key.upper()):
        with pytest.raises(DomainError) as err:
            await keys.authenticate(candidate)
        assert err.value.code == "invalid_api_key"
        assert candidate[3:] not in err.value.message or not candidate[3:]
    await keys.revoke(info.key_id)
    with pytest.raises(DomainError, match="Incorrect API key provided"):
        await keys.authenticate(key)
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            await keys.authenticate(short_lived)
        except DomainError as err:
            assert err.code == "invalid_api_key"
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("an expired key still authenticates")


async def test_expiry_in_the_past_and_unknown_scopes_are_refused(keys: ApiKeys) -> None:
    with pytest.raises(DomainError) as err:
        await keys.create("alice", expires_at=1)
    assert err.value.param == "expires_at"
    with pytest.raises(DomainError) as err:
        await keys.create("alice", ["root"])
    assert err.value.param == "scopes"
    with pytest.raises(DomainError) as err:
        await keys.create("")
    assert err.value.param == "user_id"


async def test_revoke_is_scoped_to_the_user_and_idempotent(keys: ApiKeys) -> None:
    _key, info = await keys.create("alice")
    with pytest.raises(DomainError) as err:
        await keys.revoke(info.key_id, user_id="bob")
    assert err.value.code == "not_found"
    first = await keys.revoke(info.key_id, user_id="alice")
    again = await keys.revoke(info.key_id)
    assert first.revoked_at and again.revoked_at == first.revoked_at


async def test_list_filters_by_user(keys: ApiKeys) -> None:
    await keys.create("alice")
    await keys.create("bob", ["admin", "user"])
    assert {k.user_id for k in await keys.list()} == {"alice", "bob"}
    assert [k.user_id for k in await keys.list("bob")] == ["bob"]
    assert (await keys.list("bob"))[0].scopes == ("admin", "user")


async def test_ensure_admin_is_idempotent(keys: ApiKeys) -> None:
    admin = generate()
    assert await keys.ensure_admin(admin) is True
    assert await keys.ensure_admin(admin) is False
    assert await keys.count() == 1
    assert (await keys.authenticate(admin)).scopes == ("admin", "user")


async def test_last_used_is_written_in_batches(keys: ApiKeys) -> None:
    key, _info = await keys.create("alice")
    await keys.authenticate(key)
    assert (await keys.list("alice"))[0].last_used_at is None
    assert await keys.last_used.flush() == 1
    stamped = (await keys.list("alice"))[0].last_used_at
    assert stamped is not None
    await keys.authenticate(key)
    assert await keys.last_used.flush() == 0  # coalesced: at most once per interval per key
