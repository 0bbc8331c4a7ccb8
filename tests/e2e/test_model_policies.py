"""Where the gateway's and the router's policies meet, through the openai SDK against the real suite: a model's
catalog RPM counts every caller (and every alias) in one window, and an allow-list holds for the choices tollgate
makes itself (declared fallbacks, power levels), with a team's allow-list on top of its key's."""

from __future__ import annotations

import math
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
CAPPED_RPM = 4  # echo-capped's `rpm` in tests/e2e/catalog.yaml


def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def admin(keys: dict[str, str]) -> dict[str, str]:
    return bearer(keys["admin_key"])


def new_key(http: httpx.Client, admin: dict[str, str], user: str, credits: float = 0, **policy: Any) -> str:
    made = http.post("/v1/admin/keys", json={"user_id": user, **policy}, headers=admin)
    assert made.status_code == 201, made.text
    if credits:
        granted = http.post("/v1/admin/credits", json={"user": user, "amount": credits}, headers=admin)
        assert granted.status_code in (200, 201), granted.text
    return str(made.json()["key"])


def sdk(suite: Suite, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=suite.base_url, api_key=key, max_retries=0, timeout=30)


def answered_by(reply: Any) -> str:
    extra = reply.model_extra or {}
    return str(extra["_metadata"]["model_used"])


def test_a_models_catalog_rpm_counts_every_caller_and_alias(
    suite: Suite, http: httpx.Client, admin: dict[str, str]
) -> None:
    listed = {m["id"]: m for m in http.get("/v1/models", headers=admin).json()["data"]}
    assert listed["echo-capped"]["limits"]["rpm"] == CAPPED_RPM
    if time.time() % 60 > 45:  # the window is the wall-clock minute: start early in one
        time.sleep(61 - time.time() % 60)
    alice = sdk(suite, new_key(http, admin, f"alice-{tag()}"))
    bob = sdk(suite, new_key(http, admin, f"bob-{tag()}"))
    with alice, bob:
        # Two users, each far from any limit of their own, by id and by alias: one model's window.
        for client, name in ((alice, "echo-capped"), (bob, "capped"), (alice, "capped"), (bob, "echo-capped")):
            assert client.chat.completions.create(model=name, messages=HI).choices
        for client, name in ((bob, "capped"), (alice, "echo-capped")):
            with pytest.raises(openai.RateLimitError) as err:
                client.chat.completions.create(model=name, messages=HI)
            left = 60 - time.time() % 60
            assert f"model 'echo-capped': limit {CAPPED_RPM}" in err.value.message, err.value.message
            assert "requests per minute" in err.value.message
            wait = int(err.value.response.headers["retry-after"])
            assert math.floor(left) - 1 <= wait <= math.ceil(left) + 1, (wait, left)
            assert f"Retry after {wait}s" in err.value.message
        # Another model is not in that window.
        assert alice.chat.completions.create(model="echo-free", messages=HI).choices


def test_a_failed_models_fallback_outside_the_allow_list_never_answers(
    suite: Suite, http: httpx.Client, admin: dict[str, str], upstream: httpx.Client
) -> None:
    """`flaky` always fails upstream and declares `echo-paid` as its fallback; a key allowed `flaky` alone gets
    the failure, and `echo-paid` (an answer the key could not have asked for) is never called."""
    key = new_key(http, admin, f"only-flaky-{tag()}", credits=5, models=["flaky"])
    with sdk(suite, key) as client:
        for extra in ({}, {"power_level": "ECO"}, {"power_level": "PRECISION"}):
            before = upstream_count(upstream, "/v1/chat/completions", "demo-echo")
            with pytest.raises(openai.APIStatusError) as err:
                client.chat.completions.create(model="flaky", messages=HI, extra_body=extra)
            assert err.value.status_code == 502, (extra, err.value.response.text)
            assert upstream_count(upstream, "/v1/chat/completions", "demo-echo") == before, extra


def test_a_power_level_after_a_failure_picks_only_allowed_models(
    suite: Suite, http: httpx.Client, admin: dict[str, str]
) -> None:
    """Allowed `flaky` and `echo-free`: after `flaky` fails, its declared fallback `echo-paid` is skipped and the
    power level's ranking gives `echo-free`, whichever level; an automatic choice keeps to the list too."""
    key = new_key(http, admin, f"two-{tag()}", credits=5, models=["flaky", "echo-free"])
    with sdk(suite, key) as client:
        for level in ("eco", "precision"):
            reply = client.chat.completions.create(model="flaky", messages=HI, extra_headers={"X-Power-Level": level})
            assert answered_by(reply) == "echo-free", str((reply.model_extra or {})["_metadata"])
    paid = new_key(http, admin, f"paid-{tag()}", credits=5, models=["echo-paid"])
    with sdk(suite, paid) as client:  # ECO ranks the free model first; this key may not use it
        reply = client.chat.completions.create(model="", messages=HI, extra_headers={"X-Power-Level": "eco"})
        assert answered_by(reply) == "echo-paid", str((reply.model_extra or {})["_metadata"])


def test_a_teams_allow_list_applies_on_top_of_its_keys(
    suite: Suite, http: httpx.Client, admin: dict[str, str], upstream: httpx.Client
) -> None:
    """The key allows `flaky`, `echo-paid` and `echo-free`; its team allows `flaky` and `tier:FREE`: the fallback
    and the power level may only pick `echo-free`, and a key allowing no model of the team's gets nothing."""
    team, user = f"narrow-{tag()}", f"member-{tag()}"
    made = http.post("/v1/teams", json={"team_id": team, "models": ["flaky", "tier:FREE"]}, headers=admin)
    assert made.status_code == 201, made.text
    assert http.put(f"/v1/teams/{team}/members/{user}", json={}, headers=admin).status_code == 200
    wide = new_key(http, admin, user, credits=5, models=["flaky", "echo-paid", "echo-free"])
    with sdk(suite, wide) as client:
        reply = client.chat.completions.create(model="flaky", messages=HI, extra_body={"power_level": "ECO"})
        assert answered_by(reply) == "echo-free"
        reply = client.chat.completions.create(model="flaky", messages=HI, extra_body={"power_level": "PRECISION"})
        assert answered_by(reply) == "echo-free"
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model="flaky", messages=HI)
        assert err.value.status_code == 502
    paid_only = new_key(http, admin, user, models=["flaky", "echo-paid"])
    with sdk(suite, paid_only) as client:
        before = upstream_count(upstream, "/v1/chat/completions", "demo-echo")
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model="flaky", messages=HI, extra_body={"power_level": "ECO"})
        assert err.value.status_code == 502
        assert upstream_count(upstream, "/v1/chat/completions", "demo-echo") == before
