"""The router as a real process between real credits and keyvault processes and the demo upstream.

Charges are checked on the ledger itself: a request costs exactly tokens x price, a fallback charges once,
a BYOK request charges nothing, and the router's errors arrive as the domain codes the gateway maps.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.runtime import identity
from services.runtime.errors import CODE_KEY
from services.runtime.identity import SignedChannel, Signer
from tests.conftest import ROOT, free_port
from tollgate.credits.v1 import credits_pb2, credits_pb2_grpc
from tollgate.keyvault.v1 import keyvault_pb2, keyvault_pb2_grpc
from tollgate.router.v1 import router_pb2, router_pb2_grpc

pytestmark = pytest.mark.slow


@dataclass
class Suite:
    router: router_pb2_grpc.RouterStub
    credits: credits_pb2_grpc.CreditsStub
    keyvault: keyvault_pb2_grpc.KeyVaultStub
    upstream: str  # http://host:port


def _wait(address: str, proc: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(address) as chan:
        stub = health_pb2_grpc.HealthStub(chan)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    pytest.fail(f"{name} did not become ready")


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    data = tmp_path_factory.mktemp("router-suite")
    ports = {name: free_port() for name in ("router", "credits", "keyvault", "health", "upstream")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env |= {
        "TOLLGATE_DATA_DIR": str(data),
        "TOLLGATE_LOG_LEVEL": "WARNING",
        "TOLLGATE_DEMO_UPSTREAM_URL": f"http://127.0.0.1:{ports['upstream']}/v1",
        **{f"TOLLGATE_{n.upper()}_PORT": str(p) for n, p in ports.items() if n != "upstream"},
        **{f"TOLLGATE_{n.upper()}_ADDR": f"127.0.0.1:{p}" for n, p in ports.items() if n != "upstream"},
    }
    procs: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", *argv], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    try:
        upstream = start("services.demo_upstream", "--port", str(ports["upstream"]))
        keyvault = start("services.keyvault")
        _wait(f"127.0.0.1:{ports['keyvault']}", keyvault, "keyvault")
        credits = start("services.credits")
        router = start("services.router")
        _wait(f"127.0.0.1:{ports['credits']}", credits, "credits")
        _wait(f"127.0.0.1:{ports['router']}", router, "router")
        assert upstream.poll() is None
        # No identity settings: every process finds the callers' keys in the shared data folder (embedded mode).
        gateway = Signer("gateway", identity.provision(data, "gateway"))
        channels = [
            SignedChannel(grpc.insecure_channel(f"127.0.0.1:{ports[n]}"), gateway)
            for n in ("router", "credits", "keyvault")
        ]
        yield Suite(
            router_pb2_grpc.RouterStub(channels[0]),
            credits_pb2_grpc.CreditsStub(channels[1]),
            keyvault_pb2_grpc.KeyVaultStub(channels[2]),
            f"http://127.0.0.1:{ports['upstream']}",
        )
        for chan in channels:
            chan.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def ask(user: str, body: dict[str, object], power_level: str = "") -> router_pb2.CompletionRequest:
    return router_pb2.CompletionRequest(
        request_id=uuid.uuid4().hex,
        caller=router_pb2.Caller(user_id=user, key_id="k-" + user, scopes=["user"]),
        body=orjson.dumps(body),
        power_level=power_level,
    )


def balance(suite: Suite, user: str) -> int:
    """The user's balance once nothing is held (the router settles an answer just after sending it)."""
    deadline = time.monotonic() + 10
    while True:
        reply = suite.credits.GetBalance(credits_pb2.GetBalanceRequest(user_id=user), timeout=5)
        if reply.reserved_micro == 0 or time.monotonic() > deadline:
            return int(reply.balance_micro)
        time.sleep(0.02)


MESSAGES = [{"role": "user", "content": "hello there friend"}]
ONE_REQUEST_MICRO = 110  # ceil((3 * 10_000 + 4 * 20_000) / 1000): demo-echo's price, the demo upstream's tokens


def test_chat_charges_exactly_tokens_times_price(suite: Suite) -> None:
    user = "u-" + uuid.uuid4().hex[:8]
    before = balance(suite, user)
    reply = suite.router.Chat(ask(user, {"model": "demo-echo", "messages": MESSAGES}), timeout=10)
    body = orjson.loads(reply.body)
    assert body["choices"][0]["message"]["content"] == "echo: hello there friend"
    assert body["usage"]["total_tokens"] == 7
    assert reply.outcome.cost_micro == ONE_REQUEST_MICRO
    assert body["_metadata"]["cost_incurred"] == pytest.approx(0.00011)
    assert before - balance(suite, user) == ONE_REQUEST_MICRO
    assert reply.outcome.credits_remaining_micro == before - ONE_REQUEST_MICRO


def test_fallback_charges_once(suite: Suite) -> None:
    user = "u-" + uuid.uuid4().hex[:8]
    before = balance(suite, user)
    reply = suite.router.Chat(ask(user, {"model": "demo-fallback", "messages": MESSAGES}), timeout=10)
    assert reply.outcome.model == "demo-echo" and reply.outcome.fallbacks == 1
    assert orjson.loads(reply.body)["_metadata"]["fallbacks"] == 1
    assert before - balance(suite, user) == ONE_REQUEST_MICRO
    txs = suite.credits.ListTransactions(credits_pb2.ListTransactionsRequest(user_id=user, limit=50), timeout=5)
    assert [t.kind for t in txs.transactions].count("settle") == 1
    rows = suite.credits.ListUsage(credits_pb2.ListUsageRequest(user_id=user, limit=10), timeout=5).rows
    done = [r.usage for r in rows if r.usage.status == "ok"]
    assert len(done) == 1 and done[0].fallback_count == 1
    decision = orjson.loads(done[0].decision)
    assert [a["result"] for a in decision["attempts"]] == ["error", "ok"]


def test_stream_relays_and_charges(suite: Suite) -> None:
    user = "u-" + uuid.uuid4().hex[:8]
    before = balance(suite, user)
    body = {"model": "demo-echo", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    events = list(suite.router.ChatStream(ask(user, body), timeout=10))
    chunks = [orjson.loads(e.chunk) for e in events if e.WhichOneof("event") == "chunk"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "echo: hello there friend"
    assert events[-1].WhichOneof("event") == "outcome"
    assert events[-1].outcome.cost_micro == ONE_REQUEST_MICRO
    assert before - balance(suite, user) == ONE_REQUEST_MICRO


def test_a_stored_own_key_buys_nothing_where_the_provider_checks_no_keys(suite: Suite) -> None:
    """The demo provider answers any key: a junk BYOK key must not make its calls free."""
    user = "u-" + uuid.uuid4().hex[:8]
    key = "sk-junk-" + uuid.uuid4().hex
    suite.keyvault.PutProviderKey(keyvault_pb2.PutProviderKeyRequest(user_id=user, provider="demo", api_key=key))
    before = balance(suite, user)
    reply = suite.router.Chat(ask(user, {"model": "demo-echo", "messages": MESSAGES}), timeout=10)
    assert not reply.outcome.byok and reply.outcome.cost_micro == ONE_REQUEST_MICRO
    assert before - balance(suite, user) == ONE_REQUEST_MICRO
    stats = httpx.get(suite.upstream + "/_stats").json()
    assert stats["last_authorization"].get("demo-echo") != f"Bearer {key}"


def test_unknown_model_is_not_found_with_its_code(suite: Suite) -> None:
    with pytest.raises(grpc.RpcError) as err:
        suite.router.Chat(ask("u-x", {"model": "no-such-model", "messages": MESSAGES}), timeout=10)
    call = err.value
    assert call.code() is grpc.StatusCode.NOT_FOUND
    assert dict(call.trailing_metadata())[CODE_KEY] == "model_not_found"
    assert "no-such-model" in call.details()


def test_bad_body_names_the_parameter(suite: Suite) -> None:
    with pytest.raises(grpc.RpcError) as err:
        suite.router.Chat(ask("u-x", {"model": "demo-echo"}), timeout=10)
    meta = dict(err.value.trailing_metadata())
    assert meta[CODE_KEY] == "invalid_request" and meta["tollgate-param"] == "messages"


def test_models_and_selection(suite: Suite, tmp_path: Path) -> None:
    listing = suite.router.ListModels(router_pb2.ListModelsRequest(), timeout=5)
    assert {m.id for m in listing.models} == {"demo-echo", "demo-free", "demo-embed", "demo-fallback"}
    body = orjson.loads(listing.body)
    assert body["object"] == "list" and all("owned_by" in m and "created" in m for m in body["data"])
    selection = suite.router.SelectModel(ask("u-x", {"messages": MESSAGES}, "ECO"), timeout=5)
    assert selection.chosen == "demo-free" and selection.power_level == "ECO"
    assert [c.model for c in selection.candidates][:2] == ["demo-free", "demo-echo"]


def test_allow_lists_refuse_a_named_model_and_narrow_automatic_choices(suite: Suite) -> None:
    """The gateway's word on the key's and team's allow-lists, as real gRPC: 403 `model_not_allowed` naming it."""
    user = "u-" + uuid.uuid4().hex[:8]
    request = ask(user, {"model": "demo-echo", "messages": MESSAGES})
    request.caller.allowed_models.extend(["demo-free", "tier:BALANCED"])
    request.caller.team_allowed_models.append("demo-free")  # the team's list narrows the key's
    before = balance(suite, user)
    with pytest.raises(grpc.RpcError) as err:
        suite.router.Chat(request, timeout=10)
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    meta = dict(err.value.trailing_metadata())
    assert meta[CODE_KEY] == "model_not_allowed" and meta["tollgate-param"] == "model"
    assert "demo-echo" in err.value.details()
    assert balance(suite, user) == before  # refused before any hold
    automatic = ask(user, {"messages": MESSAGES}, "PRECISION")
    automatic.caller.allowed_models.append("demo-free")
    reply = suite.router.Chat(automatic, timeout=10)
    assert reply.outcome.model == "demo-free"
    selection = suite.router.SelectModel(automatic, timeout=5)
    assert [c.model for c in selection.candidates] == ["demo-free"]
    # provider preferences never widen the list, and name only catalog providers
    steered = ask(user, {"model": "demo-free", "messages": MESSAGES, "provider": {"only": ["evil"]}})
    with pytest.raises(grpc.RpcError) as err:
        suite.router.Chat(steered, timeout=10)
    assert dict(err.value.trailing_metadata())["tollgate-param"] == "provider.only"


def test_reload_catalog_is_for_admins_only(suite: Suite) -> None:
    with pytest.raises(grpc.RpcError) as err:
        suite.router.ReloadCatalog(router_pb2.ReloadCatalogRequest(actor="me"), timeout=5)
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
