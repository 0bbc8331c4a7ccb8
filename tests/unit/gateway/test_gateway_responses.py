"""The Responses dialect on its own: chat chunks in, the typed events out, in an order the SDK accepts."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.gateway.dialects.responses import Responses
from services.runtime.errors import DomainError
from tollgate.router.v1 import router_pb2


def _events(frames: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for frame in frames:
        head, data = frame.split(b"\ndata: ")
        event = orjson.loads(data)
        assert head == b"event: " + event["type"].encode()
        out.append(event)
    return out


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_text_then_two_tool_calls_stream_as_ordered_items() -> None:
    dialect = Responses()
    dialect.chat_body(
        {
            "input": "hi",
            "stream": True,
            "tools": [
                {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "go", "parameters": {}}]}
            ],
        }
    )
    stream = dialect.translation({})
    frames = stream.chunk(_chunk({"role": "assistant", "content": "let me "}))
    frames += stream.chunk(_chunk({"content": "look"}))
    frames += stream.chunk(
        _chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "ns__go", "arguments": '{"a"'},
                    }
                ]
            }
        )
    )
    frames += stream.chunk(
        _chunk(
            {
                "tool_calls": [
                    {"index": 1, "id": "call_b", "type": "custom", "custom": {"name": "patch", "input": "*** x"}}
                ]
            }
        )
    )
    frames += stream.chunk(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}, "tool_calls"))
    frames += stream.chunk(
        {
            "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 2}},
        }
    )
    frames += stream.finished(router_pb2.Outcome(prompt_tokens=5, completion_tokens=7))
    events = _events(frames)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert kinds.count("response.output_item.added") == kinds.count("response.output_item.done") == 3
    final = events[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["message", "function_call", "custom_tool_call"]
    assert final["output"][0]["content"][0]["text"] == "let me look"
    call = final["output"][1]
    assert (call["namespace"], call["name"], call["arguments"], call["call_id"]) == ("ns", "go", '{"a":1}', "call_a")
    assert final["output"][2]["input"] == "*** x"
    assert final["usage"]["input_tokens_details"] == {"cached_tokens": 2}
    assert final["usage"]["total_tokens"] == 12
    assert dialect.result == final
    added = {e["output_index"]: e["item"]["id"] for e in events if e["type"] == "response.output_item.added"}
    done = {e["output_index"]: e["item"]["id"] for e in events if e["type"] == "response.output_item.done"}
    assert added == done


def test_a_provider_error_mid_stream_fails_the_response() -> None:
    dialect = Responses()
    dialect.chat_body({"input": "hi", "stream": True})
    stream = dialect.translation({})
    frames = stream.chunk(_chunk({"content": "par"}))
    frames += stream.failed({"error": {"message": "the stream broke off", "code": "provider_error", "param": None}})
    events = _events(frames)
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-1]["response"]["error"] == {"code": "provider_error", "message": "the stream broke off"}
    assert dialect.result is None


def test_length_makes_an_incomplete_response() -> None:
    dialect = Responses()
    dialect.chat_body({"input": "hi", "max_output_tokens": 1})
    chat = {
        "model": "m",
        "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "echo:"}}],
    }
    reply = dialect.reply(chat, router_pb2.Outcome(prompt_tokens=1, completion_tokens=1))
    assert reply["status"] == "incomplete"
    assert reply["incomplete_details"] == {"reason": "max_output_tokens"}


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]}, "input[0].arguments"),
        ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]}, "input[0].content[0].image_url"),
        ({"input": "x", "tool_choice": {"type": "file_search"}}, "tool_choice"),
        (
            {"input": "x", "tools": [{"type": "namespace", "name": "n", "tools": [{"type": "custom"}]}]},
            "tools[0].tools[0]",
        ),
    ],
)
def test_what_chat_cannot_carry_is_refused_naming_it(payload: dict[str, Any], param: str) -> None:
    with pytest.raises(DomainError) as refused:
        Responses().chat_body(payload)
    assert refused.value.param == param
