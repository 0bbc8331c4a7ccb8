"""Who may call what: the rules, the tables of the four services, and the guard on a real in-process server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.credits.access import ACCESS as CREDITS
from services.health.access import ACCESS as HEALTH
from services.keyvault.access import ACCESS as KEYVAULT
from services.router.access import ACCESS as ROUTER
from services.runtime import identity
from services.runtime.access import Access, Grant, Rule
from services.runtime.errors import CODE_KEY, DomainError
from services.runtime.identity import Peer
from tests import identities
from tollgate.credits.v1 import credits_pb2, credits_pb2_grpc
from tollgate.keyvault.v1 import keyvault_pb2

GATEWAY, ROUTER_PEER, OPERATOR = Peer("gateway"), Peer("router"), Peer("operator")
ADMIN_GATEWAY = Peer("gateway", frozenset({"admin", "user"}), "root")
USER_GATEWAY = Peer("gateway", frozenset({"user"}), "ann")
USER_KEY = Peer("", frozenset({"admin"}), "ann", keyvault_pb2.Principal(user_id="ann", key_id="k", scopes=["admin"]))


def allowed(table: Access, method: str) -> set[str]:
    peers = {
        "gateway": USER_GATEWAY,
        "admin-gateway": ADMIN_GATEWAY,
        "router": ROUTER_PEER,
        "operator": OPERATOR,
        "user-key": USER_KEY,
    }
    return {name for name, peer in peers.items() if table.rules[method].allows(peer)}


def test_admin_is_the_operator_or_the_gateway_acting_for_an_admin_key() -> None:
    admin = Rule(frozenset({Grant.ADMIN}))
    assert admin.allows(OPERATOR) and admin.allows(ADMIN_GATEWAY)
    assert not admin.allows(USER_GATEWAY) and not admin.allows(ROUTER_PEER)
    # A user's own admin key is not an admin principal for internal services: only the gateway speaks for users.
    assert not admin.allows(USER_KEY)
    assert not Rule(frozenset({Grant.GATEWAY})).allows(USER_KEY)


def test_the_tables_of_the_services() -> None:
    money = {"Reserve", "Settle", "SettleBatch", "Release"}
    for method in money:
        assert allowed(CREDITS, method) == {"router"}
    assert allowed(CREDITS, "Grant") == {"admin-gateway", "operator"}
    assert allowed(CREDITS, "GetBalance") == {"gateway", "admin-gateway", "router", "operator"}
    assert allowed(KEYVAULT, "GetProviderKey") == {"router"}
    assert allowed(KEYVAULT, "Authenticate") == {"gateway", "admin-gateway", "router"}
    for method in ("RotateMasterKey", "VaultStatus", "ListAuditEvents"):
        assert allowed(KEYVAULT, method) == {"admin-gateway", "operator"}, method
    assert allowed(KEYVAULT, "ListApiKeys") == {"gateway", "admin-gateway", "operator"}
    for method in ("PutProviderKey", "ListProviderKeys", "DeleteProviderKey"):
        assert allowed(KEYVAULT, method) == {"gateway", "admin-gateway"}, method
    assert allowed(HEALTH, "ReportOutcome") == allowed(HEALTH, "WatchProviders") == {"router"}
    for method in ("CheckNow", "SetMaintenance", "ListMaintenance"):
        assert allowed(HEALTH, method) == {"admin-gateway", "operator"}, method
    for method in set(ROUTER.rules) - {"ReloadCatalog"}:
        assert allowed(ROUTER, method) == {"gateway", "admin-gateway", "user-key"}, method
    assert allowed(ROUTER, "ReloadCatalog") == {"admin-gateway", "operator"}
    assert ROUTER.callers() == {"gateway", "operator"} and ROUTER.accepts_users()
    for method in ("CreateTeam", "UpdateTeam", "ListTeams"):
        assert allowed(KEYVAULT, method) == {"admin-gateway", "operator"}, method
    for method in ("CreateApiKey", "RevokeApiKey", "UpdateApiKey", "GetTeam", "SetTeamMember", "RemoveTeamMember"):
        assert allowed(KEYVAULT, method) == {"gateway", "admin-gateway", "operator"}, method
    for method in ("SetBudget", "DeleteBudget"):
        assert allowed(CREDITS, method) == {"gateway", "admin-gateway", "operator"}, method
    assert CREDITS.callers() == KEYVAULT.callers() == HEALTH.callers() == {"gateway", "router", "operator"}


def test_a_table_must_cover_every_method() -> None:
    descriptor = credits_pb2.DESCRIPTOR.services_by_name["Credits"]
    with pytest.raises(ValueError, match="rules missing for"):
        Access.of(descriptor, {"GetBalance": {Grant.GATEWAY}})
    with pytest.raises(ValueError, match="unknown methods"):
        Access.of(descriptor, {**{m: {Grant.ROUTER} for m in CREDITS.rules}, "Steal": {Grant.ROUTER}})


class Ledger(credits_pb2_grpc.CreditsServicer):
    async def GetBalance(self, request: Any, context: Any) -> credits_pb2.Balance:
        peer = identity.current()
        assert peer is not None
        return credits_pb2.Balance(user_id=request.user_id, tier=peer.service or peer.acting_user)

    async def Grant(self, request: Any, context: Any) -> credits_pb2.GrantReply:
        return credits_pb2.GrantReply(transaction_id="t1")


@pytest.fixture
async def address() -> AsyncIterator[str]:
    refusals: list[tuple[str, str]] = []

    async def refused(method: str, request: Any, peer: Peer | None, err: DomainError) -> None:
        refusals.append((method, err.code))

    server = grpc.aio.server(interceptors=[identities.guard(CREDITS, on_refused=refused)])
    credits_pb2_grpc.add_CreditsServicer_to_server(Ledger(), server)  # type: ignore[abstract]
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)
    assert ("Grant", "permission_denied") in refusals and ("GetBalance", "unauthenticated") in refusals


def code(err: grpc.aio.AioRpcError) -> str:
    return str(dict(err.trailing_metadata() or ()).get(CODE_KEY, ""))


async def test_the_guard_on_a_real_server(address: str) -> None:
    ask = credits_pb2.GetBalanceRequest(user_id="ann")
    grant = credits_pb2.GrantRequest(user_id="ann", amount_micro=1, idempotency_key="g")
    async with identities.aio_channel(address, None) as chan:
        anonymous = credits_pb2_grpc.CreditsStub(chan)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await anonymous.GetBalance(ask)
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED and code(err.value) == "unauthenticated"
        # Health stays open to load balancers.
        reply = await health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    async with identities.aio_channel(address, "router") as chan:
        router = credits_pb2_grpc.CreditsStub(chan)
        assert (await router.GetBalance(ask)).tier == "router"  # the servicer sees who called
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await router.Grant(grant)
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED and code(err.value) == "permission_denied"
        assert err.value.details() == "the router may not call Grant"
    async with identities.aio_channel(address, "gateway") as chan:
        admin = credits_pb2_grpc.CreditsStub(identities.admin_gateway(chan))
        assert (await admin.Grant(grant)).transaction_id == "t1"
        # Only the gateway's word about the user it acts for is believed.
    async with identities.aio_channel(address, "router") as chan:
        claims_admin = credits_pb2_grpc.CreditsStub(identities.ActingChannel(chan, "root", ["admin"]))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await claims_admin.Grant(grant)
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_users_own_keys_where_a_rule_admits_them() -> None:
    rules = {name: {Grant.GATEWAY} for name in CREDITS.rules} | {"GetBalance": {Grant.USER}}
    table = Access.of(credits_pb2.DESCRIPTOR.services_by_name["Credits"], rules)

    async def users(key: str) -> keyvault_pb2.Principal:
        if key != "tg-good":
            raise DomainError("invalid_api_key", "Incorrect API key provided")
        return keyvault_pb2.Principal(user_id="ann", key_id="k1", scopes=["user"])

    server = grpc.aio.server(interceptors=[identities.guard(table, users)])
    credits_pb2_grpc.add_CreditsServicer_to_server(Ledger(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with identities.aio_channel(f"127.0.0.1:{port}", None) as chan:
            stub = credits_pb2_grpc.CreditsStub(chan)
            mine = await stub.GetBalance(
                credits_pb2.GetBalanceRequest(), metadata=(("authorization", "Bearer tg-good"),)
            )
            assert mine.tier == "ann"
            for metadata in ((("authorization", "Bearer tg-bad"),), ()):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.GetBalance(credits_pb2.GetBalanceRequest(), metadata=metadata)
                assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED and code(err.value) == "invalid_api_key"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Grant(credits_pb2.GrantRequest(), metadata=(("authorization", "Bearer tg-good"),))
            assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
    finally:
        await server.stop(None)
