"""The real `python -m services.credits` process over gRPC: the contract, errors as statuses, the sweeper,
health that follows the database, the CLI, and the gateway's credits routes in front of it."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.requests import Request

from services.gateway.app import create_app
from services.gateway.clients import Clients
from services.gateway.edge import Edge
from services.gateway.routes import budgets as budget_routes
from services.gateway.routes.budgets import Reach
from services.gateway.settings import GatewaySettings
from services.runtime import identity
from services.runtime.channels import close_all
from services.runtime.errors import from_rpc_error
from tests import identities
from tollgate.credits.v1 import credits_pb2, credits_pb2_grpc
from tollgate.keyvault.v1 import keyvault_pb2

ROOT = Path(__file__).resolve().parents[3]
MICRO = 1_000_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Running:
    address: str
    process: subprocess.Popen[bytes]


def _start(database_url: str, data_dir: Path) -> Iterator[Running]:
    port = _free_port()
    env = {
        **os.environ,
        "TOLLGATE_DATA_DIR": str(data_dir),
        "TOLLGATE_CREDITS_PORT": str(port),
        "TOLLGATE_CREDITS_DATABASE_URL": database_url,
        "TOLLGATE_CREDITS_DEFAULT_GRANT": "10",
        "TOLLGATE_CREDITS_LOW_THRESHOLD": "2",
        "TOLLGATE_CREDITS_SWEEP_INTERVAL_SECONDS": "0.2",
        "TOLLGATE_GRACE_SECONDS": "1",
        "TOLLGATE_LOG_FORMAT": "text",
        **identities.env(),
    }
    log = open(data_dir / "credits.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "services.credits"], cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        yield Running(f"127.0.0.1:{port}", proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def _status(address: str) -> int | None:
    async with grpc.aio.insecure_channel(address) as chan:
        try:
            reply = await health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.aio.AioRpcError:
            return None
        return int(reply.status)


async def _wait_status(address: str, want: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await _status(address) == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"health never became {want}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def service_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'credits.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def credits_service(service_url: str, tmp_path: Path) -> AsyncIterator[Running]:
    for running in _start(service_url, tmp_path):
        await _wait_status(running.address, health_pb2.HealthCheckResponse.SERVING)
        yield running


async def test_contract_over_grpc(credits_service: Running) -> None:
    async with (
        identities.aio_channel(credits_service.address, "router") as chan,
        identities.aio_channel(credits_service.address, "operator") as operator_chan,
    ):
        stub = credits_pb2_grpc.CreditsStub(chan)
        operator = credits_pb2_grpc.CreditsStub(operator_chan)
        balance = await stub.GetBalance(credits_pb2.GetBalanceRequest(user_id="ann"))
        assert (balance.balance_micro, balance.available_micro, balance.low) == (10 * MICRO, 10 * MICRO, False)
        reserved = await stub.Reserve(
            credits_pb2.ReserveRequest(
                user_id="ann", amount_micro=9 * MICRO, idempotency_key="q1:0:reserve", request_id="q1"
            )
        )
        assert reserved.balance.reserved_micro == 9 * MICRO and reserved.balance.low
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Reserve(
                credits_pb2.ReserveRequest(
                    user_id="ann", amount_micro=2 * MICRO, idempotency_key="q2:0:reserve", request_id="q2"
                )
            )
        assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        refused = from_rpc_error(err.value, "credits")
        assert refused.code == "insufficient_credits" and refused.kind.http_status == 402
        assert "1.000000 credits available" in refused.message
        usage = credits_pb2.UsageRecord(
            request_id="q1",
            user_id="ann",
            model="demo",
            provider="demo",
            prompt_tokens=12,
            completion_tokens=30,
            status="ok",
            latency_ms=12.5,
        )
        settled = await stub.Settle(
            credits_pb2.SettleRequest(
                hold_id=reserved.hold_id, amount_micro=11 * MICRO, idempotency_key="q1:0:settle", usage=usage
            )
        )
        assert (settled.charged_micro, settled.overdraft_micro) == (10 * MICRO, MICRO)
        assert settled.balance.available_micro == 0 and settled.balance.overdraft_micro == MICRO
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Release(credits_pb2.ReleaseRequest(hold_id="h_nope", idempotency_key="z"))
        assert from_rpc_error(err.value, "credits").code == "not_found"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Settle(
                credits_pb2.SettleRequest(hold_id=reserved.hold_id, amount_micro=MICRO, idempotency_key="q1:0:settle")
            )
        assert from_rpc_error(err.value, "credits").code == "idempotency_key_reused"
        await stub.RecordUsage(
            credits_pb2.RecordUsageRequest(
                usage=credits_pb2.UsageRecord(request_id="q3", user_id="ann", model="free", status="ok"),
                idempotency_key="q3:usage",
            )
        )
        granted = await operator.Grant(
            credits_pb2.GrantRequest(
                user_id="ann", amount_micro=5 * MICRO, idempotency_key="topup", reason="invoice", actor="admin"
            )
        )
        assert granted.balance.available_micro == 5 * MICRO and not granted.balance.low
        txs = await operator.ListTransactions(credits_pb2.ListTransactionsRequest(user_id="ann", limit=10))
        assert [(t.kind, t.amount_micro, t.overdraft_micro) for t in txs.transactions] == [
            ("top-up", 5 * MICRO, 0),
            ("overdraft", 0, MICRO),
            ("settle", -10 * MICRO, 0),
            ("grant", 10 * MICRO, 0),
        ]
        rows = await operator.ListUsage(credits_pb2.ListUsageRequest(user_id="ann"))
        assert [(r.usage.request_id, r.usage.cost_micro) for r in rows.rows] == [("q3", 0), ("q1", 11 * MICRO)]
        summary = await operator.UsageSummary(credits_pb2.UsageSummaryRequest(user_id="ann", group_by="model"))
        assert [(g.key, g.requests, g.completion_tokens) for g in summary.groups] == [("demo", 1, 30), ("free", 1, 0)]


@pytest.mark.parametrize("service_url", ["sqlite"], indirect=True)
async def test_only_the_router_moves_money_and_only_admins_grant(credits_service: Running) -> None:
    address = credits_service.address
    reserve = credits_pb2.ReserveRequest(user_id="ivy", amount_micro=MICRO, idempotency_key="r:0:reserve")
    settle = credits_pb2.SettleRequest(hold_id="h_x", amount_micro=1, idempotency_key="r:0:settle")
    grant = credits_pb2.GrantRequest(user_id="ivy", amount_micro=MICRO, idempotency_key="g-1")
    async with identities.aio_channel(address, None) as chan:
        anonymous = credits_pb2_grpc.CreditsStub(chan)
        asks: list[tuple[Any, Any]] = [
            (anonymous.Grant, grant),
            (anonymous.Reserve, reserve),
            (anonymous.GetBalance, credits_pb2.GetBalanceRequest(user_id="ivy")),
        ]
        for call, request in asks:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(request)
            assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
    async with identities.aio_channel(address, "gateway") as chan:
        gateway = credits_pb2_grpc.CreditsStub(chan)
        as_user = credits_pb2_grpc.CreditsStub(identities.ActingChannel(chan, "ivy", ["user"]))
        batch = credits_pb2.SettleBatchRequest(settles=[settle])
        refused: list[tuple[Any, Any]] = [
            (gateway.Reserve, reserve),
            (gateway.Settle, settle),
            (gateway.SettleBatch, batch),
            (as_user.SettleBatch, batch),
            (as_user.Grant, grant),
        ]
        for call, request in refused:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(request)
            assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
        # The gateway logs its own free cache hits, and nothing that costs.
        costly = credits_pb2.UsageRecord(request_id="c", user_id="ivy", cost_micro=5, cache_hit=True)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gateway.RecordUsage(credits_pb2.RecordUsageRequest(usage=costly, idempotency_key="c:usage"))
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
        free = credits_pb2.UsageRecord(request_id="f", user_id="ivy", cache_hit=True, status="ok")
        await gateway.RecordUsage(credits_pb2.RecordUsageRequest(usage=free, idempotency_key="f:usage"))
        admin = credits_pb2_grpc.CreditsStub(identities.admin_gateway(chan))
        assert (await admin.Grant(grant)).balance.balance_micro == 11 * MICRO
        assert (await gateway.GetBalance(credits_pb2.GetBalanceRequest(user_id="ivy"))).balance_micro == 11 * MICRO
    # A token signed for another service is refused here, even from a real caller.
    stolen = identities.signer("router").token("keyvault")
    async with identities.aio_channel(address, None) as chan:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await credits_pb2_grpc.CreditsStub(chan).Reserve(reserve, metadata=((identity.TOKEN_HEADER, stolen),))
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "for keyvault, not credits" in (err.value.details() or "")
    async with identities.aio_channel(address, None) as chan:
        reply = await health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_batch_of_settles_is_each_settle_on_its_own(credits_service: Running) -> None:
    """SettleBatch: each settle lands (or fails) alone, a repeat answers its first result, nothing twice."""
    async with identities.aio_channel(credits_service.address, "router") as chan:
        stub = credits_pb2_grpc.CreditsStub(chan)
        holds = [
            await stub.Reserve(
                credits_pb2.ReserveRequest(
                    user_id="bea", amount_micro=2 * MICRO, idempotency_key=f"b{i}:0:reserve", request_id=f"b{i}"
                )
            )
            for i in range(3)
        ]
        costs = [MICRO, MICRO // 2, 3 * MICRO]  # the last beyond its hold: charged from what is available

        def settle(i: int, cost: int | None = None) -> credits_pb2.SettleRequest:
            usage = credits_pb2.UsageRecord(request_id=f"b{i}", user_id="bea", model="demo", status="ok")
            return credits_pb2.SettleRequest(
                hold_id=holds[i].hold_id,
                amount_micro=costs[i] if cost is None else cost,
                idempotency_key=f"b{i}:0:settle",
                usage=usage,
            )

        first = await stub.SettleBatch(credits_pb2.SettleBatchRequest(settles=[settle(0), settle(1)]))
        assert [(o.error_code, o.reply.charged_micro) for o in first.outcomes] == [("", MICRO), ("", MICRO // 2)]
        unknown = credits_pb2.SettleRequest(hold_id="h_nope", amount_micro=1, idempotency_key="nope:0:settle")
        second = await stub.SettleBatch(
            credits_pb2.SettleBatchRequest(settles=[settle(0), unknown, settle(1, cost=7), settle(2)])
        )
        assert [o.error_code for o in second.outcomes] == ["", "not_found", "idempotency_key_reused", ""]
        assert second.outcomes[0].reply.charged_micro == MICRO  # the repeat: its first result
        assert (second.outcomes[3].reply.charged_micro, second.outcomes[3].reply.overdraft_micro) == (3 * MICRO, 0)
        balance = await stub.GetBalance(credits_pb2.GetBalanceRequest(user_id="bea"))
        assert (balance.balance_micro, balance.reserved_micro) == (10 * MICRO - MICRO - MICRO // 2 - 3 * MICRO, 0)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SettleBatch(credits_pb2.SettleBatchRequest(settles=[unknown] * 257))
        assert from_rpc_error(err.value, "credits").code == "invalid_request"
    async with identities.aio_channel(credits_service.address, "operator") as chan:
        rows = await credits_pb2_grpc.CreditsStub(chan).ListUsage(credits_pb2.ListUsageRequest(user_id="bea"))
        assert sorted(r.usage.request_id for r in rows.rows) == ["b0", "b1", "b2"]
        assert {r.usage.status for r in rows.rows} == {"ok"}


async def test_router_dying_between_reserve_and_settle_gets_money_back(credits_service: Running) -> None:
    async with identities.aio_channel(credits_service.address, "router") as chan:
        stub = credits_pb2_grpc.CreditsStub(chan)
        held = await stub.Reserve(
            credits_pb2.ReserveRequest(
                user_id="bo", amount_micro=6 * MICRO, idempotency_key="d:0:reserve", request_id="d", ttl_seconds=1
            )
        )
        assert held.balance.available_micro == 4 * MICRO
        # No Settle, no Release: the router is gone. The service's own sweeper gives the hold back.
        deadline = time.monotonic() + 20
        balance = held.balance
        while balance.reserved_micro and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            balance = await stub.GetBalance(credits_pb2.GetBalanceRequest(user_id="bo"))
        assert (balance.balance_micro, balance.reserved_micro, balance.available_micro) == (
            10 * MICRO,
            0,
            10 * MICRO,
        )
    async with identities.aio_channel(credits_service.address, "operator") as chan:
        rows = await credits_pb2_grpc.CreditsStub(chan).ListUsage(credits_pb2.ListUsageRequest(user_id="bo"))
        assert [r.usage.status for r in rows.rows] == ["expired"]


@pytest.mark.postgres
@pytest.mark.slow
async def test_health_follows_the_database(postgres_url: str, tmp_path: Path) -> None:
    import asyncpg

    name = postgres_url.rsplit("/", 1)[1]
    for running in _start(postgres_url, tmp_path):
        await _wait_status(running.address, health_pb2.HealthCheckResponse.SERVING)
        admin = await asyncpg.connect(postgres_url.rsplit("/", 1)[0] + "/postgres")
        try:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await _wait_status(running.address, health_pb2.HealthCheckResponse.NOT_SERVING)
            await admin.execute(f'CREATE DATABASE "{name}"')
            await _wait_status(running.address, health_pb2.HealthCheckResponse.SERVING)
        finally:
            await admin.close()


async def _cli(address: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        "--credits-addr",
        address,
        cwd=ROOT,
        env={**os.environ, "TOLLGATE_OPERATOR_IDENTITY_KEY": identities.SECRETS["operator"]},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return int(proc.returncode or 0), out.decode()


@pytest.mark.parametrize("service_url", ["sqlite"], indirect=True)
async def test_cli_grant_show_and_usage(credits_service: Running) -> None:
    address = credits_service.address
    code, out = await _cli(address, "credits", "grant", "cy", "2.5", "--key", "cli-1", "--reason", "promo")
    assert code == 0 and '"balance": "12.500000"' in out
    code, out = await _cli(address, "credits", "grant", "cy", "2.5", "--key", "cli-1")
    assert code == 0 and '"balance": "12.500000"' in out
    code, out = await _cli(address, "credits", "grant", "cy", "0.0000001")
    assert code == 2
    code, out = await _cli(address, "credits", "show", "cy")
    assert code == 0 and '"kind": "top-up"' in out and '"reason": "promo"' in out
    async with identities.aio_channel(address, "router") as chan:
        stub = credits_pb2_grpc.CreditsStub(chan)
        held = await stub.Reserve(
            credits_pb2.ReserveRequest(user_id="cy", amount_micro=MICRO, idempotency_key="u:0:reserve", request_id="u")
        )
        await stub.Settle(
            credits_pb2.SettleRequest(
                hold_id=held.hold_id,
                amount_micro=1234,
                idempotency_key="u:0:settle",
                usage=credits_pb2.UsageRecord(request_id="u", model="demo-echo", provider="demo", prompt_tokens=3),
            )
        )
    code, out = await _cli(address, "usage", "show", "--user", "cy", "--csv")
    assert code == 0
    header, row = out.strip().splitlines()
    assert header.startswith("at,request_id,user_id,model") and ",u,cy,demo-echo,demo,,ok,3,0,0.001234," in row
    code, out = await _cli(address, "usage", "summary", "--by", "model", "--csv")
    assert code == 0 and out.strip().splitlines()[1] == "demo-echo,1,3,0,0.001234,0,0,0"


@pytest.fixture
async def http(credits_service: Running, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    address = credits_service.address

    async def principal(self: Edge, request: Request) -> keyvault_pb2.Principal:
        who = request.headers["authorization"].removeprefix("Bearer ")
        return keyvault_pb2.Principal(user_id=who, scopes=["admin"] if who == "root" else ["user"])

    monkeypatch.setattr(Edge, "principal", principal)
    settings = GatewaySettings(credits_addr=address, gateway_identity_key=identities.SECRETS["gateway"])
    app = create_app(settings)
    app.state.edge = Edge(settings, Clients.connect(settings))
    identity.use(identity.signer_for(settings, identity.GATEWAY, settings.gateway_identity_key))  # as the lifespan does
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        yield client
    await close_all()
    identity.use(None)


@pytest.mark.parametrize("service_url", ["sqlite"], indirect=True)
async def test_balance_grant_transactions_usage_routes(http: httpx.AsyncClient) -> None:
    user = {"authorization": "Bearer dana"}
    admin = {"authorization": "Bearer root"}
    got = await http.get("/v1/credits", headers=user)
    assert got.status_code == 200 and got.json()["available"] == "10.000000" and got.json()["low"] is False
    assert (await http.get("/api/v1/llm/credits/balance", headers=user)).json()["user_id"] == "dana"
    assert (await http.get("/v1/credits?user=eve", headers=user)).status_code == 403
    refused = await http.post("/v1/admin/credits", json={"user_id": "dana", "amount": 5}, headers=user)
    assert refused.status_code == 403
    body = {"user_id": "dana", "amount": "2.5", "reason": "support"}
    granted = await http.post("/v1/admin/credits", json=body, headers={**admin, "idempotency-key": "t-1"})
    again = await http.post("/api/v1/llm/credits/add", json=body, headers={**admin, "idempotency-key": "t-1"})
    assert granted.status_code == again.status_code == 201
    assert granted.json()["transaction_id"] == again.json()["transaction_id"]
    assert again.json()["balance"] == "12.500000"
    bad = await http.post("/v1/admin/credits", json={"user_id": "dana", "amount": "0.0000001"}, headers=admin)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "amount"
    txs = (await http.get("/v1/credits/transactions", headers=user)).json()
    assert [(t["kind"], t["amount"]) for t in txs["data"]] == [("top-up", "2.500000"), ("grant", "10.000000")]
    assert (await http.get("/v1/credits/transactions?user=dana", headers=admin)).json()["data"] == txs["data"]
    assert (await http.get("/v1/usage", headers=user)).json()["data"] == []
    summary = await http.get("/api/v1/llm/usage/summary?group_by=model", headers=user)
    assert summary.status_code == 200 and summary.json()["data"] == []
    wrong = await http.get("/v1/usage/summary?group_by=week", headers=user)
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "group_by"


async def test_budgets_and_team_pools_over_grpc_and_the_cli(credits_service: Running) -> None:
    address = credits_service.address
    code, out = await _cli(address, "credits", "grant", "--team", "t9", "5")
    assert code == 0 and "team:t9" in out and '"balance": "5.000000"' in out  # a pool opens empty
    code, out = await _cli(address, "credits", "grant", "someone", "5", "--team", "t9")
    assert code == 2
    code, out = await _cli(
        address, "budgets", "set", "key", "k9", "--period", "daily", "--timezone", "UTC", "--limit", "0.5"
    )
    assert code == 0 and '"limit": "0.500000"' in out, out
    code, out = await _cli(address, "budgets", "set", "key", "k9", "--period", "daily", "--timezone", "Moon/Base")
    assert code == 1 and "timezone" in out
    code, out = await _cli(address, "budgets", "list", "--scope", "key")
    assert code == 0 and '"scope_id": "k9"' in out and '"alert_percents": [\n      50,' in out
    budget_id = out.split('"id": "')[1].split('"')[0]

    async with identities.aio_channel(address, "router") as chan:
        router = credits_pb2_grpc.CreditsStub(chan)
        # The router may not set budgets; it reserves on the team's pool for a pooled member.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await router.SetBudget(credits_pb2.Budget(scope="key", scope_id="k9", period="daily", timezone="UTC"))
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
        pooled = credits_pb2.ReserveRequest(
            user_id="ann",
            amount_micro=400_000,
            idempotency_key="p:0:reserve",
            request_id="p",
            account_id="team:t9",
            key_id="k9",
            team_id="t9",
        )
        held = await router.Reserve(pooled)
        assert held.balance.user_id == "team:t9" and held.balance.reserved_micro == 400_000
        again = credits_pb2.ReserveRequest(
            user_id="ann", amount_micro=200_000, idempotency_key="q:0:reserve", key_id="k9"
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await router.Reserve(again)
        refused = from_rpc_error(err.value, "credits")
        assert (refused.code, refused.kind.http_status) == ("budget_exceeded", 402)
        assert budget_id in refused.message and "daily" in refused.message
        await router.Release(credits_pb2.ReleaseRequest(hold_id=held.hold_id, idempotency_key="p:0:release"))
    async with identities.aio_channel(address, "gateway") as chan:
        gateway = credits_pb2_grpc.CreditsStub(chan)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gateway.SetBudget(
                credits_pb2.Budget(scope="key", scope_id="k9", period="daily", timezone="UTC", limit_micro=-1)
            )
        bad = from_rpc_error(err.value, "credits")
        assert (bad.code, bad.param) == ("invalid_request", "limit")
        listed = await gateway.ListBudgets(credits_pb2.ListBudgetsRequest(budget_id=budget_id))
        assert [b.reserved_micro for b in listed.budgets] == [0]
    code, out = await _cli(address, "budgets", "delete", budget_id)
    assert code == 0 and budget_id in out
    code, out = await _cli(address, "budgets", "delete", budget_id)
    assert code == 1


def test_a_budget_webhook_without_a_secret_stops_the_service(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TOLLGATE_DATA_DIR": str(tmp_path),
        "TOLLGATE_CREDITS_BUDGET_WEBHOOK_URL": "https://hooks.example/budgets",
        **identities.env(),
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.credits"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "TOLLGATE_CREDITS_BUDGET_WEBHOOK_SECRET" in done.stderr and "Traceback" not in done.stderr


TEAMS = {
    "t1": Reach(manage=True, team_id="t1", users={"ada", "bo"}, keys={"k_ada", "k_bo"}),
    "t2": Reach(manage=True, team_id="t2", users={"cy"}, keys={"k_cy"}),
}


@pytest.mark.parametrize("service_url", ["sqlite"], indirect=True)
async def test_team_admins_reach_their_own_team_only(http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attacks of a team admin on another team's budgets. Team membership stands in for keyvault's `GetTeam`
    (built by the teams work); the budgets and their checks are the real credits service's."""
    people = {
        "root": keyvault_pb2.Principal(user_id="root", scopes=["admin"]),
        "ada": keyvault_pb2.Principal(user_id="ada", key_id="k_ada", scopes=["user"], team_id="t1", team_role="admin"),
        "bo": keyvault_pb2.Principal(user_id="bo", key_id="k_bo", scopes=["user"], team_id="t1", team_role="member"),
        "cy": keyvault_pb2.Principal(user_id="cy", key_id="k_cy", scopes=["user"], team_id="t2", team_role="admin"),
    }

    async def principal(self: Edge, request: Request) -> keyvault_pb2.Principal:
        return people[request.headers["authorization"].removeprefix("Bearer ")]

    async def team_reach(gateway: Edge, principal: keyvault_pb2.Principal) -> Reach:
        return TEAMS[principal.team_id]

    monkeypatch.setattr(Edge, "principal", principal)
    monkeypatch.setattr(budget_routes, "team_reach", team_reach)

    def who(name: str) -> dict[str, str]:
        return {"authorization": f"Bearer {name}"}

    day = {"period": "daily", "timezone": "UTC", "limit": "3"}
    theirs = await http.post("/v1/budgets", json={"scope": "team", "scope_id": "t2", **day}, headers=who("cy"))
    assert theirs.status_code == 201, theirs.text
    their_key = await http.post("/v1/budgets", json={"scope": "key", "scope_id": "k_cy", **day}, headers=who("root"))
    mine = await http.post("/v1/budgets", json={"scope": "user", "scope_id": "bo", **day}, headers=who("ada"))
    assert mine.status_code == 201 and their_key.status_code == 201

    # Ada (admin of t1) cannot set t2's budgets, its members' or their keys', nor rewrite t2's by id.
    for body in (
        {"scope": "team", "scope_id": "t2"},
        {"scope": "user", "scope_id": "cy"},
        {"scope": "key", "scope_id": "k_cy"},
        {"scope": "team", "scope_id": "t2", "id": theirs.json()["id"]},
    ):
        refused = await http.post("/v1/budgets", json={**body, **day, "limit": "999"}, headers=who("ada"))
        assert refused.status_code == 403, refused.text
    sneaky = {"scope": "user", "scope_id": "bo", "id": theirs.json()["id"], **day}
    assert (await http.post("/v1/budgets", json=sneaky, headers=who("ada"))).status_code == 404
    # Deleting another team's budget by id reads as not found, and leaves it there.
    for budget in (theirs.json(), their_key.json()):
        gone = await http.delete(f"/v1/budgets/{budget['id']}", headers=who("ada"))
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    listed = (await http.get("/v1/budgets", headers=who("root"))).json()["data"]
    assert {b["id"] for b in listed} == {theirs.json()["id"], their_key.json()["id"], mine.json()["id"]}
    assert [b["limit"] for b in listed if b["id"] == theirs.json()["id"]] == ["3.000000"]
    # Each sees its own team's; a member sees the budgets that apply to it and cannot set one.
    assert [b["id"] for b in (await http.get("/v1/budgets", headers=who("ada"))).json()["data"]] == [mine.json()["id"]]
    seen_by_cy = {b["id"] for b in (await http.get("/v1/budgets", headers=who("cy"))).json()["data"]}
    assert seen_by_cy == {theirs.json()["id"], their_key.json()["id"]}
    assert [b["id"] for b in (await http.get("/v1/budgets", headers=who("bo"))).json()["data"]] == [mine.json()["id"]]
    own = await http.post("/v1/budgets", json={"scope": "user", "scope_id": "bo", **day}, headers=who("bo"))
    assert own.status_code == 403
    assert (await http.delete(f"/v1/budgets/{mine.json()['id']}", headers=who("bo"))).status_code == 403
    # Ada manages her own team's.
    assert (await http.delete(f"/v1/budgets/{mine.json()['id']}", headers=who("ada"))).json()["deleted"] is True


@pytest.mark.parametrize("service_url", ["sqlite"], indirect=True)
async def test_team_pool_grant_and_balance_routes(http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    people = {
        "root": keyvault_pb2.Principal(user_id="root", scopes=["admin"]),
        "ada": keyvault_pb2.Principal(user_id="ada", scopes=["user"], team_id="t1", team_role="member"),
        "cy": keyvault_pb2.Principal(user_id="cy", scopes=["user"], team_id="t2", team_role="admin"),
    }

    async def principal(self: Edge, request: Request) -> keyvault_pb2.Principal:
        return people[request.headers["authorization"].removeprefix("Bearer ")]

    monkeypatch.setattr(Edge, "principal", principal)
    root, ada, cy = ({"authorization": f"Bearer {n}"} for n in ("root", "ada", "cy"))
    granted = await http.post("/v1/admin/credits", json={"team_id": "t1", "amount": "40"}, headers=root)
    assert granted.status_code == 201 and granted.json()["user_id"] == "team:t1"
    assert granted.json()["balance"] == "40.000000"  # a pool opens empty
    both = await http.post("/v1/admin/credits", json={"team_id": "t1", "user_id": "ada", "amount": 1}, headers=root)
    assert both.status_code == 400 and both.json()["error"]["param"] == "team_id"
    refused = await http.post("/v1/admin/credits", json={"team_id": "t2", "amount": "40"}, headers=cy)
    assert refused.status_code == 403  # a team admin does not mint credits
    pool = await http.get("/v1/credits?team=t1", headers=ada)
    assert pool.status_code == 200 and pool.json()["available"] == "40.000000"
    assert (await http.get("/v1/credits?team=t1", headers=root)).json()["user_id"] == "team:t1"
    assert (await http.get("/v1/credits?team=t1", headers=cy)).status_code == 404
    assert (await http.get("/v1/credits?user=team:t1", headers=cy)).status_code == 403
