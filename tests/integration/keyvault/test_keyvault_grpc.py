"""The KeyVault servicer over real gRPC: authentication, user isolation, the router-only call, rotation."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import grpc
import pytest

from services.keyvault.bootstrap import BOOTSTRAP_FILE
from services.runtime.errors import CODE_KEY
from tests import identities
from tollgate.keyvault.v1 import keyvault_pb2 as pb
from tollgate.keyvault.v1 import keyvault_pb2_grpc

ALICE_OPENAI = "sk-alice-openai-0123456789abcdefghij"
BOB_OPENAI = "sk-bob-openai-0123456789abcdefghijkl"

RunningKeyvault = Any  # the conftest's dataclass (conftest modules are not importable)


def code_of(exc: grpc.aio.AioRpcError) -> str:
    return str(dict(exc.trailing_metadata() or ()).get(CODE_KEY, ""))


async def test_embedded_first_start_bootstrap_keys(keyvault: RunningKeyvault) -> None:
    path = keyvault.settings.data_dir / BOOTSTRAP_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    keys = json.loads(path.read_text())
    assert keys["demo_user"] == "demo"
    admin = await keyvault.stub.Authenticate(pb.AuthenticateRequest(api_key=keys["admin_key"]))
    demo = await keyvault.stub.Authenticate(pb.AuthenticateRequest(api_key=keys["demo_key"]))
    assert (admin.user_id, sorted(admin.scopes)) == ("admin", ["admin", "user"])
    assert (demo.user_id, list(demo.scopes)) == ("demo", ["user"])


async def test_authenticate_refuses_revoked_expired_and_unknown_keys(keyvault: RunningKeyvault) -> None:
    stub = keyvault.stub
    live = await stub.CreateApiKey(pb.CreateApiKeyRequest(user_id="alice", scopes=["user"], rpm_limit=30))
    soon = int(time.time() * 1000) + 300
    expiring = await stub.CreateApiKey(pb.CreateApiKeyRequest(user_id="alice", expires_unix_ms=soon))
    principal = await stub.Authenticate(pb.AuthenticateRequest(api_key=live.api_key))
    assert (principal.user_id, principal.key_id, principal.rpm_limit) == ("alice", live.info.key_id, 30)

    await stub.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=live.info.key_id, user_id="alice"))
    await asyncio.sleep(max(0.0, soon / 1000 - time.time()) + 0.01)
    for key in (live.api_key, expiring.api_key, "tg-" + "x" * 43, "not-a-key"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Authenticate(pb.AuthenticateRequest(api_key=key))
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert code_of(err.value) == "invalid_api_key"
        assert err.value.details() == "Incorrect API key provided"


async def test_user_a_cannot_touch_user_b_keys(keyvault: RunningKeyvault) -> None:
    stub = keyvault.stub
    await stub.PutProviderKey(pb.PutProviderKeyRequest(user_id="alice", provider="openai", api_key=ALICE_OPENAI))
    await stub.PutProviderKey(pb.PutProviderKeyRequest(user_id="bob", provider="openai", api_key=BOB_OPENAI))
    bob_gateway = await stub.CreateApiKey(pb.CreateApiKeyRequest(user_id="bob"))

    alice_list = await stub.ListProviderKeys(pb.ListProviderKeysRequest(user_id="alice"))
    assert [(k.user_id, k.masked) for k in alice_list.keys] == [("alice", "sk-…ghij")]
    assert ALICE_OPENAI not in str(alice_list)

    deleted = await stub.DeleteProviderKey(pb.DeleteProviderKeyRequest(user_id="alice", provider="openai"))
    assert deleted.deleted
    again = await stub.DeleteProviderKey(pb.DeleteProviderKeyRequest(user_id="alice", provider="openai"))
    assert not again.deleted
    bob = await keyvault.router.GetProviderKey(pb.GetProviderKeyRequest(user_id="bob", provider="openai"))
    assert (bob.found, bob.api_key) == (True, BOB_OPENAI)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=bob_gateway.info.key_id, user_id="alice"))
    assert code_of(err.value) == "not_found"
    assert (await stub.Authenticate(pb.AuthenticateRequest(api_key=bob_gateway.api_key))).user_id == "bob"
    assert [k.user_id for k in (await stub.ListApiKeys(pb.ListApiKeysRequest(user_id="alice"))).keys] == []


async def test_get_provider_key_is_for_the_router_only(keyvault: RunningKeyvault) -> None:
    stub = keyvault.stub
    await stub.PutProviderKey(pb.PutProviderKeyRequest(user_id="alice", provider="openai", api_key=ALICE_OPENAI))
    request = pb.GetProviderKeyRequest(user_id="alice", provider="openai")
    forged = "tgid1." + "e30" + ".c2ln"  # a token shape with no valid signature
    for metadata in ((), (("x-tollgate-identity", forged),), (("x-tollgate-router-token", "anything"),)):
        async with identities.aio_channel(keyvault.address, None) as chan:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await keyvault_pb2_grpc.KeyVaultStub(chan).GetProviderKey(request, metadata=metadata)
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert code_of(err.value) == "unauthenticated"
    for caller in ("gateway", "operator"):
        async with identities.aio_channel(keyvault.address, caller) as chan:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await keyvault_pb2_grpc.KeyVaultStub(chan).GetProviderKey(request)
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert code_of(err.value) == "permission_denied"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetProviderKey(request)  # the gateway, even acting for an admin
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    secret = await keyvault.router.GetProviderKey(request)
    assert (secret.found, secret.api_key) == (True, ALICE_OPENAI)
    none = await keyvault.router.GetProviderKey(pb.GetProviderKeyRequest(user_id="alice", provider="groq"))
    assert not none.found and not none.api_key

    events = (await stub.ListAuditEvents(pb.ListAuditEventsRequest(user_id="alice"))).events
    refused = [e for e in events if (e.action, e.outcome) == ("provider_key.reveal", "denied")]
    assert {e.actor for e in refused} >= {"unknown caller", "the gateway", "the operator"}
    assert ("provider_key.put", "ok") in {(e.action, e.outcome) for e in events}
    assert ALICE_OPENAI not in str(events)


async def test_admin_calls_need_an_admin_principal(keyvault: RunningKeyvault) -> None:
    create = pb.CreateApiKeyRequest(user_id="mallory", scopes=["admin", "user"])
    async with identities.aio_channel(keyvault.address, "gateway") as chan:
        plain = keyvault_pb2_grpc.KeyVaultStub(identities.ActingChannel(chan, "mallory", ["user"]))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await plain.CreateApiKey(create)
        # The gateway may call it for a team admin only: held to the team it names, here none.
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "needs the team it acts for" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await plain.RotateMasterKey(pb.RotateMasterKeyRequest())
        assert "the gateway acting for mallory may not call RotateMasterKey" in (err.value.details() or "")
    for caller in ("router", None):
        async with identities.aio_channel(keyvault.address, caller) as chan:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await keyvault_pb2_grpc.KeyVaultStub(chan).CreateApiKey(create)
        expected = grpc.StatusCode.PERMISSION_DENIED if caller else grpc.StatusCode.UNAUTHENTICATED
        assert err.value.code() is expected
    async with identities.aio_channel(keyvault.address, "operator") as chan:
        made = await keyvault_pb2_grpc.KeyVaultStub(chan).CreateApiKey(create)
    assert made.api_key.startswith("tg-")


async def test_bad_input_is_invalid_argument_naming_the_parameter(keyvault: RunningKeyvault) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await keyvault.stub.PutProviderKey(pb.PutProviderKeyRequest(user_id="alice", provider="openai"))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert dict(err.value.trailing_metadata() or ()).get("tollgate-param") == "api_key"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await keyvault.stub.CreateApiKey(pb.CreateApiKeyRequest(user_id="alice", scopes=["root"]))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
