"""Bad input gets OpenAI-shaped errors with the right status, and a failed request is never charged."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from services.launcher import Suite
from tests.e2e.support import PLATFORM_KEY, balance_micro, bearer


def assert_openai_error(
    reply: httpx.Response, status: int, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert "Traceback" not in reply.text
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return dict(error)


def test_missing_and_wrong_keys_are_401(suite: Suite, http: httpx.Client) -> None:
    body = {"model": "echo-paid", "messages": [{"role": "user", "content": "hi"}]}
    assert_openai_error(http.post("/v1/chat/completions", json=body), 401)
    wrong = "tg-" + "x" * 43
    error = assert_openai_error(http.post("/v1/chat/completions", json=body, headers=bearer(wrong)), 401)
    assert wrong not in error["message"]
    with (
        openai.OpenAI(base_url=suite.base_url, api_key=wrong, max_retries=0) as sdk,
        pytest.raises(openai.AuthenticationError),
    ):
        sdk.models.list()


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.code == "model_not_found"
    assert "no-such-model" in raised.value.message


def test_malformed_json_and_missing_messages_name_the_parameter(http: httpx.Client, keys: dict[str, str]) -> None:
    headers = {**bearer(keys["demo_key"]), "Content-Type": "application/json"}
    assert_openai_error(http.post("/v1/chat/completions", content=b"{not json", headers=headers), 400)
    assert_openai_error(
        http.post("/v1/chat/completions", json={"model": "echo-paid"}, headers=headers), 400, param="messages"
    )
    assert_openai_error(
        http.post("/v1/chat/completions", json={"messages": [{"role": "wizard", "content": "x"}]}, headers=headers),
        400,
        param="messages[0].role",
    )
    assert_openai_error(
        http.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "x"}], "temperature": 7},
            headers=headers,
        ),
        400,
        param="temperature",
    )


def test_unreachable_provider_is_named_never_its_key_and_not_charged(http: httpx.Client, keys: dict[str, str]) -> None:
    before = balance_micro(http, keys["demo_key"])
    reply = http.post(
        "/v1/chat/completions",
        headers=bearer(keys["demo_key"]),
        json={"model": "unreachable", "power_level": "custom", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert reply.status_code in (502, 503), reply.text
    error = assert_openai_error(reply, reply.status_code)
    assert "dead" in error["message"]
    assert PLATFORM_KEY not in reply.text
    assert balance_micro(http, keys["demo_key"]) == before


def test_unknown_route_and_method_are_openai_shaped(http: httpx.Client, keys: dict[str, str]) -> None:
    assert_openai_error(http.get("/v1/nope", headers=bearer(keys["demo_key"])), 404)
    assert_openai_error(http.get("/v1/chat/completions", headers=bearer(keys["demo_key"])), 405)


def test_fallback_after_upstream_500_charges_once(http: httpx.Client, keys: dict[str, str]) -> None:
    before = balance_micro(http, keys["demo_key"])
    reply = http.post(
        "/v1/chat/completions",
        headers=bearer(keys["demo_key"]),
        json={"model": "flaky", "messages": [{"role": "user", "content": "one two"}]},
    )
    assert reply.status_code == 200, reply.text
    meta = reply.json()["_metadata"]
    assert meta["model_used"] == "echo-paid"
    assert meta["fallbacks"] >= 1
    charged = before - balance_micro(http, keys["demo_key"])
    assert charged == round(meta["cost_incurred"] * 1_000_000)
