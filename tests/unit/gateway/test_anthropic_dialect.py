"""The Messages dialect on its own: a request onto chat, chat's answer and stream back, errors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.gateway.dialects.anthropic import Stream, error_body, reply, translate
from services.runtime.errors import DomainError
from tollgate.router.v1 import router_pb2

BASE: dict[str, Any] = {"model": "m", "max_tokens": 10}


def test_system_blocks_tools_and_tool_results_map_onto_chat() -> None:
    chat = translate(
        {
            **BASE,
            "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": "Bash", "input_schema": {"type": "object"}, "defer_loading": True}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "messages": [
                {"role": "user", "content": "run it"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hm", "signature": "s"},
                        {"type": "text", "text": "ok"},
                        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "and then?"},
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a b", "is_error": True},
                    ],
                },
            ],
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u"},
            "thinking": {"type": "enabled", "budget_tokens": 2000},
        }
    )
    assert chat["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "run it"},
        {
            "role": "assistant",
            "content": "ok",
            "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "Bash", "arguments": '{"command":"ls"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "[tool error]\na b"},
        {"role": "user", "content": "and then?"},
    ]
    assert chat["tools"] == [{"type": "function", "function": {"name": "Bash", "parameters": {"type": "object"}}}]
    assert chat["tool_choice"] == "required" and chat["parallel_tool_calls"] is False
    assert chat["stop"] == ["END"] and chat["user"] == "u" and chat["max_tokens"] == 10
    assert "thinking" not in chat


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"api_base": "http://x"}, "api_base"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}]}, None),
        ({"messages": [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "x"}]}]}, None),
    ],
)
def test_what_cannot_be_mapped_is_refused_naming_the_field(extra: dict[str, Any], param: str | None) -> None:
    with pytest.raises(DomainError) as refused:
        translate({**BASE, "messages": [{"role": "user", "content": "x"}], **extra})
    assert refused.value.code == "invalid_request"
    if param is not None:
        assert refused.value.param == param


def test_count_tokens_needs_no_max_tokens_and_never_streams() -> None:
    chat = translate({"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}, counting=True)
    assert "max_tokens" not in chat and "stream" not in chat


def test_a_chat_reply_becomes_a_message() -> None:
    outcome = router_pb2.Outcome(model="cat-id", prompt_tokens=30, completion_tokens=7)
    chat = {
        "id": "chatcmpl-1",
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {
                    "content": "calling",
                    "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": '{"a": 1}'}}],
                },
            }
        ],
        "usage": {"prompt_tokens_details": {"cached_tokens": 10}},
    }
    message = reply(chat, outcome)
    assert message["id"].startswith("msg_") and message["model"] == "cat-id"
    assert message["content"] == [
        {"type": "text", "text": "calling"},
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {
        "input_tokens": 20,
        "output_tokens": 7,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 10,
    }
    truncated = {"choices": [{"finish_reason": "length", "message": {"content": "x"}}]}
    assert reply(truncated, outcome)["stop_reason"] == "max_tokens"


def _events(frames: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in frames:
        kind, data = frame.decode().strip().split("\n")
        out.append((kind.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))))
    return out


def test_a_stream_opens_and_closes_blocks_as_chat_deltas_change_kind() -> None:
    stream = Stream({"model": "m"})
    frames = stream.chunk({"id": "c", "choices": [{"delta": {"content": "hi"}}]})
    frames += stream.chunk(
        {
            "choices": [
                {"delta": {"tool_calls": [{"index": 0, "id": "t1", "function": {"name": "f", "arguments": "{"}}]}}
            ]
        }
    )
    frames += stream.chunk({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}}]})
    frames += stream.chunk({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]})
    frames += stream.finished(router_pb2.Outcome(prompt_tokens=3, completion_tokens=4))
    events = _events(frames)
    assert [kind for kind, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[5][1]["content_block"] == {"type": "tool_use", "id": "t1", "name": "f", "input": {}}
    assert events[6][1] == {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": "{"},
    }
    assert events[9][1]["delta"]["stop_reason"] == "tool_use"
    assert events[9][1]["usage"]["input_tokens"] == 3 and events[9][1]["usage"]["output_tokens"] == 4


def test_a_failed_stream_ends_with_an_anthropic_error_event() -> None:
    stream = Stream({"model": "m"})
    stream.chunk({"choices": [{"delta": {"content": "par"}}]})
    kind, data = _events(stream.failed({"error": {"message": "upstream died", "code": "provider_error"}}))[-1]
    assert kind == "error"
    assert data == {"type": "error", "error": {"type": "api_error", "message": "upstream died"}}
    assert stream.finished(router_pb2.Outcome(prompt_tokens=1)) == []  # the outcome only settles it


def test_error_types_follow_the_status() -> None:
    assert error_body(DomainError("insufficient_credits", "no"))["error"]["type"] == "billing_error"
    assert error_body(DomainError("provider_unavailable", "no"))["error"]["type"] == "overloaded_error"
    assert error_body(DomainError("idempotency_key_reused", "no"))["error"]["type"] == "invalid_request_error"
