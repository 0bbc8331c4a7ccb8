"""The Responses passthrough in the router: the catalog flag, holds, fallback among Responses-capable
candidates only, usage rows named after the client API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import cast

import orjson
import pytest

from services.demo_upstream.server import Upstream
from services.router.catalog import Catalog, CatalogError, parse
from services.router.health_view import HealthView
from services.router.pipeline import Caller, Router, Settings
from services.router.pricing import hold_tokens
from services.router.request import parse as parse_request
from services.runtime.channels import Deadline
from services.runtime.errors import DomainError

from .conftest import FakeLedger, FakeVault

CATALOG = """
version: 1
providers:
  native:
    api_base: {base}
    adapter: openai
    responses: true
  chatonly:
    api_base: {base}
    adapter: openai
models:
  - {{id: broken, provider: native, upstream: fail-500, tier: BALANCED, price: {{input: 0.01, output: 0.02}},
     capabilities: [chat], max_output_tokens: 300, fallbacks: [chat-spare, native-spare]}}
  - {{id: chat-spare, provider: chatonly, upstream: demo-echo, tier: BALANCED, price: {{input: 0.01, output: 0.02}},
     capabilities: [chat]}}
  - {{id: native-spare, provider: native, upstream: demo-echo, tier: BALANCED, price: {{input: 0.01, output: 0.02}},
     capabilities: [chat]}}
"""


@pytest.fixture
async def router(upstream: Upstream) -> AsyncIterator[Router]:
    catalog = parse(CATALOG.format(base=upstream.base_url))
    r = Router(catalog, Settings(default_power_level="BALANCED"), FakeLedger(), FakeVault(), HealthView())
    yield r
    await r.close()


def caller() -> Caller:
    return Caller(request_id=uuid.uuid4().hex, user_id="u1", key_id="k1", deadline=Deadline(10))


def test_the_flag_is_validated_and_only_for_the_openai_adapter() -> None:
    base = (
        "version: 1\nproviders:\n  p: {{adapter: {adapter}, {extra} responses: {value}, free: true}}\n"
        "models:\n  - {{id: m, provider: p, upstream: m, tier: FREE, capabilities: [chat]}}\n"
    )
    assert parse(base.format(adapter="openai", extra="api_base: http://x/v1,", value="true")).providers["p"].responses
    with pytest.raises(CatalogError, match="responses: must be true or false"):
        parse(base.format(adapter="openai", extra="api_base: http://x/v1,", value="'yes'"))
    with pytest.raises(CatalogError, match="only for adapter openai"):
        parse(base.format(adapter="litellm", extra="litellm_provider: anthropic,", value="true"))


def test_the_hold_bounds_input_items_instructions_tools_and_the_output_limit(upstream: Upstream) -> None:
    catalog: Catalog = parse(CATALOG.format(base=upstream.base_url))
    model = catalog.models["broken"]
    small = parse_request("responses", orjson.dumps({"model": "broken", "input": "hi"}))
    big = parse_request(
        "responses",
        orjson.dumps(
            {
                "model": "broken",
                "instructions": "x " * 500,
                "input": [{"role": "user", "content": [{"type": "input_text", "text": "y " * 500}]}],
                "tools": [{"type": "function", "name": "f", "parameters": {"description": "z" * 800}}],
                "max_output_tokens": 40,
            }
        ),
    )
    assert hold_tokens(model, small)[1] == 300  # no max_output_tokens: the model's max output
    assert hold_tokens(model, big)[1] == 40
    assert hold_tokens(model, big)[0] >= 500 + 500 + 800 // 4


async def test_fallback_skips_chat_only_candidates(router: Router, upstream: Upstream) -> None:
    request = parse_request("responses", orjson.dumps({"model": "broken", "input": "hello there"}), client_api="")
    body, outcome = await router.complete(request, caller())
    reply = orjson.loads(body)
    assert outcome.model == "native-spare" and reply["model"] == "native-spare"
    assert reply["output"][0]["content"][0]["text"] == "echo: hello there"
    stats = upstream.stats
    assert stats["requests"].get("/v1/chat/completions demo-echo", 0) == 0
    assert stats["requests"]["/v1/responses demo-echo"] == 1
    rows = cast(FakeLedger, router.ledger).usage
    assert rows[-1].route == "responses" and rows[-1].prompt_tokens == 2


async def test_a_chat_only_model_is_refused_on_respond(router: Router) -> None:
    request = parse_request("responses", orjson.dumps({"model": "chat-spare", "input": "hi"}))
    with pytest.raises(DomainError, match="does not serve the Responses API"):
        await router.complete(request, caller())


async def test_the_client_api_names_the_usage_row_and_is_checked(router: Router) -> None:
    chat = orjson.dumps({"model": "chat-spare", "messages": [{"role": "user", "content": "hi"}]})
    await router.complete(parse_request("chat", chat, client_api="messages"), caller())
    assert cast(FakeLedger, router.ledger).usage[-1].route == "messages"
    with pytest.raises(DomainError, match="client_api"):
        parse_request("chat", chat, client_api="billing")
