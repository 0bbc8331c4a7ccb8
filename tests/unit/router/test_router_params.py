"""The allow-list: per route, what reaches a provider, what is refused (naming the field) and what is dropped."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from services.demo_upstream.server import Upstream
from services.router import params
from services.router.adapters.litellm import LiteLLMAdapter
from services.router.adapters.openai import OpenAIAdapter
from services.router.catalog import Model, parse
from services.router.request import parse as parse_request
from services.runtime.errors import DomainError

BODIES: dict[str, dict[str, Any]] = {
    "chat": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    "completion": {"model": "m", "prompt": "say"},
    "embedding": {"model": "m", "input": "text"},
}
STEERING = [
    "api_base",
    "base_url",
    "api_version",
    "api_key",
    "api_type",
    "organization",
    "extra_headers",
    "headers",
    "extra_body",
    "extra_query",
    "custom_llm_provider",
    "timeout",
    "num_retries",
    "max_retries",
    "mock_response",
    "callbacks",
    "success_callback",
    "litellm_params",
    "litellm_logging_obj",
    "litellm_call_id",
    "proxy",
    "proxies",
    "aws_secret_access_key",
    "vertex_credentials",
    "azure_ad_token",
    "fallbacks",
    "model_list",
    "input_cost_per_token",
    "drop_params",
    "cache",
    "webhook_url",
    "x_api_key",
    "Extra_Headers",
]


@pytest.mark.parametrize("route", ["chat", "completion", "embedding"])
@pytest.mark.parametrize("field", STEERING)
def test_steering_fields_are_refused_naming_them(route: str, field: str) -> None:
    body = {**BODIES[route], field: "http://127.0.0.1:1/v1"}
    with pytest.raises(DomainError) as err:
        parse_request(route, orjson.dumps(body))  # type: ignore[arg-type]
    assert (err.value.code, err.value.param) == ("invalid_request", field)
    assert field in err.value.message


def test_a_body_api_key_over_grpc_is_refused() -> None:
    """The gateway lifts an inline key out of the body; a body that reaches the router with one is refused."""
    body = {**BODIES["chat"], "api_key": "sk-someone-else-000000000000", "provider": "fake"}
    with pytest.raises(DomainError) as err:
        parse_request("chat", orjson.dumps(body))
    assert err.value.param == "api_key"
    assert "sk-someone-else" not in err.value.message


@pytest.mark.parametrize("route", ["chat", "completion", "embedding"])
def test_every_documented_parameter_is_kept(route: str) -> None:
    body = {name: None for name in params.ALLOWED[route]} | BODIES[route]
    assert params.checked(route, body) == body


@pytest.mark.parametrize("route", ["chat", "completion", "embedding"])
def test_harmless_unknown_fields_are_dropped_and_logged(route: str, caplog: pytest.LogCaptureFixture) -> None:
    extra = {"user_email": "a@example.com", "byok": False, "tags": ["x"], "transforms": [], "task": "t"}
    with caplog.at_level(logging.DEBUG, logger="tollgate.router.params"):
        request = parse_request(route, orjson.dumps({**BODIES[route], **extra}))  # type: ignore[arg-type]
    assert request.body == BODIES[route]
    assert "byok, tags, task, transforms, user_email" in caplog.text
    assert "a@example.com" not in caplog.text  # names only, never values


def test_each_route_has_its_own_list() -> None:
    embedding = {**BODIES["embedding"], "n": 2, "stream": True, "temperature": 1}
    assert params.checked("embedding", embedding) == BODIES["embedding"]
    assert "best_of" not in params.checked("chat", {**BODIES["chat"], "best_of": 2})
    assert params.checked("completion", {**BODIES["completion"], "best_of": 2, "suffix": "s"})["best_of"] == 2
    assert "tools" not in params.checked("completion", {**BODIES["completion"], "tools": []})


def test_priced_apart_is_refused() -> None:
    for body, field in (
        ({"service_tier": "priority"}, "service_tier"),
        ({"service_tier": "flex"}, "service_tier"),
        ({"web_search_options": {}}, "web_search_options"),
    ):
        with pytest.raises(DomainError) as err:
            params.checked("chat", {**BODIES["chat"], **body})
        assert err.value.param == field
    assert params.checked("chat", {**BODIES["chat"], "service_tier": "auto"})["service_tier"] == "auto"


def test_stream_options_keep_only_their_documented_keys() -> None:
    body = {**BODIES["chat"], "stream": True, "stream_options": {"include_usage": True, "api_base": "http://x"}}
    assert params.checked("chat", body)["stream_options"] == {"include_usage": True}


def test_outgoing_keeps_litellm_options_out() -> None:
    payload = {**BODIES["chat"], "metadata": {"a": "b"}, "api_base": "http://x", "extra_headers": {"h": "v"}}
    assert params.outgoing("chat", payload) == {**BODIES["chat"], "metadata": {"a": "b"}}
    assert params.outgoing("chat", payload, litellm=True) == BODIES["chat"]


# The adapters' last filter, whatever a caller hands them.

CATALOG = """
version: 1
providers:
  direct: {{api_base: "{base}", adapter: openai}}
  via-litellm: {{api_base: "{base}", adapter: litellm, litellm_provider: openai}}
models:
  - {{id: m, provider: {provider}, upstream: demo-echo, tier: FREE, price: {{input: 0, output: 0}}}}
"""
SMUGGLED = {
    **BODIES["chat"],
    "api_base": "http://127.0.0.1:1/v1",
    "base_url": "http://127.0.0.1:1/v1",
    "extra_headers": {"x-leak": "1"},
    "mock_response": "mocked",
    "temperature": 0.5,
}


def _model(upstream: Upstream, provider: str) -> Model:
    return parse(CATALOG.format(base=upstream.base_url, provider=provider), env={}).models["m"]


def test_openai_adapter_posts_only_documented_fields_to_the_catalog_url(upstream: Upstream) -> None:
    model = _model(upstream, "direct")
    sent = OpenAIAdapter._request("chat", model, SMUGGLED, "sk-platform-0000000000", 5)
    assert sent["url"] == upstream.base_url + "/chat/completions"
    assert orjson.loads(sent["data"]) == {**BODIES["chat"], "model": "demo-echo", "temperature": 0.5}
    assert sent["headers"] == {"authorization": "Bearer sk-platform-0000000000"}


@pytest.fixture
async def captured_litellm(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[dict[str, Any]]]:
    from services.router.adapters.litellm import _litellm

    calls: list[dict[str, Any]] = []

    async def fake_acompletion(**kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        return {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}

    monkeypatch.setattr(_litellm(), "acompletion", fake_acompletion)
    yield calls


async def test_litellm_adapter_sets_url_key_and_options_from_the_catalog(
    upstream: Upstream, captured_litellm: list[dict[str, Any]]
) -> None:
    model = _model(upstream, "via-litellm")
    adapter = LiteLLMAdapter()
    await adapter.call("chat", model, {**SMUGGLED, "metadata": {"k": "v"}}, "sk-platform-0000000000", 5)
    (kwargs,) = captured_litellm
    assert kwargs == {
        "messages": BODIES["chat"]["messages"],
        "temperature": 0.5,
        "model": "openai/demo-echo",
        "api_key": "sk-platform-0000000000",
        "api_base": upstream.base_url,
        "timeout": 5,
        "num_retries": 0,
        "max_retries": 0,
    }


def test_a_body_nested_too_deeply_to_send_is_a_400_not_a_crash(upstream: Upstream) -> None:
    deep = b"[" * 300 + b"]" * 300
    for field in (b"tools", b"response_format", b"tool_choice"):
        raw = b'{"messages": [{"role": "user", "content": "hi"}], "' + field + b'": ' + deep + b"}"
        with pytest.raises(DomainError) as err:
            parse_request("chat", raw)
        assert (err.value.code, err.value.param) == ("invalid_request", field.decode())
    unmeasured = orjson.loads(b'{"messages": [{"role": "user", "content": "hi"}], "logit_bias": ' + deep + b"}")
    with pytest.raises(DomainError) as err:
        OpenAIAdapter._request("chat", _model(upstream, "direct"), unmeasured, None, 5)
    assert (err.value.code, err.value.param) == ("invalid_request", "body")
