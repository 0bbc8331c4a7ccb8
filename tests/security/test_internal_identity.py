"""Every internal call has a verifiable identity (security issue #13): black-box, against real processes.

Anyone who reaches a service port gets nothing without an identity; each identity gets only what its
method rules allow; a user's own tg- key on the router's native API is that user, charged and limited
like HTTP; health checks stay open; each process holds only its own secrets.
"""

from __future__ import annotations

import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.launcher import GRPC_SERVICES, Suite
from services.runtime import identity
from services.runtime.errors import CODE_KEY
from tests.e2e.support import balance_micro, bearer, cost_micro, create_key, grpc_channel, signer, words
from tollgate.credits.v1 import credits_pb2, credits_pb2_grpc
from tollgate.keyvault.v1 import keyvault_pb2, keyvault_pb2_grpc
from tollgate.router.v1 import router_pb2, router_pb2_grpc

pytestmark = pytest.mark.e2e

HELLO = "identity says hello"


@pytest.fixture(scope="module")
def http(suite: Suite) -> Iterator[httpx.Client]:
    """The gateway of the plain suite (the conftest's `http` is the edge suite's)."""
    with httpx.Client(base_url=f"http://{suite.host}:{suite.ports.gateway}", timeout=30) as session:
        yield session


def body(text: str = HELLO, **extra: Any) -> bytes:
    return orjson.dumps({"model": "echo-paid", "messages": [{"role": "user", "content": text}], **extra})


def code_of(err: grpc.RpcError) -> str:
    return str(dict(err.trailing_metadata() or ()).get(CODE_KEY, ""))


def refused(call: Any, request: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=10, **kwargs)
    return err.value


def own_key(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def test_no_identity_no_service(suite: Suite) -> None:
    grant = credits_pb2.GrantRequest(user_id="mallory", amount_micro=10**12, idempotency_key="steal")
    create = keyvault_pb2.CreateApiKeyRequest(user_id="mallory", scopes=["admin", "user"])
    reveal = keyvault_pb2.GetProviderKeyRequest(user_id="demo", provider="fake")
    chat = router_pb2.CompletionRequest(caller=router_pb2.Caller(user_id="demo"), body=body())
    with (
        grpc_channel(suite, "credits", None) as credits,
        grpc_channel(suite, "keyvault", None) as keyvault,
        grpc_channel(suite, "router", None) as router,
    ):
        calls = [
            (credits_pb2_grpc.CreditsStub(credits).Grant, grant),
            (keyvault_pb2_grpc.KeyVaultStub(keyvault).CreateApiKey, create),
            (keyvault_pb2_grpc.KeyVaultStub(keyvault).GetProviderKey, reveal),
            (router_pb2_grpc.RouterStub(router).Chat, chat),
        ]
        for call, request in calls:
            err = refused(call, request)
            assert err.code() is grpc.StatusCode.UNAUTHENTICATED, err
        # The old shared router token is no identity either.
        err = refused(
            keyvault_pb2_grpc.KeyVaultStub(keyvault).GetProviderKey,
            reveal,
            metadata=(("x-tollgate-router-token", "x"),),
        )
        assert err.code() is grpc.StatusCode.UNAUTHENTICATED


def test_grpc_health_and_reflection_answer_without_identity(suite: Suite) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    for service in GRPC_SERVICES:
        with grpc_channel(suite, service, None) as chan:
            reply = health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
            ask = reflection_pb2.ServerReflectionRequest(list_services="")
            (answer,) = reflection_pb2_grpc.ServerReflectionStub(chan).ServerReflectionInfo(iter([ask]), timeout=5)
            assert any(s.name.startswith("tollgate.") for s in answer.list_services_response.service)


def test_the_gateway_identity_cannot_move_money_or_read_provider_keys(suite: Suite) -> None:
    reserve = credits_pb2.ReserveRequest(user_id="demo", amount_micro=1, idempotency_key="gw:0:reserve")
    settle = credits_pb2.SettleRequest(hold_id="h_any", amount_micro=1, idempotency_key="gw:0:settle")
    grant = credits_pb2.GrantRequest(user_id="demo", amount_micro=1, idempotency_key="gw-grant")
    reveal = keyvault_pb2.GetProviderKeyRequest(user_id="demo", provider="fake")
    with grpc_channel(suite, "credits", "gateway") as credits, grpc_channel(suite, "keyvault", "gateway") as keyvault:
        ledger = credits_pb2_grpc.CreditsStub(credits)
        for call, request in ((ledger.Reserve, reserve), (ledger.Settle, settle), (ledger.Grant, grant)):
            err = refused(call, request)
            assert err.code() is grpc.StatusCode.PERMISSION_DENIED, err
            assert code_of(err) == "permission_denied"
        vault = keyvault_pb2_grpc.KeyVaultStub(keyvault)
        err = refused(vault.GetProviderKey, reveal)
        assert err.code() is grpc.StatusCode.PERMISSION_DENIED
        # Acting for a user without the admin scope does not make an admin.
        acting = ((identity.ACTING_USER_HEADER, "demo"), (identity.ACTING_SCOPES_HEADER, "user"))
        err = refused(vault.CreateApiKey, keyvault_pb2.CreateApiKeyRequest(user_id="demo"), metadata=acting)
        assert err.code() is grpc.StatusCode.PERMISSION_DENIED


def test_the_router_identity_is_no_admin(suite: Suite) -> None:
    with grpc_channel(suite, "keyvault", "router") as keyvault, grpc_channel(suite, "credits", "router") as credits:
        admin = ((identity.ACTING_USER_HEADER, "admin"), (identity.ACTING_SCOPES_HEADER, "admin"))
        err = refused(
            keyvault_pb2_grpc.KeyVaultStub(keyvault).CreateApiKey,
            keyvault_pb2.CreateApiKeyRequest(user_id="mallory", scopes=["admin"]),
            metadata=admin,
        )
        assert err.code() is grpc.StatusCode.PERMISSION_DENIED
        grant = credits_pb2.GrantRequest(user_id="mallory", amount_micro=1, idempotency_key="router-grant")
        err = refused(credits_pb2_grpc.CreditsStub(credits).Grant, grant, metadata=admin)
        assert err.code() is grpc.StatusCode.PERMISSION_DENIED


def test_a_token_captured_by_one_service_is_worthless_at_another(suite: Suite) -> None:
    """What a compromised credits receives from the router is a token for credits, refused by keyvault."""
    captured = signer(suite, "router").token("credits")
    with grpc_channel(suite, "keyvault", None) as keyvault:
        err = refused(
            keyvault_pb2_grpc.KeyVaultStub(keyvault).GetProviderKey,
            keyvault_pb2.GetProviderKeyRequest(user_id="demo", provider="fake"),
            metadata=((identity.TOKEN_HEADER, captured),),
        )
    assert err.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "for credits, not keyvault" in (err.details() or "")


def test_a_users_own_key_on_the_native_api_is_that_user_and_is_charged(suite: Suite, http: httpx.Client) -> None:
    alice = create_key(suite, f"alice-{uuid.uuid4().hex[:8]}")
    bob = create_key(suite, f"bob-{uuid.uuid4().hex[:8]}")
    bob_user = http.get("/v1/credits", headers=bearer(bob)).json()["user_id"]
    alice_before, bob_before = balance_micro(http, alice), balance_micro(http, bob)
    # Alice names Bob as the caller, and picks a request id of her own: both are replaced.
    request = router_pb2.CompletionRequest(
        request_id="chosen-by-alice",
        caller=router_pb2.Caller(user_id=bob_user, key_id="k", scopes=["admin"]),
        body=body(),
    )
    with grpc_channel(suite, "router", None) as chan:
        reply = router_pb2_grpc.RouterStub(chan).Chat(request, metadata=own_key(alice), timeout=30)
    data = orjson.loads(reply.body)
    assert data["choices"][0]["message"]["content"] == f"echo: {HELLO}"
    expected = cost_micro(words(HELLO), words(f"echo: {HELLO}"), 0.01, 0.02)
    assert reply.outcome.cost_micro == expected
    assert alice_before - balance_micro(http, alice) == expected
    assert balance_micro(http, bob) == bob_before
    usage = http.get("/v1/usage", headers=bearer(alice)).json()["data"]
    assert [u["request_id"] for u in usage] and usage[0]["request_id"] != "chosen-by-alice"
    assert http.get("/v1/usage", headers=bearer(bob)).json()["data"] == []


def test_the_native_api_streams_and_lists_models_with_a_users_key(suite: Suite, http: httpx.Client) -> None:
    key = create_key(suite, f"streamer-{uuid.uuid4().hex[:8]}")
    before = balance_micro(http, key)
    request = router_pb2.CompletionRequest(body=body(stream=True, stream_options={"include_usage": True}))
    with grpc_channel(suite, "router", None) as chan:
        stub = router_pb2_grpc.RouterStub(chan)
        events = list(stub.ChatStream(request, metadata=own_key(key), timeout=30))
        models = stub.ListModels(router_pb2.ListModelsRequest(), metadata=own_key(key), timeout=10)
    text = "".join(
        (orjson.loads(e.chunk)["choices"] or [{"delta": {}}])[0]["delta"].get("content") or ""
        for e in events
        if e.WhichOneof("event") == "chunk"
    )
    assert text == f"echo: {HELLO}"
    assert events[-1].outcome.cost_micro == before - balance_micro(http, key) > 0
    assert "echo-paid" in {m.id for m in models.models}


def test_bad_or_revoked_keys_are_refused_on_the_native_api(suite: Suite, http: httpx.Client) -> None:
    request = router_pb2.CompletionRequest(body=body())
    with grpc_channel(suite, "router", None) as chan:
        stub = router_pb2_grpc.RouterStub(chan)
        for metadata in (own_key("tg-" + "x" * 43), own_key("not-a-key"), ()):
            err = refused(stub.Chat, request, metadata=metadata)
            assert err.code() is grpc.StatusCode.UNAUTHENTICATED
            assert code_of(err) == "invalid_api_key"
        key = create_key(suite, f"revoked-{uuid.uuid4().hex[:8]}")
        assert stub.Chat(request, metadata=own_key(key), timeout=30).outcome.cost_micro > 0
        key_id = http.get("/v1/credits", headers=bearer(key)).json()["user_id"]
        listed = http.get(
            "/v1/admin/keys", params={"user": key_id}, headers=bearer(suite.bootstrap_keys()["admin_key"])
        )
        (info,) = listed.json()["data"]
        assert (
            http.delete(f"/v1/admin/keys/{info['id']}", headers=bearer(suite.bootstrap_keys()["admin_key"])).status_code
            == 200
        )
        time.sleep(1.5)  # TOLLGATE_AUTH_CACHE_TTL of the suite: the documented revocation delay
        err = refused(stub.Chat, request, metadata=own_key(key))
        assert err.code() is grpc.StatusCode.UNAUTHENTICATED


def test_a_keys_rate_limit_holds_on_the_native_api(suite: Suite) -> None:
    key = create_key(suite, f"limited-{uuid.uuid4().hex[:8]}", rpm=2)
    request = router_pb2.CompletionRequest(body=body())
    if time.time() % 60 > 50:  # fixed one-minute windows: keep the three calls in one of them
        time.sleep(61 - time.time() % 60)
    with grpc_channel(suite, "router", None) as chan:
        stub = router_pb2_grpc.RouterStub(chan)
        for _ in range(2):
            stub.Chat(request, metadata=own_key(key), timeout=30)
        err = refused(stub.Chat, request, metadata=own_key(key))
    assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(err.trailing_metadata() or ())
    assert trailers[CODE_KEY] == "rate_limit_exceeded"
    assert int(trailers["retry-after"]) >= 1 and trailers["x-ratelimit-limit-requests"] == "2"


def test_a_users_key_reaches_no_other_service(suite: Suite) -> None:
    admin = suite.bootstrap_keys()["admin_key"]
    with grpc_channel(suite, "credits", None) as credits:
        grant = credits_pb2.GrantRequest(user_id="admin", amount_micro=1, idempotency_key="own-key-grant")
        err = refused(credits_pb2_grpc.CreditsStub(credits).Grant, grant, metadata=own_key(admin))
    assert err.code() is grpc.StatusCode.UNAUTHENTICATED


def test_http_admin_routes_still_work_through_the_gateway(suite: Suite, http: httpx.Client) -> None:
    admin = bearer(suite.bootstrap_keys()["admin_key"])
    user = f"granted-{uuid.uuid4().hex[:8]}"
    made = http.post("/v1/admin/keys", headers=admin, json={"user_id": user})
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    before = balance_micro(http, key)
    granted = http.post("/v1/admin/credits", headers=admin, json={"user_id": user, "amount": "1.5"})
    assert granted.status_code == 201, granted.text
    assert balance_micro(http, key) == before + 1_500_000
    refused_grant = http.post("/v1/admin/credits", headers=bearer(key), json={"user_id": user, "amount": "1"})
    assert refused_grant.status_code == 403


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {k: v for k, _, v in pairs}


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_each_process_holds_only_its_own_secrets(suite: Suite) -> None:
    envs = {name: _environ(proc.pid) for name, proc in suite.processes.items()}
    secrets = {name: f"TOLLGATE_{identity.key_setting(name)}" for name in identity.CALLERS}
    assert secrets["gateway"] in envs["gateway"] and secrets["router"] in envs["router"]
    for name, env in envs.items():
        held = {caller for caller, setting in secrets.items() if setting in env}
        assert held <= {name}, f"{name} holds {held}"
    for name in ("gateway", "router", "credits", "health", "demo_upstream"):
        assert "TOLLGATE_KEY_PEPPER" not in envs[name] and "TOLLGATE_VAULT_KEYS" not in envs[name]
    assert "TOLLGATE_GATEWAY_IDENTITY_PUBLIC_KEY" in envs["keyvault"]
    assert "TOLLGATE_ROUTER_IDENTITY_PUBLIC_KEY" not in envs["router"]  # the router verifies the gateway only
    folder = suite.data_dir / "identity"
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for db in ("credits.db", "keyvault.db", "health.db"):
        assert stat.S_IMODE((suite.data_dir / db).stat().st_mode) == 0o600, db
