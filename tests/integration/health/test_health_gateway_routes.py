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
from tollgate.health.v1 import health_pb2, health_pb2_grpc
from tollgate.keyvault.v1 import keyvault_pb2

from .conftest import FakeClock, MakeMonitor

HEALTH: dict[str, str] = {}  # the address of the fixture's health server


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
    HEALTH["addr"] = f"127.0.0.1:{port}"
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


async def test_an_admin_holds_a_provider_down_and_up_shown_and_audited(http: httpx.AsyncClient) -> None:
    held = await http.post(
        "/v1/providers/demo/maintenance", headers=auth("admin"), json={"state": "down", "reason": "vendor incident"}
    )
    assert held.status_code == 200, held.text
    assert held.json()["state"] == "down"
    assert held.json()["maintenance"] == {
        "state": "down",
        "reason": "vendor incident",
        "by": "user admin",
        "since_unix_ms": held.json()["maintenance"]["since_unix_ms"],
    }
    listed = {p["id"]: p for p in (await http.get("/v1/providers", headers=auth("user"))).json()["data"]}
    assert listed["demo"]["state"] == "down" and listed["demo"]["maintenance"]["reason"] == "vendor incident"
    assert listed["gone"]["maintenance"] is None

    up = await http.post("/v1/providers/gone/maintenance", headers=auth("admin"), json={"state": "up", "reason": "x"})
    assert up.json()["state"] == "healthy"  # its probes fail, the hold wins
    auto = await http.post("/v1/providers/demo/maintenance", headers=auth("admin"), json={"state": "auto"})
    assert auto.status_code == 200 and auto.json()["maintenance"] is None

    log = await http.get("/v1/admin/providers/maintenance", headers=auth("admin"))
    assert log.status_code == 200, log.text
    assert [(c["provider"], c["state"], c["actor"]) for c in log.json()["data"]] == [
        ("demo", "auto", "user admin"),
        ("gone", "up", "user admin"),
        ("demo", "down", "user admin"),
    ]
    only = await http.get("/v1/admin/providers/maintenance?provider=gone&limit=1", headers=auth("admin"))
    assert [c["state"] for c in only.json()["data"]] == ["up"]


async def test_a_normal_key_cannot_hold_providers_or_read_the_trail(http: httpx.AsyncClient) -> None:
    body = {"state": "down", "reason": "I want my rival's provider gone"}
    refused = await http.post("/v1/providers/demo/maintenance", headers=auth("user"), json=body)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert (await http.get("/v1/admin/providers/maintenance", headers=auth("user"))).status_code == 403
    assert (await http.post("/v1/providers/demo/maintenance", json=body)).status_code == 401
    listed = (await http.get("/v1/providers", headers=auth("user"))).json()["data"]
    assert all(p["maintenance"] is None for p in listed)


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/v1/providers/demo/maintenance", {"state": "sideways", "reason": "x"}, 400, "state"),
        ("/v1/providers/demo/maintenance", {"state": "down"}, 400, "reason"),
        ("/v1/providers/demo/maintenance", {"state": "down", "reason": 5}, 400, "reason"),
        ("/v1/providers/demo/maintenance", {"state": ["down"], "reason": "x"}, 400, "state"),
        ("/v1/providers/demo/maintenance", {"state": "down", "reason": "x", "until": 1}, 400, "until"),
        ("/v1/providers/demo/maintenance", {"state": "down", "reason": "a\x00b"}, 400, "reason"),
        ("/v1/providers/demo/maintenance", {"state": "down", "reason": "r" * 501}, 400, "reason"),
        ("/v1/providers/nope/maintenance", {"state": "down", "reason": "x"}, 404, "provider"),
        ("/v1/providers/demo/maintenance", [1], 400, None),
    ],
)
async def test_bad_maintenance_requests_are_openai_shaped(
    http: httpx.AsyncClient, path: str, body: object, status: int, param: str | None
) -> None:
    reply = await http.post(path, headers=auth("admin"), json=body)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["param"] == param
    assert (await http.get("/v1/admin/providers/maintenance?limit=0", headers=auth("admin"))).status_code == 400
    assert (await http.get("/v1/admin/providers/maintenance", headers=auth("admin"))).json()["data"] == []


async def test_a_direct_grpc_call_without_the_operator_or_gateway_identity_is_refused(
    http: httpx.AsyncClient,
) -> None:
    request = health_pb2.SetMaintenanceRequest(provider="demo", state="down", reason="x")
    async with grpc.aio.insecure_channel(HEALTH["addr"]) as plain:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health_pb2_grpc.ProviderHealthStub(plain).SetMaintenance(request, timeout=5)
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
    for name in (identity.ROUTER, identity.GATEWAY):  # the router, and the gateway acting for no admin
        async with identities.aio_channel(HEALTH["addr"], name) as signed:
            stub = health_pb2_grpc.ProviderHealthStub(signed)
            for call in (
                stub.SetMaintenance(request, timeout=5),
                stub.ListMaintenance(health_pb2.ListMaintenanceRequest(), timeout=5),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call
                assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    async with identities.aio_channel(HEALTH["addr"], identity.OPERATOR) as operator:
        stub = health_pb2_grpc.ProviderHealthStub(operator)
        reply = await stub.SetMaintenance(
            health_pb2.SetMaintenanceRequest(provider="demo", state="down", reason="cli", actor="cli:ops"), timeout=5
        )
        assert reply.providers[0].forced_by == "operator cli:ops"
    listed = (await http.get("/v1/providers", headers=auth("admin"))).json()["data"]
    assert [p["maintenance"] and p["maintenance"]["by"] for p in listed] == ["operator cli:ops", None]
    # a normal key sees the hold and its reason, not who made it
    shown = (await http.get("/v1/providers", headers=auth("user"))).json()["data"][0]["maintenance"]
    assert shown["reason"] == "cli" and "by" not in shown
