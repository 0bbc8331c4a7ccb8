"""Issue 17's teams, key policies, budgets and routing preferences attacked from outside: a normal key, a team
member, a team admin going after another team, and a client of the native gRPC API. Against the suite as real
processes (the shared `suite`, with the e2e catalog: `echo-paid` has the alias `echo`, `slow-paid` answers
after 3 s)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from services.launcher import Suite
from tests.e2e.support import bearer, eventually

HI = [{"role": "user", "content": "hi"}]
CHAT = "/v1/chat/completions"


def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def http(suite: Suite) -> Any:
    with httpx.Client(base_url=suite.base_url.removesuffix("/v1"), timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def admin(suite: Suite) -> dict[str, str]:
    return bearer(suite.bootstrap_keys()["admin_key"])


def new_key(http: httpx.Client, admin: dict[str, str], user: str, credits: float = 5, **policy: Any) -> dict[str, Any]:
    made = http.post("/v1/admin/keys", json={"user_id": user, **policy}, headers=admin)
    assert made.status_code == 201, made.text
    if credits:
        granted = http.post("/v1/admin/credits", json={"user": user, "amount": credits}, headers=admin)
        assert granted.status_code in (200, 201), granted.text
    return dict(made.json())


def _openai_error(reply: httpx.Response, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    error: dict[str, Any] = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


# --- the parallel cap: a slot taken must come back, whatever ends the request ---


@pytest.mark.parametrize(
    "extra",
    [{"byok": True}, {"api_key": 7, "provider": "fake"}, {"api_key": "sk-x"}],
    ids=["byok-without-key", "key-not-a-string", "key-without-provider"],
)
def test_a_request_refused_after_admission_gives_its_parallel_slot_back(
    http: httpx.Client, admin: dict[str, str], extra: dict[str, Any]
) -> None:
    """An inline-BYOK body refused with 400 once the key's slot was taken must not keep the slot: otherwise a
    key with `max_parallel: 1` locks itself out for the request timeout plus a minute."""
    made = new_key(http, admin, f"leak-{tag()}", max_parallel=1)
    auth = bearer(made["key"])
    for _ in range(3):
        _openai_error(http.post(CHAT, json={"model": "echo-paid", "messages": HI, **extra}, headers=auth), 400)
    served = http.post(CHAT, json={"model": "echo-paid", "messages": HI}, headers=auth)
    assert served.status_code == 200, served.text


def test_a_stream_left_before_its_first_chunk_frees_its_slot(
    suite: Suite, http: httpx.Client, admin: dict[str, str]
) -> None:
    made = new_key(http, admin, f"gone-{tag()}", max_parallel=1)
    auth = bearer(made["key"])

    async def leave() -> None:
        async with httpx.AsyncClient(base_url=suite.base_url.removesuffix("/v1"), timeout=30) as client:
            body = {"model": "slow-paid", "messages": HI, "stream": True}
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.post(CHAT, json=body, headers=auth), 0.5)

    asyncio.run(leave())
    eventually(
        lambda: http.post(CHAT, json={"model": "echo-paid", "messages": HI}, headers=auth).status_code == 200,
        "the slot of a stream its client left comes back",
        timeout=12,
    )


# --- per-key-per-model limits: a model is one model whatever name it is called by ---


def test_a_model_limit_set_on_an_alias_holds_for_every_name_of_the_model(
    http: httpx.Client, admin: dict[str, str]
) -> None:
    made = new_key(http, admin, f"alias-{tag()}", model_limits={"echo": {"rpm": 2}})
    auth = bearer(made["key"])
    statuses = [
        http.post(CHAT, json={"model": name, "messages": HI}, headers=auth).status_code
        for name in ("echo-paid", "echo", "echo-paid", "echo")
    ]
    assert statuses == [200, 200, 429, 429]


def test_a_team_model_limit_on_an_alias_holds_for_its_members(http: httpx.Client, admin: dict[str, str]) -> None:
    team, user = f"lim-{tag()}", f"limmer-{tag()}"
    made = http.post("/v1/teams", json={"team_id": team, "model_limits": {"echo": {"rpm": 1}}}, headers=admin)
    assert made.status_code == 201, made.text
    assert http.put(f"/v1/teams/{team}/members/{user}", json={}, headers=admin).status_code == 200
    auth = bearer(new_key(http, admin, user)["key"])
    assert http.post(CHAT, json={"model": "echo-paid", "messages": HI}, headers=auth).status_code == 200
    _openai_error(http.post(CHAT, json={"model": "echo-paid", "messages": HI}, headers=auth), 429)


# --- allow-lists: no side door answers about a model the key may not use ---


def test_count_tokens_and_selection_keep_to_the_allow_list(http: httpx.Client, admin: dict[str, str]) -> None:
    made = new_key(http, admin, f"counter-{tag()}", models=["echo-free"])
    auth = bearer(made["key"])
    body = {"model": "echo-paid", "max_tokens": 10, "messages": HI}
    counted = http.post("/v1/messages/count_tokens", json=body, headers=auth)
    assert counted.status_code == 403, counted.text
    assert counted.json()["error"]["type"] == "permission_error"
    assert http.post("/v1/messages/count_tokens", json={**body, "model": "echo-free"}, headers=auth).status_code == 200
    _openai_error(http.post("/v1/models/select", json={"model": "echo", "messages": HI}, headers=auth), 403)
    for name in ("ECHO-PAID", "echo-paid ", "tier:BALANCED"):
        reply = http.post(CHAT, json={"model": name, "messages": HI}, headers=auth)
        assert reply.status_code in (400, 403, 404), (name, reply.text)
    # Preferences and power levels never widen the list.
    steered = {"model": "echo-paid", "messages": HI, "provider": {"only": ["fake"]}}
    _openai_error(http.post(CHAT, json=steered, headers=auth), 403)
    for level in ("PRECISION", "BALANCED"):
        chosen = http.post(CHAT, json={"messages": HI}, headers={**auth, "x-power-level": level})
        assert chosen.status_code in (200, 403), chosen.text
        if chosen.status_code == 200:
            assert chosen.headers["x-tollgate-model"] == "echo-free"


def test_provider_preferences_never_name_a_place_outside_the_catalog(http: httpx.Client, admin: dict[str, str]) -> None:
    auth = bearer(new_key(http, admin, f"pref-{tag()}")["key"])
    for provider in (
        {"only": ["http://127.0.0.1:9/v1"]},
        {"order": ["fake", "https://evil.test"]},
        {"api_base": "http://127.0.0.1:9/v1"},
        {"sort": "cheapest"},
        {"only": "fake"},
        {"order": [1]},
        "fake",
    ):
        error = _openai_error(
            http.post(CHAT, json={"model": "echo-paid", "messages": HI, "provider": provider}, headers=auth), 400
        )
        assert error["param"].startswith("provider"), error


# --- admin routes and other teams ---


def test_catalog_reload_is_for_admins_only(http: httpx.Client, admin: dict[str, str]) -> None:
    team, boss = f"reload-{tag()}", f"boss-{tag()}"
    assert http.post("/v1/teams", json={"team_id": team}, headers=admin).status_code == 201
    assert http.put(f"/v1/teams/{team}/members/{boss}", json={"role": "admin"}, headers=admin).status_code == 200
    for user in (f"plain-{tag()}", boss):
        auth = bearer(new_key(http, admin, user, credits=0)["key"])
        stuffed = {**auth, "x-tollgate-acting-scopes": "admin", "x-tollgate-acting-user": "admin"}
        _openai_error(http.post("/v1/admin/catalog/reload", headers=stuffed), 403)
    assert http.post("/v1/admin/catalog/reload", headers=admin).status_code == 200


def test_a_team_admin_reaches_no_budget_of_another_team(http: httpx.Client, admin: dict[str, str]) -> None:
    red, blue = f"bred-{tag()}", f"bblue-{tag()}"
    people: dict[str, dict[str, Any]] = {}
    for team in (red, blue):
        assert http.post("/v1/teams", json={"team_id": team}, headers=admin).status_code == 201
    for name, team, role in (("rita", red, "admin"), ("bea", blue, "admin"), ("bob", blue, "member")):
        user = f"{name}-{tag()}"
        assert http.put(f"/v1/teams/{team}/members/{user}", json={"role": role}, headers=admin).status_code == 200
        people[name] = {"user": user, **new_key(http, admin, user, credits=0)}
    rita = bearer(people["rita"]["key"])
    blue_budget = http.post(
        "/v1/budgets",
        json={"scope": "team", "scope_id": blue, "period": "daily", "timezone": "UTC", "limit": 1},
        headers=admin,
    )
    assert blue_budget.status_code == 201, blue_budget.text
    budget_id = blue_budget.json()["id"]
    for body in (
        {"scope": "team", "scope_id": blue, "period": "daily", "timezone": "UTC", "limit": 1000},
        {"scope": "user", "scope_id": people["bob"]["user"], "period": "daily", "timezone": "UTC", "limit": 0},
        {"scope": "key", "scope_id": people["bob"]["id"], "period": "daily", "timezone": "UTC", "limit": 0},
        {"scope": "team", "scope_id": red, "period": "daily", "timezone": "UTC", "limit": 5, "id": budget_id},
    ):
        reply = http.post("/v1/budgets", json=body, headers=rita)
        assert reply.status_code in (403, 404), (body, reply.text)
    _openai_error(http.delete(f"/v1/budgets/{budget_id}", headers=rita), 404)
    _openai_error(http.delete("/v1/budgets/no-such-budget", headers=rita), 404)
    listed = http.get("/v1/budgets", params={"scope": "team", "scope_id": blue}, headers=rita)
    assert listed.status_code == 200 and listed.json()["data"] == []
    # The budget is unchanged.
    mine = http.get("/v1/budgets", params={"scope": "team", "scope_id": blue}, headers=admin).json()["data"]
    assert [(b["id"], b["limit_micro"]) for b in mine] == [(budget_id, 1_000_000)]


def test_a_team_admin_cannot_lift_the_budget_an_admin_set_on_its_team(
    http: httpx.Client, admin: dict[str, str]
) -> None:
    team, boss, member = f"capped-{tag()}", f"boss-{tag()}", f"mem-{tag()}"
    assert http.post("/v1/teams", json={"team_id": team}, headers=admin).status_code == 201
    for user, role in ((boss, "admin"), (member, "member")):
        assert http.put(f"/v1/teams/{team}/members/{user}", json={"role": role}, headers=admin).status_code == 200
    boss_auth = bearer(new_key(http, admin, boss, credits=0)["key"])
    member_key = new_key(http, admin, member, credits=0)
    day = {"period": "daily", "timezone": "UTC"}
    cap = http.post("/v1/budgets", json={"scope": "team", "scope_id": team, **day, "limit": 1}, headers=admin)
    assert cap.status_code == 201, cap.text
    on_key = {"scope": "key", "scope_id": member_key["id"], **day}
    key_cap = http.post("/v1/budgets", json={**on_key, "limit": 1}, headers=admin)
    assert key_cap.status_code == 201, key_cap.text
    for body in (
        {"scope": "team", "scope_id": team, **day, "limit": 1000},  # replaced by (scope, period)
        {"id": cap.json()["id"], "scope": "team", "scope_id": team, **day, "limit": 1000},
        {"scope": "team", "scope_id": team, "period": "daily", "timezone": "Pacific/Kiritimati", "limit": 1},
        {**on_key, "limit": 1000},
    ):
        _openai_error(http.post("/v1/budgets", json=body, headers=boss_auth), 403)
    for budget in (cap, key_cap):
        _openai_error(http.delete(f"/v1/budgets/{budget.json()['id']}", headers=boss_auth), 403)
    listed = http.get("/v1/budgets", headers=admin).json()["data"]
    mine = {b["id"]: (b["limit_micro"], b["timezone"]) for b in listed}
    assert mine[cap.json()["id"]] == mine[key_cap.json()["id"]] == (1_000_000, "UTC")
    # Its own budgets on its members stay the team admin's to manage.
    weekly = {"scope": "key", "scope_id": member_key["id"], "period": "weekly", "timezone": "UTC"}
    own = http.post("/v1/budgets", json={**weekly, "limit": 2}, headers=boss_auth)
    assert own.status_code == 201, own.text
    assert http.post("/v1/budgets", json={**weekly, "limit": 3}, headers=boss_auth).status_code == 201
    assert http.delete(f"/v1/budgets/{own.json()['id']}", headers=boss_auth).status_code == 200


# --- bad input to the new routes: 400 naming the field, never a 500 ---


@pytest.mark.parametrize(
    "body",
    [
        {"team_id": "tëam"},
        {"team_id": "x" * 65},
        {"team_id": 5},
        {"name": ["x"]},
        {"name": "n" * 201},
        {"pooled": "yes"},
        {"models": ["tier:"]},
        {"models": ["tier:no-such-tier"]},
        {"models": ["echo-paid\u0000"]},
        {"models": ["x"] * 201},
        {"max_parallel": 1e300},
        {"max_parallel": -1},
        {"max_parallel": "2"},
        {"model_limits": {"echo-paid": {"rpm": -1}}},
        {"model_limits": {"echo-paid": {"rpm": 2**40}}},
        {"model_limits": {"echo-paid": {"rpm": 0, "tpm": 0}}},
        {"model_limits": {"echo-paid": []}},
        {"model_limits": {"tier:FREE": {"rpm": 1}}},
        {"model_limits": {"\u00e9cho": {"rpm": 1}}},
        {"model_limits": ["echo-paid"]},
        {"members": []},
    ],
)
def test_a_team_that_cannot_work_is_refused_naming_the_field(
    http: httpx.Client, admin: dict[str, str], body: dict[str, Any]
) -> None:
    payload = {"team_id": f"bad-{tag()}", **body}
    error = _openai_error(http.post("/v1/teams", json=payload, headers=admin), 400)
    assert error["param"], error
    created = (
        http.get(f"/v1/teams/{payload['team_id']}", headers=admin) if isinstance(payload["team_id"], str) else None
    )
    assert created is None or created.status_code in (400, 404), created.text  # nothing half-applied


@pytest.mark.parametrize(
    "body",
    [
        {"period": "hourly"},
        {"period": "daily", "timezone": ""},
        {"timezone": "Mars/Olympus_Mons"},
        {"timezone": "../../etc/passwd"},
        {"timezone": "/etc/localtime"},
        {"timezone": "UTC\u0000"},
        {"timezone": "x" * 10_000},
        {"limit": -5},
        {"limit": "1e400"},
        {"limit": "NaN"},
        {"limit": "Infinity"},
        {"limit": 0.0000001},
        {"limit": [1]},
        {"limit_micro": 2**70},
        {"limit_micro": 1.5},
        {"alert_percents": [0]},
        {"alert_percents": [50, "80"]},
        {"alert_percents": list(range(1, 20))},
        {"scope": "org"},
        {"scope": "team", "scope_id": ""},
        {"scope": 1},
    ],
)
def test_a_budget_that_cannot_work_is_refused(http: httpx.Client, admin: dict[str, str], body: dict[str, Any]) -> None:
    payload = {"scope": "user", "scope_id": f"bu-{tag()}", "period": "monthly", "timezone": "Europe/Paris", "limit": 1}
    reply = http.post("/v1/budgets", json={**payload, **body}, headers=admin)
    error = _openai_error(reply, 400)
    assert error["param"], error


def test_a_huge_request_to_the_new_routes_is_no_500(http: httpx.Client, admin: dict[str, str]) -> None:
    made = new_key(http, admin, f"huge-{tag()}", credits=0)
    for method, path, body in (
        ("PATCH", f"/v1/keys/{made['id']}", {"models": ["echo-free"] * 5000}),
        ("PATCH", f"/v1/keys/{made['id']}", {"model_limits": {f"m{i}": {"rpm": 1} for i in range(5000)}}),
        ("PATCH", f"/v1/keys/{'k' * 5000}", {"max_parallel": 1}),
        ("PUT", f"/v1/teams/{'t' * 300}/members/{'u' * 300}", {"role": "admin"}),
        ("PUT", f"/v1/teams/{'t' * 3}/members/u", {"role": "owner"}),
        ("GET", f"/v1/teams/{'%C3%A9' * 100}", None),
        ("DELETE", f"/v1/budgets/{'b' * 5000}", None),
    ):
        reply = http.request(method, path, json=body, headers=admin)
        assert 400 <= reply.status_code < 500, (method, path[:40], reply.status_code, reply.text[:300])


# --- the native gRPC API: a tg- key's own policy, whatever the request says ---


def test_the_native_api_keeps_a_keys_allow_list_whatever_its_caller_fields_say(
    suite: Suite, http: httpx.Client, admin: dict[str, str]
) -> None:
    import grpc

    from tests.e2e.support import grpc_channel
    from tollgate.router.v1 import router_pb2, router_pb2_grpc

    made = new_key(http, admin, f"native-{tag()}", models=["echo-free"])
    caller = router_pb2.Caller(user_id="admin", key_id="ak_other", scopes=["admin"], allowed_models=[], team_pays=True)
    body = b'{"model": "echo-paid", "messages": [{"role": "user", "content": "hi"}]}'
    with grpc_channel(suite, "router", None) as chan:
        stub = router_pb2_grpc.RouterStub(chan)
        meta = (("authorization", f"Bearer {made['key']}"),)
        for call in (stub.Chat, stub.CountTokens):
            with pytest.raises(grpc.RpcError) as err:
                call(router_pb2.CompletionRequest(caller=caller, body=body), metadata=meta, timeout=10)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, err.value.details()
        free = body.replace(b"echo-paid", b"echo-free")
        assert stub.Chat(router_pb2.CompletionRequest(caller=caller, body=free), metadata=meta, timeout=10).body


def test_leases_do_not_outlive_a_burst_of_errors(suite: Suite, http: httpx.Client, admin: dict[str, str]) -> None:
    """Errors of every kind after admission (unknown model, a refused preference, a bad body) free their slot."""
    made = new_key(http, admin, f"burst-{tag()}", max_parallel=1)
    auth = bearer(made["key"])
    for body in (
        {"model": "no-such-model", "messages": HI},
        {"model": "no-such-model", "messages": HI, "stream": True},
        {"model": "echo-paid", "messages": HI, "provider": {"only": ["nope"]}},
        {"model": "echo-paid", "messages": HI, "stream": True, "provider": {"ignore": ["fake"]}},
        {"model": "echo-paid", "messages": HI, "max_tokens": 10**9},
    ):
        reply = http.post(CHAT, json=body, headers=auth)
        assert reply.status_code in (400, 404), reply.text
    began = time.monotonic()
    reply = http.post(CHAT, json={"model": "echo-free", "messages": HI}, headers=auth)
    assert reply.status_code == 200, reply.text
    assert time.monotonic() - began < 5


# --- team pools: a pooled member spends the pool, never nothing ---


def test_a_pooled_member_whose_pool_is_empty_gets_no_free_call(
    suite: Suite, http: httpx.Client, admin: dict[str, str]
) -> None:
    team, user = f"dry-{tag()}", f"dry-{tag()}"
    assert http.post("/v1/teams", json={"team_id": team, "pooled": True}, headers=admin).status_code == 201
    assert http.put(f"/v1/teams/{team}/members/{user}", json={}, headers=admin).status_code == 200
    auth = bearer(new_key(http, admin, user, credits=3)["key"])
    own = http.get("/v1/credits", headers=auth).json()["balance_micro"]
    pool = http.get("/v1/credits", params={"team": team}, headers=auth).json()["balance_micro"]
    assert pool == 0
    for body in (
        {"model": "echo-paid", "messages": HI},
        {"model": "echo-paid", "messages": HI, "stream": True},
    ):
        reply = http.post(CHAT, json=body, headers=auth)
        assert reply.status_code == 402, reply.text
    messages = http.post("/v1/messages", json={"model": "echo-paid", "max_tokens": 20, "messages": HI}, headers=auth)
    assert messages.status_code == 402, messages.text
    responses = http.post("/v1/responses", json={"model": "echo-paid", "input": "hi"}, headers=auth)
    assert responses.status_code == 402, responses.text
    assert http.get("/v1/credits", headers=auth).json()["balance_micro"] == own  # not the member's own either
    assert http.get("/v1/credits", params={"team": team}, headers=auth).json()["balance_micro"] == 0
    # A free model stays free.
    assert http.post(CHAT, json={"model": "echo-free", "messages": HI}, headers=auth).status_code == 200


def test_another_teams_pool_and_team_read_as_a_team_that_does_not_exist(
    http: httpx.Client, admin: dict[str, str]
) -> None:
    red, blue = f"pr-{tag()}", f"pb-{tag()}"
    for team in (red, blue):
        assert http.post("/v1/teams", json={"team_id": team, "pooled": True}, headers=admin).status_code == 201
    assert http.post("/v1/admin/credits", json={"team_id": blue, "amount": "7"}, headers=admin).status_code == 201
    rita = f"rita-{tag()}"
    assert http.put(f"/v1/teams/{red}/members/{rita}", json={"role": "admin"}, headers=admin).status_code == 200
    auth = bearer(new_key(http, admin, rita, credits=0)["key"])
    ghost = f"ghost-{tag()}"
    for path, real, fake in (
        ("/v1/credits", {"team": blue}, {"team": ghost}),
        ("/v1/credits/usage", {"team": blue}, {"team": ghost}),
        (f"/v1/teams/{blue}", {}, None),
    ):
        seen = http.get(path, params=real, headers=auth)
        assert seen.status_code in (403, 404), (path, seen.text)
        assert "7.0" not in seen.text and "7000000" not in seen.text
        if fake is not None:
            unseen = http.get(path, params=fake, headers=auth)
            assert unseen.status_code == seen.status_code, (path, unseen.text)
            assert unseen.json()["error"]["message"].replace(ghost, blue) == seen.json()["error"]["message"]
    unseen = http.get(f"/v1/teams/{ghost}", headers=auth)
    assert unseen.status_code == 403 and unseen.json()["error"]["message"] == seen.json()["error"]["message"]


# --- the native gRPC API: a tg- key's parallel cap and model limits hold there too ---


def test_the_native_api_keeps_a_keys_model_limits(suite: Suite, http: httpx.Client, admin: dict[str, str]) -> None:
    import grpc

    from tests.e2e.support import grpc_channel
    from tollgate.router.v1 import router_pb2, router_pb2_grpc

    made = new_key(http, admin, f"nativelim-{tag()}", model_limits={"echo-paid": {"rpm": 1}})
    body = b'{"model": "echo-paid", "messages": [{"role": "user", "content": "hi"}]}'
    meta = (("authorization", f"Bearer {made['key']}"),)
    with grpc_channel(suite, "router", None) as chan:
        stub = router_pb2_grpc.RouterStub(chan)
        assert stub.Chat(router_pb2.CompletionRequest(body=body), metadata=meta, timeout=10).body
        with pytest.raises(grpc.RpcError) as err:
            stub.Chat(router_pb2.CompletionRequest(body=body), metadata=meta, timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_the_native_api_never_serves_past_a_keys_parallel_cap(
    suite: Suite, http: httpx.Client, admin: dict[str, str]
) -> None:
    """The cap's leases are the HTTP edge's: a capped key (its own cap or its team's) is refused on the native
    API instead of being served there without any cap."""
    import grpc

    from tests.e2e.support import grpc_channel
    from tollgate.router.v1 import router_pb2, router_pb2_grpc

    team, user = f"npar-{tag()}", f"npar-{tag()}"
    assert http.post("/v1/teams", json={"team_id": team, "max_parallel": 1}, headers=admin).status_code == 201
    assert http.put(f"/v1/teams/{team}/members/{user}", json={}, headers=admin).status_code == 200
    capped = [new_key(http, admin, f"nativepar-{tag()}", max_parallel=1)["key"], new_key(http, admin, user)["key"]]
    body = b'{"model": "echo-paid", "messages": [{"role": "user", "content": "hi"}]}'
    with grpc_channel(suite, "router", None) as chan:
        stub = router_pb2_grpc.RouterStub(chan)
        for key in capped:
            meta = (("authorization", f"Bearer {key}"),)
            with pytest.raises(grpc.RpcError) as err:
                stub.Chat(router_pb2.CompletionRequest(body=body), metadata=meta, timeout=10)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "max_parallel" in (err.value.details() or "")
            with pytest.raises(grpc.RpcError) as err:
                list(stub.ChatStream(router_pb2.CompletionRequest(body=body), metadata=meta, timeout=10))
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # Over HTTP the same key is served, within its cap.
        assert (
            http.post(CHAT, json={"model": "echo-paid", "messages": HI}, headers=bearer(capped[0])).status_code == 200
        )


def test_the_new_rpcs_refuse_a_team_admins_own_key_and_no_identity(
    suite: Suite, http: httpx.Client, admin: dict[str, str]
) -> None:
    """A team admin's tg- key (or no identity at all) on the internal ports reaches none of the team, budget and
    catalog RPCs: those are the gateway's (which holds a team admin to its team) and the operator's."""
    import grpc

    from tests.e2e.support import grpc_channel
    from tollgate.credits.v1 import credits_pb2, credits_pb2_grpc
    from tollgate.keyvault.v1 import keyvault_pb2, keyvault_pb2_grpc
    from tollgate.router.v1 import router_pb2, router_pb2_grpc

    team, boss = f"rpc-{tag()}", f"rpcboss-{tag()}"
    assert http.post("/v1/teams", json={"team_id": team}, headers=admin).status_code == 201
    assert http.put(f"/v1/teams/{team}/members/{boss}", json={"role": "admin"}, headers=admin).status_code == 200
    key = new_key(http, admin, boss, credits=0)["key"]
    budget = credits_pb2.Budget(scope="team", scope_id=team, period="daily", timezone="UTC", limit_micro=10**12)
    with (
        grpc_channel(suite, "keyvault", None) as kv_chan,
        grpc_channel(suite, "credits", None) as cr_chan,
        grpc_channel(suite, "router", None) as rt_chan,
    ):
        vault, credits = keyvault_pb2_grpc.KeyVaultStub(kv_chan), credits_pb2_grpc.CreditsStub(cr_chan)
        router = router_pb2_grpc.RouterStub(rt_chan)
        calls: list[tuple[Any, Any]] = [
            (vault.GetTeam, keyvault_pb2.GetTeamRequest(team_id=team)),
            (vault.ListTeams, keyvault_pb2.ListTeamsRequest()),
            (vault.CreateTeam, keyvault_pb2.CreateTeamRequest(team_id=f"evil-{tag()}")),
            (vault.UpdateTeam, keyvault_pb2.UpdateTeamRequest(team_id=team, pooled=True)),
            (vault.SetTeamMember, keyvault_pb2.SetTeamMemberRequest(team_id=team, user_id="admin", role="admin")),
            (vault.UpdateApiKey, keyvault_pb2.UpdateApiKeyRequest(key_id="ak_x", team_id=team)),
            (credits.SetBudget, budget),
            (credits.ListBudgets, credits_pb2.ListBudgetsRequest()),
            (credits.DeleteBudget, credits_pb2.DeleteBudgetRequest(budget_id="bud_x")),
            (router.ReloadCatalog, router_pb2.ReloadCatalogRequest()),
        ]
        for metadata in ((("authorization", f"Bearer {key}"),), ()):
            for call, request in calls:
                with pytest.raises(grpc.RpcError) as err:
                    call(request, metadata=metadata, timeout=10)
                assert err.value.code() in (
                    grpc.StatusCode.PERMISSION_DENIED,
                    grpc.StatusCode.UNAUTHENTICATED,
                ), (call, err.value.code(), err.value.details())
    members = http.get(f"/v1/teams/{team}", headers=admin).json()["members"]
    assert [m["user_id"] for m in members] == [boss]


def test_a_key_budget_holds_under_a_race_of_every_route(
    suite: Suite, http: httpx.Client, admin: dict[str, str]
) -> None:
    """Chat, streams, /v1/messages, /v1/responses and Idempotency-Key replays at once against one small daily
    budget: what it records as spent never passes its limit, and the balance moves only by what it spent."""
    made = new_key(http, admin, f"race-{tag()}", credits=5)
    limit = 10_000
    set_budget = http.post(
        "/v1/budgets",
        json={
            "scope": "key",
            "scope_id": made["id"],
            "period": "daily",
            "timezone": "Asia/Kathmandu",
            "limit_micro": limit,
        },
        headers=admin,
    )
    assert set_budget.status_code == 201, set_budget.text
    auth = bearer(made["key"])
    before = http.get("/v1/credits", headers=auth).json()["balance_micro"]
    says = [{"role": "user", "content": "say something longer " * 3}]
    bodies: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    for i in range(8):
        bodies.append((CHAT, {"model": "echo-paid", "messages": says, "max_tokens": 20}, {}))
        bodies.append((CHAT, {"model": "echo-paid", "messages": says, "max_tokens": 20, "stream": True}, {}))
        bodies.append(("/v1/messages", {"model": "echo", "max_tokens": 20, "messages": says}, {}))
        bodies.append(("/v1/responses", {"model": "echo-paid", "input": "hello there", "max_output_tokens": 20}, {}))
        bodies.append(
            (CHAT, {"model": "echo-paid", "messages": says, "max_tokens": 20}, {"idempotency-key": f"k{i % 2}"})
        )

    async def fire() -> list[int]:
        async with httpx.AsyncClient(base_url=suite.base_url.removesuffix("/v1"), timeout=60) as client:
            replies = await asyncio.gather(
                *(client.post(path, json=body, headers={**auth, **extra}) for path, body, extra in bodies)
            )
            for reply in replies:
                await reply.aread()
            return [r.status_code for r in replies]

    statuses = asyncio.run(fire())
    assert 500 not in statuses and set(statuses) <= {200, 402, 409, 429}, statuses
    assert 200 in statuses and (402 in statuses or 429 in statuses), statuses

    def budget() -> dict[str, Any]:
        query = {"scope": "key", "scope_id": made["id"]}
        found: dict[str, Any] = http.get("/v1/budgets", params=query, headers=admin).json()["data"][0]
        return found

    def settled() -> bool:
        return bool(budget()["reserved_micro"] == 0)

    eventually(settled, "every hold settled")
    spent = budget()["spent_micro"]
    assert 0 < spent <= limit, budget()
    after = http.get("/v1/credits", headers=auth).json()["balance_micro"]
    assert before - after == spent


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/budgets", {"scope": "org"}),
        ("/v1/budgets", {"scope": "team", "scope_id": "é" * 5000}),
        ("/v1/budgets", {"scope": "\u0000"}),
        ("/v1/credits", {"team": "é\u0000" * 100}),
        ("/v1/credits", {"team": "x" * 10_000}),
        ("/v1/teams", {"limit": "-1"}),
        ("/v1/teams/%00", {}),
        ("/v1/teams/..%2f..%2fadmin/keys", {}),
    ],
)
def test_odd_queries_of_the_new_routes_are_no_500(
    http: httpx.Client, admin: dict[str, str], path: str, params: dict[str, str]
) -> None:
    member = bearer(new_key(http, admin, f"odd-{tag()}", credits=0)["key"])
    for auth in (admin, member):
        reply = http.get(path, params=params, headers=auth)
        assert reply.status_code < 500, (path, reply.status_code, reply.text[:300])
        if reply.status_code >= 400:
            assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
