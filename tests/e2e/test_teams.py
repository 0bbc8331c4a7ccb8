"""Teams and key access policies through the real suite: allow-lists refused before any call (openai SDK), the
parallel cap and per-key-per-model RPM, and the attacks of a team admin on another team and of a member on
admin routes."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from services.launcher import Suite
from tests.e2e.support import bearer, upstream_count

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def admin(http: httpx.Client, keys: dict[str, str]) -> dict[str, str]:
    return bearer(keys["admin_key"])


def new_key(http: httpx.Client, admin: dict[str, str], user: str, credits: float = 0, **policy: Any) -> dict[str, Any]:
    made = http.post("/v1/admin/keys", json={"user_id": user, **policy}, headers=admin)
    assert made.status_code == 201, made.text
    if credits:
        granted = http.post("/v1/admin/credits", json={"user": user, "amount": credits}, headers=admin)
        assert granted.status_code in (200, 201), granted.text
    return dict(made.json())


def sdk(suite: Suite, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=suite.base_url, api_key=key, max_retries=0, timeout=30)


def test_a_model_outside_the_keys_allow_list_is_refused_before_any_call(
    suite: Suite, http: httpx.Client, admin: dict[str, str], upstream: httpx.Client
) -> None:
    made = new_key(http, admin, f"allow-{tag()}", credits=5, models=["echo-free"])
    assert made["models"] == ["echo-free"]
    with sdk(suite, made["key"]) as client:
        assert client.chat.completions.create(model="echo-free", messages=HI).choices[0].message.content
        before = upstream_count(upstream, "/v1/chat/completions", "demo-echo")
        for name in ("echo-paid", "echo"):  # by id and by alias
            with pytest.raises(openai.PermissionDeniedError) as err:
                client.chat.completions.create(model=name, messages=HI)
            assert err.value.status_code == 403
            body = err.value.body
            assert isinstance(body, dict) and body["code"] == "model_not_allowed" and body["param"] == "model"
        assert upstream_count(upstream, "/v1/chat/completions", "demo-echo") == before
    bad = http.post("/v1/admin/keys", json={"user_id": f"x-{tag()}", "models": ["no-such-model"]}, headers=admin)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "models"


def test_a_teams_allow_list_applies_to_its_members_keys(
    suite: Suite, http: httpx.Client, admin: dict[str, str]
) -> None:
    team, user = f"free-{tag()}", f"member-{tag()}"
    made = http.post("/v1/teams", json={"team_id": team, "models": ["tier:FREE"]}, headers=admin)
    assert made.status_code == 201, made.text
    assert http.put(f"/v1/teams/{team}/members/{user}", json={}, headers=admin).status_code == 200
    key = new_key(http, admin, user, credits=5)["key"]
    with sdk(suite, key) as client:
        client.chat.completions.create(model="echo-free", messages=HI)
        with pytest.raises(openai.PermissionDeniedError, match="your team"):
            client.chat.completions.create(model="echo-paid", messages=HI)


async def test_the_parallel_cap_refuses_the_request_past_it(
    suite: Suite, http: httpx.Client, admin: dict[str, str], upstream: httpx.Client
) -> None:
    key = new_key(http, admin, f"par-{tag()}", credits=5, max_parallel=2)["key"]
    client = openai.AsyncOpenAI(base_url=suite.base_url, api_key=key, max_retries=0, timeout=30)
    before = upstream_count(upstream, "/v1/chat/completions", "slow-3000")
    slow = [asyncio.create_task(client.chat.completions.create(model="slow-paid", messages=HI)) for _ in range(2)]
    deadline = time.monotonic() + 10
    while upstream_count(upstream, "/v1/chat/completions", "slow-3000") < before + 2:  # both in flight (3 s each)
        assert time.monotonic() < deadline, "the two slow requests never reached the upstream"
        await asyncio.sleep(0.05)
    # Refused at once, not queued behind the two (a queued request would have been answered).
    with pytest.raises(openai.RateLimitError) as err:
        await client.chat.completions.create(model="echo-paid", messages=HI)
    assert "parallel" in err.value.message and err.value.response.headers["retry-after"] == "1"
    assert all(r.choices for r in await asyncio.gather(*slow))
    assert (await client.chat.completions.create(model="echo-paid", messages=HI)).choices  # the slots came back
    for _ in range(4):  # a stream gives its slot back when it ends
        stream = await client.chat.completions.create(model="echo-paid", messages=HI, stream=True)
        assert [chunk async for chunk in stream]
    await client.close()


def test_a_keys_rpm_for_one_model(suite: Suite, http: httpx.Client, admin: dict[str, str]) -> None:
    key = new_key(http, admin, f"rpm-{tag()}", credits=5, model_limits={"echo-free": {"rpm": 2}})["key"]
    with sdk(suite, key) as client:
        for _ in range(2):
            client.chat.completions.create(model="echo-free", messages=HI)
        with pytest.raises(openai.RateLimitError) as err:
            client.chat.completions.create(model="echo-free", messages=HI)
        assert "echo-free" in err.value.message and "limit 2" in err.value.message
        assert 1 <= int(err.value.response.headers["retry-after"]) <= 60
        assert client.chat.completions.create(model="echo-paid", messages=HI).choices  # another model is free


def test_a_key_policy_changed_with_patch(suite: Suite, http: httpx.Client, admin: dict[str, str]) -> None:
    made = new_key(http, admin, f"patch-{tag()}", credits=5)
    changed = http.patch(f"/v1/keys/{made['id']}", json={"models": ["echo-free"]}, headers=admin)
    assert changed.status_code == 200 and changed.json()["models"] == ["echo-free"]
    time.sleep(1.2)  # the gateway's authentication cache (1 s in the tests)
    with sdk(suite, made["key"]) as client, pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="echo-paid", messages=HI)
    for body in (
        {"models": "echo"},
        {"max_parallel": -1},
        {"model_limits": {"echo-free": {"rpm": "x"}}},
        {"team_id": "x"},
    ):
        assert http.patch(f"/v1/keys/{made['id']}", json=body, headers=admin).status_code == 400, body


@pytest.fixture(scope="module")
def teams(http: httpx.Client, admin: dict[str, str]) -> dict[str, Any]:
    """Two teams: red (admin rita, member rob) and blue (admin bea, member bob), each with a key."""
    red, blue = f"red-{tag()}", f"blue-{tag()}"
    world: dict[str, Any] = {"red": red, "blue": blue}
    for team in (red, blue):
        assert http.post("/v1/teams", json={"team_id": team, "name": team}, headers=admin).status_code == 201
    for name, team, role in (
        ("rita", red, "admin"),
        ("rob", red, "member"),
        ("bea", blue, "admin"),
        ("bob", blue, "member"),
    ):
        user = f"{name}-{tag()}"
        assert http.put(f"/v1/teams/{team}/members/{user}", json={"role": role}, headers=admin).status_code == 200
        made = new_key(http, admin, user)
        world[name] = {"user": user, "key": made["key"], "key_id": made["id"], "auth": bearer(made["key"])}
    return world


def test_a_team_admin_manages_its_own_team(http: httpx.Client, teams: dict[str, Any]) -> None:
    red, rita = teams["red"], teams["rita"]["auth"]
    newbie = f"newbie-{tag()}"
    assert http.put(f"/v1/teams/{red}/members/{newbie}", headers=rita).status_code == 200  # no body: a member
    made = http.post(f"/v1/teams/{red}/keys", json={"user_id": newbie, "scopes": ["admin"]}, headers=rita)
    assert made.status_code == 201, made.text
    assert made.json()["scopes"] == ["user"] and made.json()["team_id"] == red  # never an admin key
    changed = http.patch(f"/v1/keys/{made.json()['id']}", json={"max_parallel": 3}, headers=rita)
    assert changed.status_code == 200 and changed.json()["max_parallel"] == 3
    listed = http.get(f"/v1/teams/{red}/keys", headers=rita).json()["data"]
    assert newbie in {k["user_id"] for k in listed} and teams["bob"]["user"] not in {k["user_id"] for k in listed}
    team = http.get(f"/v1/teams/{red}", headers=rita).json()
    assert {m["user_id"] for m in team["members"]} >= {teams["rita"]["user"], teams["rob"]["user"], newbie}
    revoked = http.delete(f"/v1/teams/{red}/keys/{made.json()['id']}", headers=rita)
    assert revoked.status_code == 200 and revoked.json()["revoked"]
    assert http.delete(f"/v1/teams/{red}/members/{newbie}", headers=rita).status_code == 200


def test_a_team_admin_cannot_act_on_another_team(http: httpx.Client, teams: dict[str, Any]) -> None:
    red, blue, rita = teams["red"], teams["blue"], teams["rita"]["auth"]
    bob, rita_user = teams["bob"], teams["rita"]["user"]
    attempts = [
        ("GET", f"/v1/teams/{blue}", None, 403),
        ("PUT", f"/v1/teams/{blue}/members/{rita_user}", {"role": "admin"}, 403),  # promote itself there
        ("PUT", f"/v1/teams/{blue}/members/{bob['user']}", {"role": "admin"}, 403),  # promote someone there
        ("PUT", f"/v1/teams/{red}/members/{bob['user']}", {"role": "admin"}, 409),  # pull another team's member
        ("DELETE", f"/v1/teams/{blue}/members/{bob['user']}", None, 403),
        ("DELETE", f"/v1/teams/{red}/members/{bob['user']}", None, 404),
        ("PATCH", f"/v1/keys/{bob['key_id']}", {"models": ["echo-free"]}, 404),
        ("POST", f"/v1/teams/{blue}/keys", {"user_id": bob["user"]}, 403),
        ("POST", f"/v1/teams/{red}/keys", {"user_id": bob["user"]}, 403),
        ("GET", f"/v1/teams/{blue}/keys", None, 403),
        ("DELETE", f"/v1/teams/{blue}/keys/{bob['key_id']}", None, 403),
        ("DELETE", f"/v1/teams/{red}/keys/{bob['key_id']}", None, 404),
        ("PATCH", f"/v1/teams/{red}", {"pooled": True}, 403),  # its own team's pooling is the admins'
        ("POST", "/v1/teams", {"team_id": f"mine-{tag()}"}, 403),
        ("GET", "/v1/admin/keys", None, 403),
    ]
    for method, path, body, status in attempts:
        reply = http.request(method, path, json=body, headers=rita)
        assert reply.status_code == status, (method, path, reply.text)
        assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
    # Stuffed team fields and identity headers change nothing.
    stuffed = {**rita, "x-tollgate-acting-user": "admin", "x-tollgate-acting-scopes": "admin,user", "x-team-id": blue}
    assert http.get(f"/v1/teams/{blue}", headers=stuffed).status_code == 403
    assert http.patch(f"/v1/keys/{bob['key_id']}", json={"team_id": blue}, headers=rita).status_code == 400
    blue_team = http.get(f"/v1/teams/{blue}", headers=teams["bea"]["auth"]).json()
    assert {(m["user_id"], m["role"]) for m in blue_team["members"]} == {
        (teams["bea"]["user"], "admin"),
        (bob["user"], "member"),
    }
    # Only its own team is listed.
    assert [t["id"] for t in http.get("/v1/teams", headers=rita).json()["data"]] == [red]


def test_a_member_cannot_use_admin_routes(http: httpx.Client, teams: dict[str, Any]) -> None:
    red, rob = teams["red"], teams["rob"]
    assert http.get(f"/v1/teams/{red}", headers=rob["auth"]).status_code == 200
    for method, path, body in (
        ("PUT", f"/v1/teams/{red}/members/{rob['user']}", {"role": "admin"}),
        ("PUT", f"/v1/teams/{red}/members/someone-{tag()}", {"role": "member"}),
        ("DELETE", f"/v1/teams/{red}/members/{teams['rita']['user']}", None),
        ("POST", f"/v1/teams/{red}/keys", {"user_id": rob["user"]}),
        ("GET", f"/v1/teams/{red}/keys", None),
        ("DELETE", f"/v1/teams/{red}/keys/{teams['rita']['key_id']}", None),
        ("PATCH", f"/v1/keys/{rob['key_id']}", {"models": []}),
        ("PATCH", f"/v1/teams/{red}", {"name": "mine"}),
    ):
        assert http.request(method, path, json=body, headers=rob["auth"]).status_code == 403, (method, path)


def test_team_user_ids_are_refused(http: httpx.Client, admin: dict[str, str], teams: dict[str, Any]) -> None:
    assert http.post("/v1/admin/keys", json={"user_id": "team:x"}, headers=admin).status_code == 400
    assert http.put(f"/v1/teams/{teams['red']}/members/team:x", json={}, headers=admin).status_code == 400
    rita = teams["rita"]["auth"]
    assert http.put(f"/v1/teams/{teams['red']}/members/team:{teams['red']}", json={}, headers=rita).status_code == 400
