"""The official anthropic SDK against the running suite: `/v1/messages` whole and streamed, tool use, images,
system prompts, count_tokens, x-api-key, Anthropic-shaped errors, exact charges, and what a normal user key
could try through the new fields.
"""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from services.launcher import Suite
from tests.e2e.support import balance_micro, bearer, cost_micro, create_key, words

PAID = (0.01, 0.02)  # echo-paid's (and echo-vision's) catalog price, credits per 1k input / output tokens
BASH = {
    "name": "Bash",
    "description": "Run a shell command",
    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
}
# A 1x1 PNG.
PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
    )
).decode()


@pytest.fixture(scope="module")
def sdk(suite: Suite, keys: dict[str, str]) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=f"http://{suite.host}:{suite.ports.gateway}", api_key=keys["demo_key"], max_retries=0, timeout=30
    ) as client:
        yield client


def _charged_for(usage: Any) -> int:
    return cost_micro(usage.input_tokens + usage.cache_read_input_tokens, usage.output_tokens, *PAID)


def _last_body(upstream: httpx.Client, model: str = "demo-echo") -> dict[str, Any]:
    body: dict[str, Any] = upstream.get("/_stats").json()["last_bodies"][model]
    return body


def test_create_with_a_system_prompt_is_charged_exactly(
    sdk: Any, http: httpx.Client, keys: dict[str, str], upstream: httpx.Client
) -> None:
    before = balance_micro(http, keys["demo_key"])
    message = sdk.messages.create(
        model="echo-paid",
        max_tokens=200,
        system=[{"type": "text", "text": "answer very briefly"}],
        messages=[{"role": "user", "content": "hello there gateway"}],
        metadata={"user_id": "end-user-42"},
    )
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "echo: hello there gateway"
    assert message.stop_reason == "end_turn" and message.model == "echo-paid"
    # The demo upstream counts the words of every message, the system prompt's included.
    assert (message.usage.input_tokens, message.usage.output_tokens) == (3 + 3, words("echo: hello there gateway"))
    assert before - balance_micro(http, keys["demo_key"]) == cost_micro(6, 4, *PAID)
    sent = _last_body(upstream)
    assert sent["messages"][0] == {"role": "system", "content": "answer very briefly"}
    assert sent["max_tokens"] == 200 and sent["user"] == "end-user-42"


def test_stream_events_in_anthropic_order_and_charged_exactly(
    sdk: Any, http: httpx.Client, keys: dict[str, str]
) -> None:
    before = balance_micro(http, keys["demo_key"])
    with sdk.messages.stream(
        model="echo-paid", max_tokens=200, messages=[{"role": "user", "content": "stream me some words"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: stream me some words"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (4, 5)
    assert before - balance_micro(http, keys["demo_key"]) == cost_micro(4, 5, *PAID)

    # On the wire: `event:` lines as Anthropic sends them, in its order, and no [DONE].
    body = {"model": "echo-paid", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    raw = http.post("/v1/messages", json=body, headers={"x-api-key": keys["demo_key"]})
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/event-stream")
    kinds = [line.removeprefix("event: ") for line in raw.text.splitlines() if line.startswith("event: ")]
    assert kinds[:3] == ["message_start", "ping", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[3:-3]) == {"content_block_delta"}
    assert "[DONE]" not in raw.text


def test_tool_use_and_tool_results_round_trip(
    sdk: Any, http: httpx.Client, keys: dict[str, str], upstream: httpx.Client
) -> None:
    script = [{"tool_calls": [{"name": "Bash", "arguments": {"command": "echo hi"}}]}, {"content": "it said hi"}]
    upstream.post("/_control", json={"model": "demo-echo", "script": script})
    before = balance_micro(http, keys["demo_key"])
    asked = [{"role": "user", "content": "run echo hi"}]
    with sdk.messages.stream(model="echo-paid", max_tokens=300, tools=[BASH], messages=asked) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    call = first.content[-1]
    assert call.type == "tool_use" and call.name == "Bash" and call.input == {"command": "echo hi"}
    sent = _last_body(upstream)
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {"name": "Bash", "parameters": BASH["input_schema"], "description": "Run a shell command"},
        }
    ]

    result = {"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "hi"}]}
    second = sdk.messages.create(
        model="echo-paid",
        max_tokens=300,
        tools=[BASH],
        tool_choice={"type": "auto"},
        messages=[*asked, {"role": "assistant", "content": first.content}, {"role": "user", "content": [result]}],
    )
    assert second.content[0].text == "it said hi"
    turns = _last_body(upstream)["messages"]
    assert turns[1]["tool_calls"][0]["id"] == call.id
    assert orjson.loads(turns[1]["tool_calls"][0]["function"]["arguments"]) == {"command": "echo hi"}
    assert turns[2] == {"role": "tool", "tool_call_id": call.id, "content": "hi"}
    assert _last_body(upstream)["tool_choice"] == "auto"
    charged = before - balance_micro(http, keys["demo_key"])
    assert charged == _charged_for(first.usage) + _charged_for(second.usage) > 0


def test_count_tokens_is_free_and_grows_with_the_prompt(sdk: Any, http: httpx.Client, keys: dict[str, str]) -> None:
    before = balance_micro(http, keys["demo_key"])
    short = sdk.messages.count_tokens(model="echo-paid", messages=[{"role": "user", "content": "hello"}])
    long = sdk.messages.count_tokens(
        model="echo-paid",
        system="a system prompt",
        tools=[BASH],
        messages=[{"role": "user", "content": "hello " * 200}],
    )
    assert 0 < short.input_tokens < long.input_tokens
    assert long.input_tokens >= 200  # an upper bound: never fewer than the words sent
    assert balance_micro(http, keys["demo_key"]) == before


def test_bearer_and_x_api_key_both_authenticate_and_a_bad_key_is_an_anthropic_401(
    suite: Suite, keys: dict[str, str], http: httpx.Client
) -> None:
    base = f"http://{suite.host}:{suite.ports.gateway}"
    body: dict[str, Any] = {"model": "echo-paid", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    with anthropic.Anthropic(base_url=base, auth_token=keys["demo_key"], api_key=None, max_retries=0) as by_bearer:
        assert by_bearer.messages.create(**body).content
    bad = anthropic.Anthropic(base_url=base, api_key="tg-not-a-real-key-0123456789abcdef", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as refused:
        bad.messages.create(**body)
    error: Any = refused.value.body
    assert refused.value.status_code == 401
    assert error["type"] == "error" and error["error"]["type"] == "authentication_error"
    assert "tg-not-a-real-key" not in refused.value.response.text
    missing = http.post("/v1/messages", json=body)
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "echo-paid", "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
        ({"model": "echo-paid", "max_tokens": 5, "messages": []}, "messages"),
        ({"model": "echo-paid", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "role"),
        (
            {"model": "echo-paid", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "api_base": "x"},
            "api_base",
        ),
        (
            {
                "model": "echo-paid",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "server tool",
        ),
        (
            {"model": "echo-paid", "max_tokens": 5, "temperature": 1.5, "messages": [{"role": "user", "content": "x"}]},
            "temperature",
        ),
    ],
)
def test_bad_bodies_are_anthropic_shaped_400s(
    http: httpx.Client, keys: dict[str, str], body: dict[str, Any], param: str
) -> None:
    reply = http.post(
        "/v1/messages", json=body, headers={"x-api-key": keys["demo_key"], "anthropic-version": "2023-06-01"}
    )
    assert reply.status_code == 400, reply.text
    error = reply.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert param in error["error"]["message"]
    assert "Traceback" not in reply.text


def test_other_errors_are_anthropic_shaped(suite: Suite, http: httpx.Client, keys: dict[str, str]) -> None:
    headers = {"x-api-key": keys["demo_key"]}
    unknown = http.post(
        "/v1/messages",
        json={"model": "no-such-model", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
        headers=headers,
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"
    wrong_method = http.get("/v1/messages", headers=headers)
    assert wrong_method.status_code == 405 and wrong_method.json()["type"] == "error"
    huge = http.post("/v1/messages", content=b"x" * (10 * 1024 * 1024 + 1), headers=headers)
    assert huge.status_code == 413 and huge.json()["error"]["type"] == "request_too_large"

    limited = create_key(suite, f"msg-rpm-{uuid.uuid4().hex[:8]}", rpm=1)
    body = {"model": "echo-free", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    assert http.post("/v1/messages", json=body, headers={"x-api-key": limited}).status_code == 200
    over = http.post("/v1/messages", json=body, headers={"x-api-key": limited})
    assert over.status_code == 429 and over.json()["error"]["type"] == "rate_limit_error"
    assert "retry-after" in over.headers


def test_stuffed_fields_never_reach_the_provider(
    http: httpx.Client, keys: dict[str, str], upstream: httpx.Client
) -> None:
    """Extra keys inside blocks, tools and metadata are not copied: only what the mapping names travels."""
    body = {
        "model": "echo-paid",
        "max_tokens": 20,
        "metadata": {"user_id": "u1", "api_base": "http://evil.example/v1"},
        "system": [{"type": "text", "text": "sys", "extra_headers": {"x-evil": "1"}}],
        "tools": [{**BASH, "api_key": "sk-evil-tool-key-0123456789", "strict": "evil"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "stuffed", "base_url": "http://evil.example"}]},
            {"role": "assistant", "content": "ok", "name": "evil"},
            {"role": "user", "content": "again", "api_key": "sk-evil"},
        ],
        "thinking": {"type": "enabled", "budget_tokens": 1024, "api_base": "http://evil.example"},
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "top_k": 5,
    }
    reply = http.post("/v1/messages", json=body, headers={"x-api-key": keys["demo_key"]})
    assert reply.status_code == 200, reply.text
    sent = orjson.dumps(_last_body(upstream)).decode()
    assert "evil" not in sent and "thinking" not in sent and "context_management" not in sent and "top_k" not in sent
    assert "stuffed" in sent


def test_huge_max_tokens_is_held_or_refused_as_chat_is(suite: Suite, http: httpx.Client) -> None:
    key = create_key(suite, f"msg-huge-{uuid.uuid4().hex[:8]}")
    before = balance_micro(http, key)
    prompt = [{"role": "user", "content": "hello"}]
    chat = http.post(
        "/v1/chat/completions",
        json={"model": "echo-paid", "max_tokens": 10_000_000, "messages": prompt},
        headers=bearer(key),
    )
    after_chat = balance_micro(http, key)
    messages = http.post(
        "/v1/messages",
        json={"model": "echo-paid", "max_tokens": 10_000_000, "messages": prompt},
        headers={"x-api-key": key},
    )
    assert messages.status_code == chat.status_code, (chat.text, messages.text)
    assert after_chat - balance_micro(http, key) == before - after_chat  # the same answer costs the same
    if messages.status_code != 200:
        assert messages.json()["type"] == "error"
    too_big = http.post(
        "/v1/messages",
        json={"model": "echo-paid", "max_tokens": 10_000_001, "messages": prompt},
        headers={"x-api-key": key},
    )
    assert too_big.status_code == 400 and too_big.json()["error"]["type"] == "invalid_request_error"


def _usage_rows(http: httpx.Client, key: str, wait: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        rows: list[dict[str, Any]] = http.get("/v1/usage", headers=bearer(key)).json()["data"]
        if rows and all(r["status"] != "pending" for r in rows):
            return rows
        time.sleep(0.05)
    raise AssertionError("no usage row was written")


def test_a_client_leaving_mid_stream_settles_what_was_used(
    suite: Suite, http: httpx.Client, upstream: httpx.Client
) -> None:
    key = create_key(suite, f"msg-leaver-{uuid.uuid4().hex[:8]}")
    before = balance_micro(http, key)
    upstream.post("/_control", json={"model": "demo-echo", "script": [{"content": "word " * 3000}]})
    raw = orjson.dumps(
        {"model": "echo-paid", "max_tokens": 4000, "stream": True, "messages": [{"role": "user", "content": "go on"}]}
    )
    head = (
        f"POST /v1/messages?beta=true HTTP/1.1\r\nHost: {suite.host}\r\nx-api-key: {key}\r\n"
        f"anthropic-version: 2023-06-01\r\nContent-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
    )
    with socket.create_connection((suite.host, suite.ports.gateway), timeout=10) as sock:
        sock.sendall(head.encode() + raw)
        assert b"message_start" in sock.recv(4096) + sock.recv(4096)
    rows = _usage_rows(http, key)
    assert len(rows) == 1
    charged = before - balance_micro(http, key)
    assert charged == int(rows[0]["cost_micro"]) > 0
    upstream.post("/_control", json={"model": "demo-echo", "script": []})


def test_images_reach_the_provider_as_image_parts(
    sdk: Any, http: httpx.Client, keys: dict[str, str], upstream: httpx.Client
) -> None:
    before = balance_micro(http, keys["demo_key"])
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}
    message = sdk.messages.create(
        model="echo-vision",
        max_tokens=100,
        messages=[{"role": "user", "content": [image, {"type": "text", "text": "what is this"}]}],
    )
    assert message.content[0].text == "echo: what is this"
    parts = _last_body(upstream)["messages"][0]["content"]
    assert parts[0] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}
    assert before - balance_micro(http, keys["demo_key"]) == _charged_for(message.usage)


def test_a_schema_nested_too_deeply_is_a_400_not_a_500(http: httpx.Client, keys: dict[str, str]) -> None:
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(300):  # 600 levels: read by the gateway, more than JSON is written with
        schema = {"type": "object", "properties": {"a": schema}}
    body = {
        "model": "echo-paid",
        "max_tokens": 5,
        "tools": [{"name": "deep", "input_schema": schema}],
        "messages": [{"role": "user", "content": "x"}],
    }
    reply = http.post("/v1/messages", content=json.dumps(body).encode(), headers={"x-api-key": keys["demo_key"]})
    assert reply.status_code == 400 and reply.json()["error"]["type"] == "invalid_request_error", reply.text


def test_a_stream_that_fails_after_it_started_ends_with_an_error_event(suite: Suite, http: httpx.Client) -> None:
    key = create_key(suite, f"msg-cut-{uuid.uuid4().hex[:8]}")
    before = balance_micro(http, key)
    body = {
        "model": "echo-cut",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "one two three four five six seven eight"}],
    }
    reply = http.post("/v1/messages", json=body, headers={"x-api-key": key})
    assert reply.status_code == 200
    frames = [block for block in reply.text.split("\n\n") if block.strip()]
    assert frames[0].startswith("event: message_start")
    kind, data = frames[-1].split("\n")
    assert kind == "event: error", reply.text
    error = orjson.loads(data.removeprefix("data: "))
    assert error["type"] == "error" and error["error"]["type"] in ("api_error", "overloaded_error")
    assert "message_stop" not in reply.text
    rows = _usage_rows(http, key)
    assert before - balance_micro(http, key) == sum(int(r["cost_micro"]) for r in rows)


def test_an_idempotency_key_replays_the_message_and_charges_once(suite: Suite, http: httpx.Client) -> None:
    key = create_key(suite, f"msg-idem-{uuid.uuid4().hex[:8]}")
    before = balance_micro(http, key)
    body = {"model": "echo-paid", "max_tokens": 50, "messages": [{"role": "user", "content": "only once please"}]}
    headers = {"x-api-key": key, "Idempotency-Key": f"msg-{uuid.uuid4().hex}"}
    first = http.post("/v1/messages", json=body, headers=headers)
    again = http.post("/v1/messages", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers.get("idempotent-replayed") == "true" and again.json() == first.json()
    assert first.json()["type"] == "message"
    assert before - balance_micro(http, key) == cost_micro(3, 4, *PAID)
    # The same key on chat completions is another request: the fingerprint names the route.
    chat = http.post("/v1/chat/completions", json={"model": "echo-paid", "messages": body["messages"]}, headers=headers)
    assert chat.status_code == 422, chat.text
