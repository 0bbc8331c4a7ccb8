"""The edge's access policies: the router's Caller from a principal, allow-lists by id, alias and tier, and the
per-key-per-model and per-model windows."""

from __future__ import annotations

import pytest

from services.gateway.limits import Limiter, RateLimited
from services.gateway.policy import caller, permits, unknown_models
from services.gateway.settings import GatewaySettings
from services.gateway.store import Store
from tollgate.keyvault.v1 import keyvault_pb2 as kv
from tollgate.router.v1 import router_pb2

PAID = router_pb2.Model(id="echo-paid", aliases=["echo"], tier="BALANCED")


def test_the_caller_carries_the_team_and_both_allow_lists() -> None:
    principal = kv.Principal(
        user_id="rob",
        key_id="ak_1",
        scopes=["user"],
        team_id="red",
        team_role="member",
        team_pays=True,
        policy=kv.AccessPolicy(models=["echo-free"]),
        team_policy=kv.AccessPolicy(models=["tier:FREE"]),
    )
    made = caller(principal)
    assert (made.user_id, made.key_id, list(made.scopes), made.team_id, made.team_pays) == (
        "rob",
        "ak_1",
        ["user"],
        "red",
        True,
    )
    assert list(made.allowed_models) == ["echo-free"] and list(made.team_allowed_models) == ["tier:FREE"]
    assert caller(kv.Principal(user_id="lou")).team_id == "" and not caller(kv.Principal()).team_pays


@pytest.mark.parametrize(
    ("allowed", "expected"),
    [
        ([], True),
        (["echo-paid"], True),
        (["echo"], True),
        (["tier:BALANCED"], True),
        (["TIER:balanced"], True),  # as the router reads it: the gateway must not refuse what the router allows
        (["echo-free", "tier:FREE"], False),
        (["tier:free"], False),
        (["ECHO-PAID"], False),  # ids and aliases are exact
    ],
)
def test_allow_lists_match_ids_aliases_and_tiers(allowed: list[str], expected: bool) -> None:
    assert permits(allowed, PAID) is expected


def test_unknown_policy_models_are_named() -> None:
    known = {"echo-paid": PAID, "echo": PAID}
    assert unknown_models(["echo", "tier:BALANCED"], known) is None
    assert unknown_models(["echo", "tier:NOPE"], known) == "tier:NOPE"
    assert unknown_models(["Tier:balanced"], known) is None
    assert unknown_models(["nope"], known) == "nope"


async def test_a_keys_model_limit_and_a_models_own_limit() -> None:
    limiter = Limiter(GatewaySettings(), Store())
    capped = kv.Principal(
        key_id="k1",
        policy=kv.AccessPolicy(model_limits={"echo-paid": kv.ModelLimit(rpm=5)}),
        team_policy=kv.AccessPolicy(model_limits={"echo-paid": kv.ModelLimit(rpm=2)}),
    )
    for _ in range(2):
        await limiter.admit_model(capped, "echo-paid", 0, 0)
    with pytest.raises(RateLimited, match="this API key's use of model 'echo-paid': limit 2") as err:
        await limiter.admit_model(capped, "echo-paid", 0, 0)
    assert 1 <= int(err.value.headers["retry-after"]) <= 60
    assert await limiter.admit_model(capped, "echo-free", 0, 0) is None  # no limit on another model
    # The model's own RPM counts every caller's requests together.
    for key in ("a", "b", "c"):
        await limiter.admit_model(kv.Principal(key_id=key), "busy", 3, 0)
    with pytest.raises(RateLimited, match="on model 'busy': limit 3"):
        await limiter.admit_model(kv.Principal(key_id="d"), "busy", 3, 0)
