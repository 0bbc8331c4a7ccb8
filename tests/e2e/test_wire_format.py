"""Chat completions complete, and tollgate's wire format as clients read it, through the openai SDK.

The demo upstream plays a provider that really returns tool calls, custom tool calls, `n` choices and
logprobs (`/_control` scripts), and one that strays from OpenAI's stream (a file path as its model, a new
id per chunk, no finish_reason, no `[DONE]`, no usage); tollgate's answers stay OpenAI's.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.e2e.support import balance_micro, bearer, cost_micro

pytestmark = pytest.mark.e2e

USER: Any = [{"role": "user", "content": "what is the weather in Paris"}]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
GREP: Any = {"type": "custom", "custom": {"name": "grep", "description": "Search the code with a regular expression"}}
LOGPROBS: Any = {"content": [{"token": "Sun", "logprob": -0.25, "bytes": [83, 117, 110], "top_logprobs": []}]}
LLAMA_PATH = "/models/llama-3.2-1b-instruct-q4_k_m.gguf"


def control(upstream: httpx.Client, **spec: Any) -> None:
    upstream.post("/_control", json=spec).raise_for_status()


def script(upstream: httpx.Client, model: str, *replies: dict[str, Any]) -> None:
    control(upstream, model=model, script=list(replies))


def last_body(upstream: httpx.Client, model: str) -> dict[str, Any]:
    body: dict[str, Any] = upstream.get("/_stats").json()["last_bodies"][model]
    return body


def sse(http: httpx.Client, key: str, body: dict[str, Any]) -> list[Any]:
    """The stream's events as sent: JSON objects, and the string `[DONE]` where it came."""
    events: list[Any] = []
    with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}, headers=bearer(key)) as reply:
        assert reply.status_code == 200, reply.read()
        for line in reply.iter_lines():
            if line.startswith("data: "):
                data = line[6:]
                events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


@pytest.fixture
def quirky(upstream: httpx.Client) -> Iterator[str]:
    """The upstream model behind `wire-quirky`, its quirks cleared after the test."""
    yield "quirky"
    control(upstream, model="quirky", quirks=[], script=[], usage="words")


# item 3: chat completions, complete


def test_tool_calls_with_tool_choice_and_parallel_tool_calls(client: openai.OpenAI, upstream: httpx.Client) -> None:
    script(upstream, "demo-echo", {"tool_calls": [{"name": "weather", "arguments": {"city": "Paris"}}]})
    completion = client.chat.completions.create(
        model="echo-paid",
        messages=USER,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "weather"}},
        parallel_tool_calls=False,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "weather"
    assert orjson.loads(call.function.arguments) == {"city": "Paris"}
    sent = last_body(upstream, "demo-echo")
    assert sent["tools"] == [WEATHER]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert sent["parallel_tool_calls"] is False

    # The tool's answer goes back as a `tool` message and the conversation goes on.
    asked: Any = call.model_dump()
    tool: Any = {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
    follow = client.chat.completions.create(
        model="echo-paid",
        messages=[*USER, {"role": "assistant", "content": None, "tool_calls": [asked]}, tool],
        tools=[WEATHER],
    )
    assert follow.choices[0].finish_reason == "stop"
    assert last_body(upstream, "demo-echo")["messages"][2] == {
        "role": "tool",
        "tool_call_id": call.id,
        "content": "sunny",
    }


def test_streamed_tool_call_deltas_reassemble(client: openai.OpenAI, upstream: httpx.Client) -> None:
    script(
        upstream,
        "demo-echo",
        {"tool_calls": [{"name": "weather", "arguments": {"city": "Paris"}}, {"name": "weather", "arguments": "{}"}]},
    )
    stream = client.chat.completions.create(
        model="echo-paid",
        messages=USER,
        tools=[WEATHER],
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    finish, ids = None, set()
    for chunk in stream:
        ids.add(chunk.id)
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or ():
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
    assert finish == "tool_calls"
    assert len(ids) == 1
    assert [c["name"] for c in calls.values()] == ["weather", "weather"]
    assert orjson.loads(calls[0]["arguments"]) == {"city": "Paris"} and calls[1]["arguments"] == "{}"
    assert all(c["id"].startswith("call_") for c in calls.values())


def test_custom_tools_are_accepted(client: openai.OpenAI, http: httpx.Client, upstream: httpx.Client) -> None:
    script(upstream, "demo-echo", {"tool_calls": [{"name": "grep", "input": "def main"}]})
    completion = client.chat.completions.create(
        model="echo-paid",
        messages=USER,
        tools=[GREP],
        tool_choice={"type": "custom", "custom": {"name": "grep"}},
    )
    call = (completion.choices[0].message.tool_calls or [])[0]
    assert call.type == "custom" and call.custom.name == "grep" and call.custom.input == "def main"
    assert last_body(upstream, "demo-echo")["tools"] == [GREP]

    script(upstream, "demo-echo", {"tool_calls": [{"name": "grep", "input": "class Gate"}]})
    events = sse(http, _key(client), {"model": "echo-paid", "messages": USER, "tools": [GREP]})
    pieces = [
        call["custom"].get("input", "")
        for e in events[:-1]
        for c in e["choices"]
        for call in c["delta"].get("tool_calls") or ()
    ]
    assert "".join(pieces) == "class Gate"
    assert [c["finish_reason"] for e in events[:-1] for c in e["choices"] if c["finish_reason"]] == ["tool_calls"]


def test_a_malformed_tool_or_tool_choice_is_refused(http: httpx.Client, client: openai.OpenAI) -> None:
    for field, value, param in (
        ("tools", [{"type": "custom", "custom": {}}], "tools[0]"),
        ("tools", [{"type": "web_search"}], "tools[0]"),
        ("tool_choice", "always", "tool_choice"),
        ("parallel_tool_calls", "yes", "parallel_tool_calls"),
        ("top_logprobs", 3, "top_logprobs"),
        ("response_format", {"type": "json_schema"}, "response_format.json_schema"),
    ):
        body = {"model": "echo-paid", "messages": USER, field: value}
        reply = http.post("/v1/chat/completions", json=body, headers=bearer(_key(client)))
        assert reply.status_code == 400, (field, reply.text)
        assert reply.json()["error"]["param"] == param


def test_n_choices_stream_and_not(client: openai.OpenAI, http: httpx.Client, upstream: httpx.Client) -> None:
    script(upstream, "demo-echo", {"content": "bonjour"})
    completion = client.chat.completions.create(model="echo-paid", messages=USER, n=3)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert {c.message.content for c in completion.choices} == {"bonjour"}

    script(upstream, "demo-echo", {"content": "bonjour tout le monde"})
    events = sse(http, _key(client), {"model": "echo-paid", "messages": USER, "n": 2})
    assert events[-1] == "[DONE]"
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    for event in events[:-1]:
        for choice in event["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + (choice["delta"].get("content") or "")
            if choice["finish_reason"]:
                finishes[choice["index"]] = choice["finish_reason"]
    assert texts == {0: "bonjour tout le monde", 1: "bonjour tout le monde"}
    assert finishes == {0: "stop", 1: "stop"}
    assert len({e["id"] for e in events[:-1]}) == 1


def test_logprobs_seed_and_json_schema_reach_the_provider_and_come_back(
    client: openai.OpenAI, http: httpx.Client, upstream: httpx.Client
) -> None:
    schema = {
        "name": "forecast",
        "strict": True,
        "schema": {"type": "object", "properties": {"sky": {"type": "string"}}, "required": ["sky"]},
    }
    script(upstream, "demo-echo", {"content": '{"sky": "sunny"}', "logprobs": LOGPROBS})
    body = {
        "model": "echo-paid",
        "messages": USER,
        "logprobs": True,
        "top_logprobs": 2,
        "seed": 42,
        "response_format": {"type": "json_schema", "json_schema": schema},
    }
    raw = http.post("/v1/chat/completions", json=body, headers=bearer(_key(client)))
    assert raw.status_code == 200, raw.text
    choice = raw.json()["choices"][0]
    # The upstream left out `logprobs.refusal`: the spec requires it, as null.
    assert choice["logprobs"] == {**LOGPROBS, "refusal": None}
    assert orjson.loads(choice["message"]["content"]) == {"sky": "sunny"}
    sent = last_body(upstream, "demo-echo")
    assert (sent["logprobs"], sent["top_logprobs"], sent["seed"]) == (True, 2, 42)
    assert sent["response_format"] == {"type": "json_schema", "json_schema": schema}

    script(upstream, "demo-echo", {"content": "Sun", "logprobs": LOGPROBS})
    stream = client.chat.completions.create(
        model="echo-paid",
        messages=USER,
        logprobs=True,
        stream=True,
    )
    found = [c.choices[0].logprobs for c in stream if c.choices and c.choices[0].logprobs is not None]
    assert len(found) == 1 and found[0].content is not None and found[0].content[0].token == "Sun"
    assert found[0].refusal is None


def test_image_parts_reach_the_provider(client: openai.OpenAI, upstream: httpx.Client) -> None:
    parts: Any = [
        {"type": "text", "text": "what is in this picture"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
    ]
    completion = client.chat.completions.create(
        model="echo-vision",
        messages=[{"role": "user", "content": parts}],
    )
    assert completion.choices[0].message.content == "echo: what is in this picture"
    assert last_body(upstream, "demo-echo")["messages"][0]["content"] == parts


def test_unknown_and_steering_fields_never_reach_the_provider(
    client: openai.OpenAI, http: httpx.Client, upstream: httpx.Client
) -> None:
    key = _key(client)
    body = {"model": "echo-paid", "messages": USER, "user_email": "a@example.com", "byok": False, "tenant": "x"}
    assert http.post("/v1/chat/completions", json=body, headers=bearer(key)).status_code == 200
    sent = last_body(upstream, "demo-echo")
    assert not {"user_email", "byok", "tenant"} & sent.keys()
    assert sent.keys() <= {"model", "messages"}

    upstream.post("/_stats/reset").raise_for_status()
    for field, value in (
        ("api_base", "http://127.0.0.1:1/v1"),
        ("extra_headers", {"x-a": "1"}),
        ("base_url", "http://x"),
        ("litellm_params", {}),
    ):
        reply = http.post("/v1/chat/completions", json={**body, field: value}, headers=bearer(key))
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["param"] == field
    assert upstream.get("/_stats").json()["total"] == 0


def test_n_and_tools_never_cost_more_than_the_hold(
    client: openai.OpenAI, http: httpx.Client, upstream: httpx.Client, quirky: str
) -> None:
    key = _key(client)
    control(upstream, model=quirky, usage="worst")  # the upstream bills the most the request allows
    body = {
        "model": "wire-quirky",
        "messages": USER,
        "n": 4,
        "max_tokens": 20,
        "tools": [WEATHER, GREP],
        "tool_choice": "auto",
    }
    hold = http.post("/v1/models/select", json=body, headers=bearer(key)).json()["candidates"][0]["estimated_cost"]
    before = balance_micro(http, key)
    reply = http.post("/v1/chat/completions", json=body, headers=bearer(key))
    assert reply.status_code == 200, reply.text
    usage = reply.json()["usage"]
    assert usage["completion_tokens"] == 80  # 4 choices at their limit
    charged = before - balance_micro(http, key)
    assert charged == cost_micro(usage["prompt_tokens"], usage["completion_tokens"], 0.01, 0.02)
    assert 0 < charged <= round(hold * 1_000_000)


# item 5: fidelity to the wire format


def test_model_is_the_catalog_id_never_the_upstreams_string(
    client: openai.OpenAI, http: httpx.Client, upstream: httpx.Client
) -> None:
    control(upstream, model="llama-local", answer_model=LLAMA_PATH)
    try:
        completion = client.chat.completions.create(model="wire-llama", messages=USER)
        assert completion.model == "wire-llama"
        events = sse(http, _key(client), {"model": "wire-llama", "messages": USER})
        assert {e["model"] for e in events[:-1]} == {"wire-llama"}
        text = client.completions.create(model="wire-llama", prompt="hello")
        assert text.model == "wire-llama"
    finally:
        control(upstream, model="llama-local", answer_model="")
    assert client.chat.completions.create(model="echo", messages=USER).model == "echo-paid"
    assert client.embeddings.create(model="echo-embed", input="a b").model == "echo-embed"


def test_a_stream_shares_one_id_and_every_choice_gets_a_finish_reason(
    client: openai.OpenAI, http: httpx.Client, upstream: httpx.Client, quirky: str
) -> None:
    control(upstream, model=quirky, quirks=["new_ids", "no_finish"])
    events = sse(
        http, _key(client), {"model": "wire-quirky", "messages": USER, "stream_options": {"include_usage": True}}
    )
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    with_choices = [c for c in chunks if c["choices"]]
    assert with_choices[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(ch["finish_reason"] is None for c in with_choices[:-1] for ch in c["choices"])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] > 0

    script(upstream, quirky, {"tool_calls": [{"name": "weather", "arguments": {"city": "Oslo"}}]})
    stream = client.chat.completions.create(
        model="wire-quirky",
        messages=USER,
        tools=[WEATHER],
        stream=True,
    )
    finishes = [c.choices[0].finish_reason for c in stream if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]


def test_a_stream_cut_without_done_ends_with_an_error_and_is_not_charged_as_complete(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    key = _key(client)
    before = balance_micro(http, key)
    events = sse(http, key, {"model": "wire-ended", "messages": USER})
    assert "[DONE]" not in events
    error = events[-1]["error"]
    assert error["code"] == "provider_error" and "without [DONE]" in error["message"], error
    delivered = "".join(c["choices"][0]["delta"].get("content") or "" for c in events[:-1] if c["choices"])
    assert 0 < len(delivered) < len("echo: what is the weather in Paris")
    charged = before - balance_micro(http, key)
    complete = cost_micro(6, 7, 0.01, 0.02)  # the whole reply's words, as a complete stream would be charged
    assert charged < complete

    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="wire-ended", messages=USER, stream=True):
            pass


def test_system_fingerprint_null_is_left_out(client: openai.OpenAI, http: httpx.Client) -> None:
    # The demo upstream sends `system_fingerprint: null`; the spec has it as a string when present.
    body = {"model": "echo-paid", "messages": USER}
    reply = http.post("/v1/chat/completions", json=body, headers=bearer(_key(client))).json()
    assert "system_fingerprint" not in reply
    events = sse(http, _key(client), body)
    assert not any("system_fingerprint" in e for e in events[:-1])


def test_estimated_usage_is_marked(client: openai.OpenAI) -> None:
    estimated = client.chat.completions.create(model="wire-no-usage", messages=USER)
    assert (estimated.model_extra or {})["_metadata"]["usage_estimated"] is True
    assert estimated.usage is not None and estimated.usage.completion_tokens > 0
    reported = client.chat.completions.create(model="echo-paid", messages=USER)
    assert (reported.model_extra or {})["_metadata"]["usage_estimated"] is False

    stream = client.chat.completions.create(
        model="wire-no-usage",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    last = list(stream)[-1]
    assert last.usage is not None and (last.model_extra or {})["_metadata"]["usage_estimated"] is True


def test_token_id_prompts_and_inputs_where_the_model_takes_them(client: openai.OpenAI, http: httpx.Client) -> None:
    text = client.completions.create(model="echo-paid", prompt=[101, 2023, 102])
    assert text.choices[0].text == "echo: 101 2023 102"
    assert text.usage is not None and text.usage.prompt_tokens == 3
    batch = client.completions.create(model="echo-paid", prompt=[[1, 2], [3]])
    assert batch.choices[0].text == "echo: 1 2 3"

    vectors = client.embeddings.create(model="echo-embed", input=[[1, 2, 3], [4, 5]], encoding_format="float")
    assert len(vectors.data) == 2 and vectors.usage.prompt_tokens == 5

    key = _key(client)
    for route, body in (
        ("/v1/completions", {"model": "echo-free", "prompt": [1, 2, 3]}),
        ("/v1/embeddings", {"model": "embed-plain", "input": [[1, 2, 3]]}),
    ):
        reply = http.post(route, json=body, headers=bearer(key))
        assert reply.status_code == 400, reply.text
        assert "token_ids" in reply.json()["error"]["message"]
    bad = http.post("/v1/completions", json={"model": "echo-paid", "prompt": [1, -2]}, headers=bearer(key))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "prompt"


def test_dimensions_are_honoured_or_refused(client: openai.OpenAI, http: httpx.Client) -> None:
    vectors = client.embeddings.create(model="echo-embed", input="a b", dimensions=4, encoding_format="float")
    assert len(vectors.data[0].embedding) == 4
    refused = http.post(
        "/v1/embeddings", json={"model": "embed-plain", "input": "a b", "dimensions": 4}, headers=bearer(_key(client))
    )
    assert refused.status_code == 400 and "dimensions" in refused.json()["error"]["message"]


def test_base64_asked_base64_returned(client: openai.OpenAI, http: httpx.Client, upstream: httpx.Client) -> None:
    key, model = _key(client), "echo-embed"
    body = {"model": model, "input": "a b", "dimensions": 6}
    floats = http.post("/v1/embeddings", json=body, headers=bearer(key)).json()["data"][0]["embedding"]
    try:
        for quirks in (["float_only"], []):  # an upstream that ignores encoding_format, and one that honours it
            control(upstream, model="demo-embed", quirks=quirks)
            reply = http.post("/v1/embeddings", json={**body, "encoding_format": "base64"}, headers=bearer(key))
            assert reply.status_code == 200, reply.text
            encoded = reply.json()["data"][0]["embedding"]
            assert isinstance(encoded, str)
            assert list(struct.unpack("<6f", base64.b64decode(encoded))) == pytest.approx(floats)
    finally:
        control(upstream, model="demo-embed", quirks=[])
    # The SDK asks for base64 and decodes it itself.
    assert client.embeddings.create(model=model, input="a b", dimensions=6).data[0].embedding == pytest.approx(floats)


def _key(client: openai.OpenAI) -> str:
    return str(client.api_key)
