"""Attacks with a normal user key on the newest routes: usage attribution and its filters, provider
maintenance (over HTTP and health's gRPC port), `/v1/providers`, the metrics port and short deadlines.

Each test is one attack against the real processes of the conftest's `edge` suite; it passes when the
attack fails.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest

from services.router.clients import Funds
from services.router.settlements import Settlements, read_owed
from services.runtime import identity
from tests.e2e.support import bearer, create_key, eventually, grpc_channel, reconcile, usage_rows
from tests.security.conftest import Edge
from tollgate.credits.v1 import credits_pb2
from tollgate.health.v1 import health_pb2, health_pb2_grpc
from tollgate.router.v1 import router_pb2, router_pb2_grpc

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"


def _user(edge: Edge, http: httpx.Client, keys: dict[str, str], name: str) -> str:
    key = create_key(edge.suite, name)
    grant = {"user_id": name, "amount": "100", "idempotency_key": f"ops-{uuid.uuid4().hex}"}
    assert http.post("/v1/admin/credits", json=grant, headers=bearer(keys["admin_key"])).status_code == 201
    return key


@pytest.fixture(scope="module")
def pair(edge: Edge, http: httpx.Client, keys: dict[str, str]) -> dict[str, str]:
    """Two users, each with one tagged, end-user-attributed request on the log."""
    tag = uuid.uuid4().hex[:8]
    alice, bob = f"ops-alice-{tag}", f"ops-bob-{tag}"
    found = {"alice": _user(edge, http, keys, alice), "bob": _user(edge, http, keys, bob), "tag": tag}
    found |= {"alice_id": alice, "bob_id": bob}
    for who in ("alice", "bob"):
        body = {
            "model": "echo-paid",
            "messages": [{"role": "user", "content": f"hello from {who}"}],
            "user": f"end-{who}",
            "metadata": {"team": f"{who}-team", "run": tag},
        }
        reply = http.post(CHAT, json=body, headers=bearer(found[who]))
        assert reply.status_code == 200, reply.text
    for who in ("alice", "bob"):
        usage_rows(http, found[who], 1)
    return found


def _error(reply: httpx.Response, status: int) -> dict[str, Any]:
    assert reply.status_code == status, (reply.status_code, reply.text)
    error: dict[str, Any] = reply.json()["error"]
    assert {"message", "type", "param", "code"} <= set(error)
    assert "Traceback" not in reply.text
    return error


# --- usage: crossing users through ids and filters ---------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "user=*",
        "user=BOB",
        "user=ALICE&user=BOB",
        "user=BOB&user=ALICE&user=*",
    ],
)
@pytest.mark.parametrize("path", ["/v1/usage", "/v1/usage/summary", "/api/v1/llm/usage"])
def test_a_user_cannot_name_another_user_or_everyone(
    http: httpx.Client, pair: dict[str, str], path: str, query: str
) -> None:
    query = query.replace("BOB", pair["bob_id"]).replace("ALICE", pair["alice_id"])
    reply = http.get(f"{path}?{query}", headers=bearer(pair["alice"]))
    if reply.status_code == 200:
        assert pair["bob_id"] not in reply.text, reply.text
    else:
        _error(reply, 403)


def test_filters_never_widen_to_another_users_rows(http: httpx.Client, pair: dict[str, str]) -> None:
    bobs = http.get("/v1/usage", headers=bearer(pair["bob"])).json()["data"]
    bob_key = bobs[0]["key_id"]
    for query in (
        {"key": bob_key},
        {"end_user": "end-bob"},
        {"tag.team": "bob-team"},
        {"tag.run": pair["tag"]},
        {"model": "echo-paid"},
    ):
        for path in ("/v1/usage", "/v1/usage/summary"):
            params = {**query, "group_by": "user"} if path.endswith("summary") else query
            reply = http.get(path, params=params, headers=bearer(pair["alice"]))
            assert reply.status_code == 200, reply.text
            assert pair["bob_id"] not in reply.text and "bob-team" not in reply.text.replace("tag.team", ""), (
                path,
                query,
                reply.text,
            )
    # What Alice does see of hers, grouped by her tag, is hers alone.
    groups = http.get("/v1/usage/summary", params={"group_by": "tag:team"}, headers=bearer(pair["alice"])).json()[
        "data"
    ]
    assert [g["key"] for g in groups] == ["alice-team"], groups


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"group_by": "tag:team') OR 1=1 --"}, "group_by"),
        ({"group_by": 'tag:a"b'}, "group_by"),
        ({"group_by": "tag:"}, "group_by"),
        ({"group_by": "user_id"}, "group_by"),
        ({"group_by": "key; DROP TABLE usage"}, "group_by"),
        ({"tag.team') OR '1'='1": "x"}, "tag"),
        ({'tag.a"b': "x"}, "tag"),
        ({"tag.": "x"}, "tag"),
        ({"tag." + "a" * 65: "x"}, "tag"),
        ({"tag.team": "x\x00y"}, "tag.team"),
        ({"tag.team": "v" * 513}, "tag.team"),
        ({f"tag.t{i}": "v" for i in range(17)}, "tag"),
        ({"end_user": "e" * 257}, "end_user"),
        ({"key": "k" * 257}, "key"),
        ({"since": "2024-13-01"}, "since"),
        ({"until": "yesterday"}, "until"),
        ({"limit": "1e3"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"before": "-1"}, "before"),
        ({"before": "1 OR 1=1"}, "before"),
    ],
)
def test_odd_filters_are_refused_naming_the_field(
    http: httpx.Client, pair: dict[str, str], params: dict[str, str], param: str
) -> None:
    path = "/v1/usage/summary" if "group_by" in params else "/v1/usage"
    error = _error(http.get(path, params=params, headers=bearer(pair["alice"])), 400)
    assert str(error["param"]).startswith(param), error


def test_repeated_filters_are_refused(http: httpx.Client, pair: dict[str, str]) -> None:
    for name in ("model", "key", "end_user", "tag.team"):
        reply = http.get(f"/v1/usage?{name}=a&{name}=b", headers=bearer(pair["alice"]))
        assert _error(reply, 400)["param"] == name


def test_tag_names_of_odd_but_allowed_characters_match_exactly(http: httpx.Client, pair: dict[str, str]) -> None:
    """Tag names with `.` `:` `/` `-` are JSON-path characters: they must neither fail nor match another tag."""
    key = pair["alice"]
    body = {"model": "echo-free", "messages": [{"role": "user", "content": "tags"}]}
    tags = "a.b=dotted,a:b=colon,a/b=slash,a-b=dash"
    assert http.post(CHAT, json=body, headers={**bearer(key), "X-Tollgate-Tags": tags}).status_code == 200
    usage_rows(http, key, 2)
    for name, value in (("a.b", "dotted"), ("a:b", "colon"), ("a/b", "slash"), ("a-b", "dash")):
        groups = http.get("/v1/usage/summary", params={"group_by": f"tag:{name}"}, headers=bearer(key)).json()
        assert {g["key"] for g in groups["data"]} == {"", value}, (name, groups)
        rows = http.get("/v1/usage", params={f"tag.{name}": value}, headers=bearer(key)).json()["data"]
        assert len(rows) == 1 and rows[0]["tags"][name] == value, (name, rows)
    assert http.get("/v1/usage", params={"tag.a": "x"}, headers=bearer(key)).json()["data"] == []


# --- provider maintenance and /v1/providers -----------------------------------------------------------------


def test_a_user_cannot_hold_a_provider_or_read_the_log(
    http: httpx.Client, pair: dict[str, str], keys: dict[str, str]
) -> None:
    user = bearer(pair["alice"])
    _error(http.post("/v1/providers/fake/maintenance", json={"state": "down", "reason": "mine"}, headers=user), 403)
    hold = {"state": "down", "reason": "mine"}
    odd = http.post("/v1/providers/fake%2F..%2Fother/maintenance", json=hold, headers=user)
    assert odd.status_code in (403, 404), odd.text
    _error(http.get("/v1/admin/providers/maintenance", headers=user), 403)
    _error(http.post("/v1/admin/providers/health/check", json={}, headers=user), 403)
    # Nothing was held by those refusals.
    providers = http.get("/v1/providers", headers=user).json()["data"]
    fake = next(p for p in providers if p["id"] == "fake")
    assert fake["maintenance"] is None, fake
    log = http.get("/v1/admin/providers/maintenance", headers=bearer(keys["admin_key"])).json()["data"]
    assert all(r["reason"] != "mine" for r in log), log


def test_users_see_a_hold_without_who_placed_it(http: httpx.Client, pair: dict[str, str], keys: dict[str, str]) -> None:
    admin = bearer(keys["admin_key"])
    held = http.post("/v1/providers/fake-free/maintenance", json={"state": "up", "reason": "ops test"}, headers=admin)
    assert held.status_code == 200, held.text
    try:
        for path in ("/v1/providers", "/v1/providers/health"):
            reply = http.get(path, headers=bearer(pair["alice"]))
            body = reply.json()
            providers = body["data"] if "data" in body else body["providers"]
            free = next(p for p in providers if p["id"] == "fake-free")
            assert free["maintenance"]["state"] == "up"
            assert "by" not in free["maintenance"], free
            assert all("by" not in (e["maintenance"] or {}) for e in free["endpoints"]), free
            # A provider's error text may repeat another user's request; an endpoint's address is the operator's.
            assert all("last_error" not in e and "base_url" not in e for p in providers for e in p["endpoints"])
        shown = http.get("/v1/providers", headers=admin).json()["data"]
        fake_free = next(p for p in shown if p["id"] == "fake-free")
        assert fake_free["maintenance"]["by"]
        assert all("last_error" in e and "base_url" in e for e in fake_free["endpoints"])
    finally:
        back = http.post("/v1/providers/fake-free/maintenance", json={"state": "auto"}, headers=admin)
        assert back.status_code == 200, back.text


def _health_refused(edge: Edge, name: str | None, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.StatusCode:
    with grpc_channel(edge.suite, "health", name) as chan:
        stub = health_pb2_grpc.ProviderHealthStub(chan)
        codes = []
        for call, request in (
            (stub.SetMaintenance, health_pb2.SetMaintenanceRequest(provider="fake", state="down", reason="grpc")),
            (stub.ListMaintenance, health_pb2.ListMaintenanceRequest()),
            (stub.CheckNow, health_pb2.CheckNowRequest()),
        ):
            with pytest.raises(grpc.RpcError) as err:
                call(request, timeout=10, metadata=metadata)
            codes.append(err.value.code())
    assert len(set(codes)) == 1, codes
    return codes[0]


def _forged_gateway_token(audience: str) -> str:
    """A token that claims to be the gateway, signed with a key the suite never trusted."""
    return identity.Signer(identity.GATEWAY, uuid.uuid4().hex * 2).token(audience)


def test_health_admin_rpcs_need_an_admin_identity(edge: Edge, pair: dict[str, str]) -> None:
    admin_scopes = ((identity.ACTING_USER_HEADER, "root"), (identity.ACTING_SCOPES_HEADER, "admin,user"))
    unauthenticated = grpc.StatusCode.UNAUTHENTICATED
    assert _health_refused(edge, None) is unauthenticated
    assert _health_refused(edge, None, (("authorization", f"Bearer {pair['alice']}"),)) is unauthenticated
    assert _health_refused(edge, None, ((identity.TOKEN_HEADER, _forged_gateway_token("health")),)) is unauthenticated
    forged = ((identity.TOKEN_HEADER, _forged_gateway_token("health")), *admin_scopes)
    assert _health_refused(edge, None, forged) is unauthenticated
    # The router is a real caller of health, but not an admin, whatever scopes it claims to act with.
    assert _health_refused(edge, "router") is grpc.StatusCode.PERMISSION_DENIED
    assert _health_refused(edge, "router", admin_scopes) is grpc.StatusCode.PERMISSION_DENIED
    # The gateway's own identity without a user's admin scope is not an admin either.
    assert _health_refused(edge, "gateway") is grpc.StatusCode.PERMISSION_DENIED


# --- the metrics port: labels carry no client input ------------------------------------------------------------


def test_client_input_does_not_become_metric_labels(edge: Edge, http: httpx.Client, pair: dict[str, str]) -> None:
    marker = f"zz{uuid.uuid4().hex[:10]}"
    user = bearer(pair["alice"])
    http.post(CHAT, json={"model": f"{marker}-model", "messages": [{"role": "user", "content": "x"}]}, headers=user)
    http.get(f"/v1/{marker}-route", headers=user)
    http.get(f"/v1/usage?tag.{marker}=v", headers=user)
    tagged = {**user, "X-Tollgate-Tags": f"{marker}=v"}
    body = {"model": "echo-free", "messages": [{"role": "user", "content": "x"}], "user": marker}
    assert http.post(CHAT, json=body, headers=tagged).status_code == 200
    with httpx.Client(timeout=10) as scrape:
        text = scrape.get(f"http://{edge.suite.host}:{edge.metrics_port}/metrics").text
    assert "tollgate_http_requests_total" in text
    assert marker not in text


# --- deadlines: a client-chosen deadline cannot make its hold expire unpaid ---------------------------------------


def test_a_tiny_native_deadline_still_pays_or_releases(edge: Edge, http: httpx.Client, keys: dict[str, str]) -> None:
    """A caller with its own key on the router's port picks its gRPC deadline: holds must still resolve."""
    name = f"ops-deadline-{uuid.uuid4().hex[:8]}"
    key = _user(edge, http, keys, name)
    before = http.get("/v1/credits", headers=bearer(key)).json()["balance_micro"]
    body = orjson.dumps({"model": "slow-echo", "messages": [{"role": "user", "content": "slow " * 20}]})
    with grpc_channel(edge.suite, "router", None) as chan:
        stub = router_pb2_grpc.RouterStub(chan)
        meta = (("authorization", f"Bearer {key}"),)
        for timeout in (0.05, 0.5):
            with pytest.raises(grpc.RpcError):
                for _ in stub.ChatStream(router_pb2.CompletionRequest(body=body), timeout=timeout, metadata=meta):
                    pass
    usage_rows(http, key, 1, wait=15)

    def settled() -> bool:
        # Each call's settle lands on its own: compare once nothing is held and every row is written.
        after = http.get("/v1/credits", headers=bearer(key)).json()
        rows = http.get("/v1/usage", headers=bearer(key)).json()["data"]
        paid = sum(r["cost_micro"] for r in rows)
        return bool(after["reserved_micro"] == 0 and before - after["balance_micro"] == paid)

    eventually(settled, "every hold of a short-deadline call resolved, charged as its usage rows say")
    checked = reconcile(f"sqlite:///{edge.suite.data_dir / 'credits.db'}")
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- the router's settle journal: a client's big attribution cannot make an owed settle vanish -------------------


class _SlowLedger:
    """Credits as the journal sees it: a settle of `slow` waits for `release`, every other one lands at once."""

    def __init__(self, slow: str) -> None:
        self.slow = slow
        self.release = asyncio.Event()

    async def settle(self, hold_id: str, amount_micro: int, key: str, usage: Any, timeout: float) -> Funds:
        if key == self.slow:
            await self.release.wait()
        return Funds(available_micro=1, low=False)


def test_journal_compaction_keeps_settles_still_in_flight(tmp_path: Path) -> None:
    """Tags and end users are the client's and fill journal lines (16 x 512 characters each): once the file
    passes its compaction size, a settle landing must not erase the line of another one still on its way to
    credits, or a router killed then loses that debt."""

    async def attack(journal_file: Path) -> list[str]:
        ledger = _SlowLedger("in-flight")
        journal = Settlements(ledger, tmp_path, rpc_timeout=1)  # type: ignore[arg-type]
        big = credits_pb2.UsageRecord(
            user_id="mallory", end_user="e" * 256, tags={f"t{i}": "v" * 512 for i in range(16)}
        )
        slow = asyncio.ensure_future(journal.settle("h-slow", 5, "in-flight", big, 1))
        await asyncio.sleep(0.05)
        # Others land while it waits, past the compaction size with the client's own fat attribution.
        for n in range(120):
            await journal.settle(f"h{n}", 1, f"k{n}", big, 1)
        owed = [entry.key for entry in read_owed(journal_file)]
        ledger.release.set()
        await slow
        journal.close()
        return owed

    assert asyncio.run(attack(tmp_path / f"settles-{os.getpid()}.jsonl")) == ["in-flight"]


@pytest.mark.parametrize("field", ["timeout", "request_timeout", "stream_timeout", "mock_timeout"])
def test_a_body_cannot_pick_the_provider_calls_deadline(
    edge: Edge, http: httpx.Client, pair: dict[str, str], field: str
) -> None:
    marker = uuid.uuid4().hex
    body = {"model": "echo-paid", "messages": [{"role": "user", "content": marker}], field: 0.001}
    reply = http.post(CHAT, json=body, headers=bearer(pair["alice"]))
    if reply.status_code != 200:
        assert _error(reply, 400)["param"] == field
        return
    with httpx.Client(base_url=edge.upstream, timeout=10) as upstream:
        sent = upstream.get("/_stats").json()["last_bodies"]
    received = next(b for b in sent.values() if marker in orjson.dumps(b).decode())
    assert field not in received, received


def test_grpc_timeout_headers_do_not_reach_the_router(http: httpx.Client, pair: dict[str, str]) -> None:
    """An HTTP client sending gRPC's own deadline header gets the gateway's deadline, and pays as usual."""
    key = pair["alice"]
    before = http.get("/v1/credits", headers=bearer(key)).json()["balance_micro"]
    body = {"model": "echo-paid", "messages": [{"role": "user", "content": "deadline header"}]}
    for value in ("1n", "1u", "0S"):
        headers = {**bearer(key), "grpc-timeout": value, "x-tollgate-deadline": "0"}
        reply = http.post(CHAT, json=body, headers=headers)
        assert reply.status_code == 200, reply.text

    def settled() -> bool:
        after = http.get("/v1/credits", headers=bearer(key)).json()
        return bool(after["reserved_micro"] == 0 and after["balance_micro"] < before)

    eventually(settled, "the three calls settled and charged")


# --- rate-limit windows and Retry-After --------------------------------------------------------------------------


def test_a_burst_cannot_outrun_the_request_window(edge: Edge, pair: dict[str, str]) -> None:
    """Twenty requests at once on a key of 3 per minute: three pass, the rest get 429 with a true Retry-After."""
    key = create_key(edge.suite, pair["alice_id"], rpm=3)
    if (left := 60 - time.time() % 60) < 5:
        time.sleep(left + 0.2)  # windows are wall-clock minutes: keep the burst inside one
    body = {"model": "echo-free", "messages": [{"role": "user", "content": "burst"}]}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
            return await asyncio.gather(*(client.post(CHAT, json=body, headers=bearer(key)) for _ in range(20)))

    replies = asyncio.run(burst())
    statuses = sorted(r.status_code for r in replies)
    assert statuses.count(200) == 3 and statuses.count(429) == 17, statuses
    for reply in replies:
        if reply.status_code == 429:
            assert _error(reply, 429)["code"] == "rate_limit_exceeded"
            assert 1 <= int(reply.headers["retry-after"]) <= 60, reply.headers
            assert reply.headers["x-ratelimit-remaining-requests"] == "0", reply.headers


def test_the_running_routers_journal_is_its_own(edge: Edge, pair: dict[str, str]) -> None:
    """The journal holds users' attribution and what they owe: no other account on the host may read or edit it."""
    folder = edge.suite.data_dir / "router"
    assert folder.stat().st_mode & 0o077 == 0, oct(folder.stat().st_mode)
    journals = list(folder.glob("settles-*.jsonl"))
    assert journals
    for journal in journals:
        assert journal.stat().st_mode & 0o077 == 0, (journal, oct(journal.stat().st_mode))
