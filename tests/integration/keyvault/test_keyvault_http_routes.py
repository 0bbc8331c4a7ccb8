"""The gateway's key routes (`/v1/admin/keys`, `/v1/byok/keys`) against a real keyvault over gRPC and a small
fake router that reads BYOK keys the way the real one does (GetProviderKey, signed as the router)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import httpx
import pytest

from services.gateway.app import create_app
from services.gateway.clients import Clients
from services.gateway.edge import Edge
from services.gateway.settings import GatewaySettings
from services.keyvault.bootstrap import BOOTSTRAP_FILE
from services.runtime import identity
from services.runtime.channels import close_all
from services.runtime.errors import DomainError, rpc
from tests import identities
from tests.conftest import free_port
from tollgate.keyvault.v1 import keyvault_pb2, keyvault_pb2_grpc
from tollgate.router.v1 import router_pb2, router_pb2_grpc

GOOD = "sk-good-0123456789abcdefghij"
BAD = "sk-bad-0123456789abcdefghijk"


class FakeRouter(router_pb2_grpc.RouterServicer):
    def __init__(self, keyvault_address: str) -> None:
        self.channel = identities.aio_channel(keyvault_address, "router")
        self.keyvault = cast("keyvault_pb2_grpc.KeyVaultAsyncStub", keyvault_pb2_grpc.KeyVaultStub(self.channel))
        self.bodies: list[dict[str, Any]] = []

    @rpc
    async def ListModels(self, request: Any, context: Any) -> router_pb2.ListModelsReply:
        cheap = router_pb2.Model(id="gpt-mini", provider="openai", capabilities=["chat"], byok=True)
        cheap.price.input_micro_per_1k = 1
        dear = router_pb2.Model(id="gpt-big", provider="openai", capabilities=["chat"], byok=True)
        dear.price.input_micro_per_1k = 100
        return router_pb2.ListModelsReply(models=[dear, cheap])

    @rpc
    async def Chat(self, request: router_pb2.CompletionRequest, context: Any) -> router_pb2.CompletionReply:
        body = json.loads(request.body)
        self.bodies.append(body)
        secret = await self.keyvault.GetProviderKey(
            keyvault_pb2.GetProviderKeyRequest(user_id=request.caller.user_id, provider="openai")
        )
        if secret.api_key != GOOD:
            raise DomainError("provider_auth_failed", "openai rejected the API key (401)")
        return router_pb2.CompletionReply(body=b"{}", outcome=router_pb2.Outcome(byok=secret.found))


@pytest.fixture
async def http(keyvault: Any) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], FakeRouter]]:
    router_port = free_port()
    fake = FakeRouter(keyvault.address)  # type: ignore[abstract]
    server = grpc.aio.server()
    router_pb2_grpc.add_RouterServicer_to_server(fake, server)
    server.add_insecure_port(f"127.0.0.1:{router_port}")
    await server.start()
    settings = GatewaySettings(
        keyvault_addr=keyvault.address,
        router_addr=f"127.0.0.1:{router_port}",
        gateway_identity_key=identities.SECRETS["gateway"],
    )
    app = create_app(settings)
    app.state.edge = Edge(settings, Clients.connect(settings))
    identity.use(identity.signer_for(settings, identity.GATEWAY, settings.gateway_identity_key))  # as the lifespan does
    keys = json.loads((keyvault.settings.data_dir / BOOTSTRAP_FILE).read_text())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client, keys, fake
    await app.state.edge.store.close()
    await close_all()
    identity.use(None)
    await fake.channel.close()
    await server.stop(None)


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_admin_key_routes(http: Any) -> None:
    client, keys, _fake = http
    admin, demo = bearer(keys["admin_key"]), bearer(keys["demo_key"])
    created = await client.post("/v1/admin/keys", headers=admin, json={"user_id": "erin", "rpm_limit": 10})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith("tg-") and created.json()["rpm_limit"] == 10

    listed = await client.get("/v1/admin/keys", headers=admin, params={"user": "erin"})
    assert [k["id"] for k in listed.json()["data"]] == [created.json()["id"]]
    assert key not in listed.text

    for method, path in (("POST", "/v1/admin/keys"), ("GET", "/v1/admin/keys"), ("DELETE", "/v1/admin/keys/x")):
        refused = await client.request(method, path, headers=demo, json={"user_id": "demo"})
        assert refused.status_code == 403
        assert refused.json()["error"]["type"] == "permission_error"

    assert (await client.get("/v1/byok/keys", headers=bearer(key))).status_code == 200
    revoked = await client.delete(f"/v1/admin/keys/{created.json()['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    missing = await client.delete("/v1/admin/keys/ak_missing", headers=admin)
    assert missing.status_code == 404


async def test_byok_routes_and_isolation(http: Any) -> None:
    client, keys, fake = http
    admin, demo = bearer(keys["admin_key"]), bearer(keys["demo_key"])
    stored = await client.post("/v1/byok/keys", headers=demo, json={"provider": "openai", "api_key": GOOD})
    assert stored.status_code == 201, stored.text
    assert stored.json()["masked_key"] == "sk-…ghij" and GOOD not in stored.text

    unknown = await client.post("/v1/byok/keys", headers=demo, json={"provider": "nope", "api_key": GOOD})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "provider"
    assert GOOD not in unknown.text

    alias = await client.get("/api/v1/llm/byok/keys", headers=demo)
    assert [k["provider"] for k in alias.json()["data"]] == ["openai"]
    assert (await client.get("/v1/byok/keys", headers=admin)).json()["data"] == []

    tested = await client.post("/v1/byok/keys/openai/test", headers=demo)
    assert tested.json() == {
        "provider": "openai",
        "model": "gpt-mini",
        "valid": True,
        "status": "ok",
        "message": "The provider accepted the key",
    }
    assert fake.bodies[-1]["max_tokens"] == 1
    assert (await client.post("/v1/byok/keys/openai/test", headers=admin)).status_code == 404
    assert (await client.delete("/v1/byok/keys/openai", headers=admin)).status_code == 404

    await client.post("/api/v1/llm/byok/keys", headers=demo, json={"provider": "openai", "api_key": BAD})
    rejected = await client.post("/v1/byok/keys/openai/test", headers=demo)
    assert rejected.json()["valid"] is False and rejected.json()["status"] == "rejected"
    assert BAD not in rejected.text

    assert (await client.delete("/v1/byok/keys/openai", headers=demo)).status_code == 200
    assert (await client.get("/v1/byok/keys", headers=demo)).json()["data"] == []
