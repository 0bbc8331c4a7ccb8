"""Both adapters pass the same contract against the demo upstream: replies, streams, usage, failures."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from services.demo_upstream.server import Upstream
from services.router.adapters.base import Adapter, Event, UpstreamError
from services.router.adapters.litellm import LiteLLMAdapter
from services.router.adapters.openai import OpenAIAdapter
from services.router.catalog import Model, parse

# litellm's stream types trip a pydantic typing warning on first use; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CATALOG = """
version: 1
providers:
  direct: {{api_base: "{base}", adapter: openai, timeout_s: 1}}
  via-litellm: {{api_base: "{base}", adapter: litellm, litellm_provider: openai, timeout_s: 1}}
models:
  - {{id: m, provider: {provider}, upstream: demo-echo, tier: FREE, price: {{input: 0, output: 0}},
     capabilities: [chat, completion, embeddings]}}
"""


@pytest.fixture(params=["openai", "litellm"])
async def adapter_and_model(request: pytest.FixtureRequest, upstream: Upstream) -> AsyncIterator[tuple[Adapter, Model]]:
    provider = "direct" if request.param == "openai" else "via-litellm"
    model = parse(CATALOG.format(base=upstream.base_url, provider=provider), env={}).models["m"]
    adapter: Adapter = OpenAIAdapter() if request.param == "openai" else LiteLLMAdapter()
    yield adapter, model
    await adapter.close()


def with_upstream(model: Model, upstream: str) -> Model:
    import dataclasses

    return dataclasses.replace(model, upstream=upstream)


CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "one two three"}]}


async def test_chat_reply(adapter_and_model: tuple[Adapter, Model]) -> None:
    adapter, model = adapter_and_model
    reply = await adapter.call("chat", model, CHAT, "sk-test-key-0000000000", 5)
    assert reply.body["choices"][0]["message"]["content"] == "echo: one two three"
    assert reply.body["usage"]["prompt_tokens"] == 3
    assert reply.body["usage"]["completion_tokens"] == 4


async def test_key_reaches_the_upstream(adapter_and_model: tuple[Adapter, Model], upstream: Upstream) -> None:
    adapter, model = adapter_and_model
    await adapter.call("chat", model, CHAT, "sk-test-key-0000000000", 5)
    assert upstream.stats["last_authorization"]["demo-echo"] == "Bearer sk-test-key-0000000000"


async def test_text_completion(adapter_and_model: tuple[Adapter, Model]) -> None:
    adapter, model = adapter_and_model
    reply = await adapter.call("completion", model, {"prompt": "say this"}, None, 5)
    assert reply.body["choices"][0]["text"] == "echo: say this"


async def test_embeddings(adapter_and_model: tuple[Adapter, Model]) -> None:
    adapter, model = adapter_and_model
    reply = await adapter.call("embedding", with_upstream(model, "demo-embed"), {"input": ["a b", "c"]}, None, 5)
    assert len(reply.body["data"]) == 2
    assert reply.body["usage"]["prompt_tokens"] == 3


async def _events(adapter: Adapter, model: Model) -> list[Event]:
    payload = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    return [e async for e in adapter.stream("chat", model, payload, None, 5)]


async def test_stream_yields_text_and_usage(adapter_and_model: tuple[Adapter, Model]) -> None:
    adapter, model = adapter_and_model
    events = await _events(adapter, model)
    text = "".join(
        (c["delta"].get("content") or "") for e in events for c in e.obj.get("choices") or () if c.get("delta")
    )
    assert text == "echo: one two three"
    usage = [e.obj["usage"] for e in events if e.obj.get("usage")]
    assert usage and usage[-1]["completion_tokens"] == 4


@pytest.mark.parametrize(("upstream_name", "status"), [("fail-500", 500), ("fail-429", 429), ("fail-503", 503)])
async def test_http_failures_are_retryable(
    adapter_and_model: tuple[Adapter, Model], upstream_name: str, status: int
) -> None:
    adapter, model = adapter_and_model
    with pytest.raises(UpstreamError) as err:
        await adapter.call("chat", with_upstream(model, upstream_name), CHAT, None, 5)
    assert err.value.status == status and err.value.retryable


async def test_bad_request_is_not_retryable(adapter_and_model: tuple[Adapter, Model]) -> None:
    adapter, model = adapter_and_model
    with pytest.raises(UpstreamError) as err:
        await adapter.call("chat", with_upstream(model, "fail-400"), CHAT, None, 5)
    assert err.value.status == 400 and not err.value.retryable


async def test_rejected_key_is_an_auth_failure_and_never_echoed(
    adapter_and_model: tuple[Adapter, Model], upstream: Upstream
) -> None:
    adapter, model = adapter_and_model
    upstream.control(require_key="sk-the-right-one-000000")
    with pytest.raises(UpstreamError) as err:
        await adapter.call("chat", model, CHAT, "sk-the-wrong-one-11111111", 5)
    assert err.value.auth
    assert "sk-the-wrong-one" not in err.value.message


async def test_garbage_body_is_retryable(adapter_and_model: tuple[Adapter, Model]) -> None:
    adapter, model = adapter_and_model
    with pytest.raises(UpstreamError) as err:
        await adapter.call("chat", with_upstream(model, "garbage"), CHAT, None, 5)
    assert err.value.retryable


async def test_hang_times_out(adapter_and_model: tuple[Adapter, Model]) -> None:
    adapter, model = adapter_and_model
    with pytest.raises(UpstreamError) as err:
        await adapter.call("chat", with_upstream(model, "hang"), CHAT, None, 0.3)
    assert err.value.kind == "timeout" and err.value.retryable


async def test_stream_cut_raises_after_the_first_events(adapter_and_model: tuple[Adapter, Model]) -> None:
    adapter, model = adapter_and_model
    got: list[Event] = []
    payload = {**CHAT, "stream": True}
    with pytest.raises(UpstreamError) as err:
        async for event in adapter.stream("chat", with_upstream(model, "cut-after-2"), payload, None, 5):
            got.append(event)
    assert len(got) == 2
    assert err.value.retryable


async def test_unreachable_upstream(adapter_and_model: tuple[Adapter, Model]) -> None:
    import dataclasses

    adapter, model = adapter_and_model
    provider = dataclasses.replace(model.provider, name="nowhere", api_base="http://127.0.0.1:9/v1")
    with pytest.raises(UpstreamError) as err:
        await adapter.call("chat", dataclasses.replace(model, provider=provider), CHAT, None, 2)
    assert err.value.retryable
    assert err.value.status == 0 or err.value.status >= 500


async def test_stream_ended_without_done_is_cut(adapter_and_model: tuple[Adapter, Model]) -> None:
    """A body that ends cleanly but without `[DONE]` (and without a finish_reason) is not a complete answer."""
    adapter, model = adapter_and_model
    got: list[Event] = []
    with pytest.raises(UpstreamError) as err:
        async for event in adapter.stream(
            "chat", with_upstream(model, "end-after-2"), {**CHAT, "stream": True}, None, 5
        ):
            got.append(event)
    assert len(got) == 2
    assert err.value.kind == "cut"


async def test_streamed_tool_call_deltas_and_logprobs_arrive_whole(
    adapter_and_model: tuple[Adapter, Model], upstream: Upstream
) -> None:
    adapter, model = adapter_and_model
    logprobs = {"content": [{"token": "x", "logprob": -1.0, "bytes": [120], "top_logprobs": []}], "refusal": None}
    upstream._app.apply_control(
        {"model": "demo-echo", "script": [{"tool_calls": [{"name": "f", "arguments": {"x": 1}}], "logprobs": logprobs}]}
    )
    payload = {**CHAT, "stream": True, "logprobs": True, "tools": [{"type": "function", "function": {"name": "f"}}]}
    arguments, names, finishes, found = "", "", [], []
    async for event in adapter.stream("chat", model, payload, None, 5):
        for choice in event.obj.get("choices") or ():
            finishes += [choice["finish_reason"]] if choice.get("finish_reason") else []
            found += [choice["logprobs"]] if choice.get("logprobs") else []
            for call in choice["delta"].get("tool_calls") or ():
                assert call.get("id", "") is not None  # never an explicit null
                names += call.get("function", {}).get("name") or ""
                arguments += call.get("function", {}).get("arguments") or ""
    assert (names, orjson.loads(arguments), finishes) == ("f", {"x": 1}, ["tool_calls"])
    assert found == [logprobs]
    assert upstream.stats["last_bodies"]["demo-echo"]["logprobs"] is True


async def test_custom_tool_calls_and_n_choices(adapter_and_model: tuple[Adapter, Model], upstream: Upstream) -> None:
    adapter, model = adapter_and_model
    upstream._app.apply_control({"model": "demo-echo", "script": [{"tool_calls": [{"name": "g", "input": "free"}]}]})
    tools = [{"type": "custom", "custom": {"name": "g"}}]
    reply = await adapter.call("chat", model, {**CHAT, "tools": tools, "n": 2}, None, 5)
    assert [c["index"] for c in reply.body["choices"]] == [0, 1]
    call = reply.body["choices"][0]["message"]["tool_calls"][0]
    assert (call["type"], call["custom"]) == ("custom", {"name": "g", "input": "free"})
    assert upstream.stats["last_bodies"]["demo-echo"]["tools"] == tools


async def test_embeddings_in_base64_and_from_token_ids(adapter_and_model: tuple[Adapter, Model]) -> None:
    adapter, model = adapter_and_model
    embed = with_upstream(model, "demo-embed")
    floats = await adapter.call("embedding", embed, {"input": "a b"}, None, 5)
    encoded = await adapter.call("embedding", embed, {"input": "a b", "encoding_format": "base64"}, None, 5)
    vector = encoded.body["data"][0]["embedding"]
    assert isinstance(vector, str)
    assert list(struct.unpack("<8f", base64.b64decode(vector))) == floats.body["data"][0]["embedding"]
    ids = await adapter.call("embedding", embed, {"input": [[1, 2], [3]]}, None, 5)
    assert len(ids.body["data"]) == 2 and ids.body["usage"]["prompt_tokens"] == 3
    text = await adapter.call("completion", model, {"prompt": [5, 6, 7]}, None, 5)
    assert text.body["choices"][0]["text"] == "echo: 5 6 7"
