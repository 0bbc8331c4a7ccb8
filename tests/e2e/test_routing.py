"""Routing that keeps its word, through the real suite and the official SDK: a named model that cannot serve
is refused naming why, a substitute says why it answered, an admin's maintenance hold is obeyed by the
router, and equally suitable deployments go fastest first by the latency health measured."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from services.launcher import Suite
from tests.e2e.support import bearer, eventually

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}
# Tools and an image: only the twins (tests/e2e/catalog.yaml) can serve it.
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
TWIN_BODY: dict[str, Any] = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, IMAGE]}]}
TWIN_BODY["tools"] = [TOOL]


def _selected(http: httpx.Client, key: str, body: dict[str, Any]) -> int | str:
    reply = http.post("/v1/models/select", headers=bearer(key), json=body)
    return str(reply.json()["model"]) if reply.status_code == 200 else reply.status_code


def test_a_named_model_lacking_a_capability_is_refused_not_replaced(
    client: openai.OpenAI, http: httpx.Client, keys: dict[str, str]
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="echo-free", messages=HI, tools=[TOOL])
    body = err.value.body
    assert isinstance(body, dict)
    assert (body["type"], body["param"]) == ("invalid_request_error", "tools")
    assert "`echo-free` does not support tools" in body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="echo-free", messages=HI, max_tokens=40_000)
    assert isinstance(err.value.body, dict) and err.value.body["param"] == "max_tokens"
    select = {"model": "echo-free", "messages": HI, "tools": [TOOL]}
    assert _selected(http, keys["demo_key"], select) == 400


def test_a_declared_fallback_says_which_model_answered_and_why(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="flaky", messages=HI)
    meta = (raw.parse().model_extra or {})["_metadata"]
    assert raw.headers["x-tollgate-model"] == meta["model_used"] == "echo-paid"
    assert meta["requested_model"] == "flaky" and meta["fallbacks"] == 1
    assert meta["reason"] == "declared fallback of flaky after flaky: HTTP 500"


def test_equal_deployments_go_fastest_first_by_measured_latency(http: httpx.Client, keys: dict[str, str]) -> None:
    key = keys["demo_key"]

    def answer() -> str:
        reply = http.post("/v1/chat/completions", headers=bearer(key), json=TWIN_BODY)
        assert reply.status_code == 200, reply.text
        return str(reply.json()["_metadata"]["model_used"])

    # Unmeasured, the slow twin goes first (by id); its answer measures it, and then the fast one is tried,
    # measured and kept.
    assert answer() == "a-twin-slow"
    eventually(lambda: answer() == "b-twin-fast", "the fast twin is chosen once the slow one is measured")
    assert [answer() for _ in range(3)] == ["b-twin-fast"] * 3
    providers = {p["id"]: p for p in http.get("/v1/providers", headers=bearer(key)).json()["data"]}
    slow, fast = (providers[n]["endpoints"][0]["latency_ewma_ms"] for n in ("twin-slow-host", "twin-fast-host"))
    assert slow >= 800 > fast > 0


def test_a_provider_held_down_is_never_chosen_until_released(
    suite: Suite, client: openai.OpenAI, http: httpx.Client, keys: dict[str, str]
) -> None:
    admin, user = bearer(keys["admin_key"]), keys["demo_key"]
    held = http.post("/v1/providers/twin-fast-host/maintenance", headers=admin, json={"state": "down", "reason": "up"})
    assert held.status_code == 200, held.text
    try:
        named = {**TWIN_BODY, "model": "b-twin-fast"}
        eventually(lambda: _selected(http, user, named) == 503, "the router hears of the hold")
        assert _selected(http, user, TWIN_BODY) == "a-twin-slow"
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model="b-twin-fast", messages=HI)
        assert err.value.status_code == 503 and "maintenance" in err.value.message
        listed = {p["id"]: p for p in http.get("/v1/providers", headers=admin).json()["data"]}
        assert listed["twin-fast-host"]["maintenance"]["reason"] == "up"
        assert listed["twin-fast-host"]["maintenance"]["by"].startswith("user ")
        shown = http.get("/v1/providers", headers=bearer(user)).json()["data"]
        assert next(p for p in shown if p["id"] == "twin-fast-host")["maintenance"] == {
            "state": "down",
            "reason": "up",
            "since_unix_ms": listed["twin-fast-host"]["maintenance"]["since_unix_ms"],
        }
    finally:
        http.post("/v1/providers/twin-fast-host/maintenance", headers=admin, json={"state": "auto"})
    eventually(lambda: _selected(http, user, TWIN_BODY) == "b-twin-fast", "chosen again once released")
    trail = http.get("/v1/admin/providers/maintenance?provider=twin-fast-host", headers=admin).json()["data"]
    assert [c["state"] for c in trail[:2]] == ["auto", "down"]
