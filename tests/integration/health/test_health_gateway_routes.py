"""The gateway's provider routes against a real ProviderHealth gRPC server (authentication stubbed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from starlette.requests import Request

from services.demo_upstream.server import Upstream
from services.gateway.app import create_app
from services.gateway.clients import Clients
from services.gateway.edge import Edge
from services.gateway.settings import GatewaySettings
from services.health.access import ACCESS
from services.health.servicer import ProviderHealthServicer
from services.health.targets import Target
from services.runtime import identity
from services.runtime.channels import close_all
from services.runtime.errors import DomainError
from tests import identities
from tollgate.health.v1 import health_pb2_grpc
from tollgate.keyvault.v1 import keyvault_pb2

from .conftest import FakeClock, MakeMonitor


async def _principal(self: Edge, request: Request) -> keyvault_pb2.Principal:
    key = request.headers.get("authorization", "").removeprefix("Bearer ")
    if key not in ("user", "admin"):
        raise DomainError("invalid_api_key", "Invalid API key")
    return keyvault_pb2.Principal(user_id=key, key_id=key, scopes=[key])


@pytest.fixture
async def http(
    tmp_path: Path, upstream: Upstream, make_monitor: MakeMonitor, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    targets = [Target("demo", upstream.base_url), Target("gone", "http://127.0.0.1:9/v1")]
    monitor = await make_monitor(targets, f"sqlite:///{tmp_path}/health.db", FakeClock())
    server = grpc.aio.server(interceptors=[identities.guard(ACCESS)])
    health_pb2_grpc.add_ProviderHealthServicer_to_server(ProviderHealthServicer(monitor), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    monkeypatch.setattr(Edge, "principal", _principal)
    settings = GatewaySettings(
        health_addr=f"127.0.0.1:{port}", data_dir=tmp_path, gateway_identity_key=identities.SECRETS["gateway"]
    )
    app = create_app(settings)
    app.state.edge = Edge(settings, Clients.connect(settings))
    identity.use(identity.signer_for(settings, identity.GATEWAY, settings.gateway_identity_key))  # as the lifespan does
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        yield client
    await app.state.edge.store.close()
    await close_all()
    identity.use(None)
    await server.stop(None)


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_providers_before_and_after_a_manual_check(http: httpx.AsyncClient) -> None:
    listed = await http.get("/v1/providers", headers=auth("user"))
    assert listed.status_code == 200, listed.text
    assert [(p["id"], p["state"]) for p in listed.json()["data"]] == [("demo", "unknown"), ("gone", "unknown")]

    refused = await http.post("/v1/admin/providers/health/check", headers=auth("user"))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"

    checked = await http.post("/api/v1/admin/llm/health/check", headers=auth("admin"), json={"providers": ["demo"]})
    assert checked.status_code == 200, checked.text
    assert checked.json()["status"] == "healthy" and checked.json()["checked"] == 1

    everything = await http.post("/v1/admin/providers/health/check", headers=auth("admin"))
    assert everything.json()["status"] == "degraded"

    health = (await http.get("/api/v1/llm/providers/health", headers=auth("user"))).json()
    by_id = {p["id"]: p for p in health["providers"]}
    assert by_id["demo"]["state"] == "healthy" and by_id["demo"]["p50_ms"] > 0
    assert by_id["gone"]["state"] == "down" and by_id["gone"]["endpoints"][0]["ejected"]
    assert health["status"] == "degraded"
    assert (await http.get("/api/v1/llm/providers", headers=auth("user"))).status_code == 200


async def test_bad_requests_are_openai_shaped(http: httpx.AsyncClient) -> None:
    assert (await http.get("/v1/providers/health")).status_code == 401
    unknown = await http.post("/v1/admin/providers/health/check", headers=auth("admin"), json={"providers": ["x"]})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["param"] == "providers"
    bad = await http.post("/v1/admin/providers/health/check", headers=auth("admin"), json={"providers": "demo"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "providers"
