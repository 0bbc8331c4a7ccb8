"""Who reaches which budget at the edge, and how a POST body becomes a budget (its types checked, nothing sent
for a body that cannot be one)."""

from __future__ import annotations

from typing import Any

import pytest

from services.gateway.edge import is_team_admin
from services.gateway.routes.budgets import Reach, budget_request
from services.runtime.errors import DomainError
from tollgate.keyvault.v1 import keyvault_pb2

TEAM_ADMIN = Reach(manage=True, team_id="t1", users={"alice", "bob"}, keys={"k_alice", "k_bob"})


@pytest.mark.parametrize(
    ("scope", "scope_id", "reached"),
    [
        ("team", "t1", True),
        ("user", "bob", True),
        ("key", "k_bob", True),
        ("team", "t2", False),  # another team
        ("user", "mallory", False),  # not a member
        ("key", "k_mallory", False),  # a key of someone else
        ("team", "", False),
        ("org", "t1", False),
    ],
)
def test_a_team_admin_reaches_its_team_its_members_and_their_keys_only(
    scope: str, scope_id: str, reached: bool
) -> None:
    assert TEAM_ADMIN.covers(scope, scope_id) is reached


def test_a_user_without_a_team_never_reaches_a_team_budget() -> None:
    lone = Reach(users={"u1"}, keys={"k1"})
    assert not lone.covers("team", "")
    assert lone.covers("user", "u1") and not lone.covers("user", "u2")
    assert Reach(everything=True).covers("team", "anything")


def test_only_a_team_admin_role_counts() -> None:
    assert is_team_admin(keyvault_pb2.Principal(user_id="a", team_id="t1", team_role="admin"))
    assert not is_team_admin(keyvault_pb2.Principal(user_id="a", team_id="t1", team_role="member"))
    assert not is_team_admin(keyvault_pb2.Principal(user_id="a", team_role="admin"))  # no team


def test_a_body_becomes_a_budget_in_micro_credits() -> None:
    b = budget_request(
        {
            "scope": "key",
            "scope_id": "k1",
            "period": "monthly",
            "timezone": "UTC",
            "limit": "2.5",
            "soft_limit_micro": 7,
            "alert_percents": [50, 90],
        },
        "admin",
    )
    assert (b.limit_micro, b.soft_limit_micro, list(b.alert_percents), b.actor) == (2_500_000, 7, [50, 90], "admin")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"scope": 3}, "scope"),
        ({"timezone": ["UTC"]}, "timezone"),
        ({"limit": "lots"}, "limit"),
        ({"limit": "1e400"}, "limit"),
        ({"limit": "0.0000001"}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit_micro": 1.5}, "limit"),
        ({"limit_micro": 2**70}, "limit"),
        ({"soft_limit": {}}, "soft_limit"),
        ({"alert_percents": [0]}, "alert_percents"),
        ({"alert_percents": [2**40]}, "alert_percents"),
        ({"alert_percents": "50"}, "alert_percents"),
        ({"alert_percents": [True]}, "alert_percents"),
        ({"alert_percents": list(range(1, 20))}, "alert_percents"),
    ],
)
def test_bad_bodies_are_refused_with_the_field_named(body: dict[str, Any], param: str) -> None:
    with pytest.raises(DomainError) as caught:
        budget_request({"scope": "key", "scope_id": "k", "period": "daily", "timezone": "UTC", **body}, "admin")
    assert (caught.value.code, caught.value.param) == ("invalid_request", param)


def _request(query: str) -> Any:
    from starlette.requests import Request

    return Request(
        {"type": "http", "method": "GET", "path": "/v1/credits", "query_string": query.encode(), "headers": []}
    )


def test_a_team_pool_is_read_by_its_members_and_admins_only() -> None:
    from services.gateway.routes.credits import _account

    member = keyvault_pb2.Principal(user_id="alice", scopes=["user"], team_id="t1", team_role="member")
    outsider = keyvault_pb2.Principal(user_id="mallory", scopes=["user"], team_id="t2", team_role="admin")
    admin = keyvault_pb2.Principal(user_id="root", scopes=["admin"])
    assert _account(_request("team=t1"), member) == "team:t1"
    assert _account(_request(""), member) == "alice"
    assert _account(_request("team=t1"), admin) == "team:t1"
    for principal, query in ((outsider, "team=t1"), (member, "team=t2"), (member, "team=")):
        with pytest.raises(DomainError) as caught:
            _account(_request(query), principal)
        assert caught.value.code in ("not_found", "invalid_request")
    with pytest.raises(DomainError) as caught:
        _account(_request("user=team:t1"), member)  # the user route cannot reach a pool either
    assert caught.value.code == "permission_denied"
