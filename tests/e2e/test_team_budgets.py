"""Team pools and team budgets through the real suite (keyvault's teams, the gateway, the router, credits): a
pooled team's two keys draw on one balance, a team budget refuses past its limit with 402 `budget_exceeded`, and a
team admin reaches its own team's budgets only."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import openai
import pytest

from services.launcher import Suite
from tests.e2e.support import bearer, eventually, usage_rows

PAID: Any = [{"role": "user", "content": "hello there"}]


def tag() -> str:
    return uuid.uuid4().hex[:8]


def team(http: httpx.Client, admin: dict[str, str], *, pooled: bool, members: dict[str, str]) -> str:
    team_id = f"team-{tag()}"
    made = http.post("/v1/teams", json={"team_id": team_id, "pooled": pooled}, headers=admin)
    assert made.status_code == 201, made.text
    for user, role in members.items():
        added = http.put(f"/v1/teams/{team_id}/members/{user}", json={"role": role}, headers=admin)
        assert added.status_code == 200, added.text
    return team_id


def key_of(http: httpx.Client, admin: dict[str, str], user: str) -> dict[str, Any]:
    made = http.post("/v1/admin/keys", json={"user_id": user}, headers=admin)
    assert made.status_code == 201, made.text
    return dict(made.json())


def micro(http: httpx.Client, who: dict[str, str], query: str = "") -> int:
    reply = http.get(f"/v1/credits{query}", headers=who)
    assert reply.status_code == 200, reply.text
    return int(reply.json()["balance_micro"])


def test_a_pooled_teams_two_keys_share_its_balance_and_its_budget(
    suite: Suite, http: httpx.Client, keys: dict[str, str]
) -> None:
    admin = bearer(keys["admin_key"])
    ann, ben = f"ann-{tag()}", f"ben-{tag()}"
    team_id = team(http, admin, pooled=True, members={ann: "member", ben: "member"})
    ann_key, ben_key = key_of(http, admin, ann), key_of(http, admin, ben)
    granted = http.post("/v1/admin/credits", json={"team_id": team_id, "amount": "1"}, headers=admin)
    assert granted.status_code == 201 and granted.json()["balance"] == "1.000000", granted.text
    own = {u: micro(http, bearer(k["key"])) for u, k in ((ann, ann_key), (ben, ben_key))}

    for made in (ann_key, ben_key):
        with openai.OpenAI(base_url=suite.base_url, api_key=made["key"], max_retries=0) as sdk:
            sdk.chat.completions.create(model="echo-paid", messages=PAID, max_tokens=20)
    rows = {u: usage_rows(http, k["key"], 1) for u, k in ((ann, ann_key), (ben, ben_key))}
    spent = 0
    for user, made in ((ann, ann_key), (ben, ben_key)):
        [row] = rows[user]
        assert (row["user_id"], row["key_id"], row["status"]) == (user, made["id"], "ok")
        spent += row["cost_micro"]
        assert micro(http, bearer(made["key"])) == own[user]  # their own accounts are untouched
    assert spent > 0
    assert micro(http, bearer(ann_key["key"]), f"?team={team_id}") == 1_000_000 - spent

    # A hard team budget below what is left refuses both keys, naming the team's budget.
    limit = http.post(
        "/v1/budgets",
        json={"scope": "team", "scope_id": team_id, "period": "weekly", "timezone": "UTC", "limit_micro": spent + 1},
        headers=admin,
    )
    assert limit.status_code == 201, limit.text
    assert limit.json()["spent_micro"] == 0  # set after the spending: this week's count starts now
    for made in (ann_key, ben_key):
        with (
            openai.OpenAI(base_url=suite.base_url, api_key=made["key"], max_retries=0) as sdk,
            pytest.raises(openai.APIStatusError) as refused,
        ):
            sdk.chat.completions.create(model="echo-paid", messages=PAID, max_tokens=20)
        assert refused.value.status_code == 402
        error = refused.value.response.json()["error"]
        assert error["code"] == "budget_exceeded" and f"team '{team_id}'" in error["message"]
        assert "weekly" in error["message"]
    seen = http.get("/v1/budgets", headers=bearer(ben_key["key"])).json()["data"]
    assert [b["id"] for b in seen] == [limit.json()["id"]]  # a member reads its team's budget


def test_a_team_admin_reaches_its_own_teams_budgets_only(
    suite: Suite, http: httpx.Client, keys: dict[str, str]
) -> None:
    admin = bearer(keys["admin_key"])
    ada, bo, cy = f"ada-{tag()}", f"bo-{tag()}", f"cy-{tag()}"
    team(http, admin, pooled=False, members={ada: "admin", bo: "member"})
    blue = team(http, admin, pooled=False, members={cy: "admin"})
    ada_key, bo_key, cy_key = (key_of(http, admin, u) for u in (ada, bo, cy))
    as_ada, as_bo = bearer(ada_key["key"]), bearer(bo_key["key"])
    day = {"period": "daily", "timezone": "Europe/Berlin", "limit": "2"}

    ours = http.post("/v1/budgets", json={"scope": "key", "scope_id": bo_key["id"], **day}, headers=as_ada)
    assert ours.status_code == 201, ours.text
    theirs = http.post("/v1/budgets", json={"scope": "team", "scope_id": blue, **day}, headers=bearer(cy_key["key"]))
    assert theirs.status_code == 201, theirs.text
    for body in (
        {"scope": "team", "scope_id": blue},
        {"scope": "user", "scope_id": cy},
        {"scope": "key", "scope_id": cy_key["id"]},
    ):
        attack = http.post("/v1/budgets", json={**body, **day, "limit": "0.01"}, headers=as_ada)
        assert attack.status_code == 403, attack.text
    gone = http.delete(f"/v1/budgets/{theirs.json()['id']}", headers=as_ada)
    assert gone.status_code == 404
    assert [b["id"] for b in http.get("/v1/budgets", headers=as_ada).json()["data"]] == [ours.json()["id"]]
    everything = {b["id"] for b in http.get("/v1/budgets", headers=admin).json()["data"]}
    assert {ours.json()["id"], theirs.json()["id"]} <= everything
    # A member of the team reads the budget of its key, and cannot raise or delete it.
    assert [b["id"] for b in http.get("/v1/budgets", headers=as_bo).json()["data"]] == [ours.json()["id"]]
    raised = http.post(
        "/v1/budgets", json={"scope": "key", "scope_id": bo_key["id"], **day, "limit": "99"}, headers=as_bo
    )
    assert raised.status_code == 403
    assert http.delete(f"/v1/budgets/{ours.json()['id']}", headers=as_bo).status_code == 403
    assert http.get(f"/v1/credits?team={blue}", headers=as_ada).status_code == 404
    assert http.delete(f"/v1/budgets/{ours.json()['id']}", headers=as_ada).json()["deleted"] is True


def test_a_team_admin_reads_its_members_usage_and_no_one_elses(
    suite: Suite, http: httpx.Client, keys: dict[str, str]
) -> None:
    admin = bearer(keys["admin_key"])
    lead, dev, outsider = f"lead-{tag()}", f"dev-{tag()}", f"out-{tag()}"
    ours = team(http, admin, pooled=True, members={lead: "admin", dev: "member"})
    theirs = team(http, admin, pooled=True, members={outsider: "admin"})
    for pool in (ours, theirs):
        assert http.post("/v1/admin/credits", json={"team_id": pool, "amount": "1"}, headers=admin).status_code == 201
    made = {user: key_of(http, admin, user) for user in (lead, dev, outsider)}
    for user in (dev, dev, outsider):
        with openai.OpenAI(base_url=suite.base_url, api_key=made[user]["key"], max_retries=0) as sdk:
            sdk.chat.completions.create(model="echo-paid", messages=PAID)
    as_lead, as_dev = bearer(made[lead]["key"]), bearer(made[dev]["key"])

    def team_usage() -> list[dict[str, Any]]:
        return list(http.get("/v1/usage", params={"team": ours}, headers=as_lead).json()["data"])

    eventually(lambda: len(team_usage()) >= 2, "the team's two rows written")
    team_rows = team_usage()
    assert [r["user_id"] for r in team_rows] == [dev, dev]
    member_rows = http.get("/v1/usage", params={"user": dev}, headers=as_lead).json()["data"]
    assert len(member_rows) == 2
    summary = http.get("/v1/usage/summary", params={"team": ours, "group_by": "user"}, headers=as_lead).json()
    assert summary["team"] == ours and [(g["key"], g["requests"]) for g in summary["data"]] == [(dev, 2)]
    assert sum(g["cost_micro"] for g in summary["data"]) == sum(r["cost_micro"] for r in team_rows) > 0
    # Admins read any team's; nobody else reads another team, another team's member, or its own team as a member.
    assert len(http.get("/v1/usage", params={"team": theirs}, headers=admin).json()["data"]) == 1
    for params, who in (
        ({"team": theirs}, as_lead),
        ({"user": outsider}, as_lead),
        ({"team": ours}, as_dev),
        ({"user": lead}, as_dev),
    ):
        refused = http.get("/v1/usage", params=params, headers=who)
        assert refused.status_code in (403, 404) and "error" in refused.json(), (params, refused.text)
        summed = http.get("/v1/usage/summary", params=params, headers=who)
        assert summed.status_code in (403, 404), (params, summed.text)
    both = http.get("/v1/usage", params={"team": ours, "user": dev}, headers=as_lead)
    assert both.status_code == 400 and both.json()["error"]["param"] == "team"
