"""The Responses API through the official openai SDK against the running suite: create, stream, a tool round trip,
`previous_response_id`, GET and DELETE, each answer charged exactly as the chat completion it became."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import FunctionToolParam

from tests.e2e.support import balance_micro, bearer, cost_micro, words

PAID = (0.01, 0.02)  # echo-paid's catalog price, credits per 1k input / output tokens
UPSTREAM_MODEL = "demo-echo"
WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": False,
}


def last_body(upstream: httpx.Client) -> dict[str, Any]:
    body: dict[str, Any] = upstream.get("/_stats").json()["last_bodies"][UPSTREAM_MODEL]
    return body


def prompt_words(body: dict[str, Any]) -> int:
    """The demo upstream's token rule: the words of every message's text."""
    total = 0
    for message in body["messages"]:
        content = message.get("content")
        if isinstance(content, str):
            total += words(content)
        elif isinstance(content, list):
            total += sum(words(p["text"]) for p in content if p.get("type") == "text")
    return total


@pytest.fixture
def script(upstream: httpx.Client) -> Iterator[Any]:
    def scripted(*replies: dict[str, Any]) -> None:
        reply = upstream.post("/_control", json={"model": UPSTREAM_MODEL, "script": list(replies)})
        assert reply.status_code == 200, reply.text

    yield scripted
    upstream.post("/_control", json={"model": UPSTREAM_MODEL, "script": []})


def test_create_answers_translates_and_charges_exactly(
    client: openai.OpenAI, http: httpx.Client, upstream: httpx.Client, keys: dict[str, str]
) -> None:
    before = balance_micro(http, keys["demo_key"])
    response = client.responses.create(
        model="echo-paid",
        instructions="answer briefly",
        input="say hello to the responses api",
        max_output_tokens=50,
        metadata={"ticket": "42"},
        store=False,
    )
    assert response.output_text == "echo: say hello to the responses api"
    assert response.status == "completed"
    assert response.id.startswith("resp_")
    sent = last_body(upstream)
    assert sent["messages"] == [
        {"role": "system", "content": "answer briefly"},
        {"role": "user", "content": "say hello to the responses api"},
    ]
    assert sent["max_completion_tokens"] == 50
    assert not {"input", "instructions", "max_output_tokens", "metadata", "store"} & sent.keys()
    assert response.usage is not None
    assert response.usage.input_tokens == prompt_words(sent)
    assert response.usage.output_tokens == words(response.output_text)
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    charged = before - balance_micro(http, keys["demo_key"])
    assert charged == cost_micro(response.usage.input_tokens, response.usage.output_tokens, *PAID) > 0


def test_stream_emits_the_typed_events_the_sdk_accumulates_and_charges_exactly(
    client: openai.OpenAI, http: httpx.Client, upstream: httpx.Client, keys: dict[str, str]
) -> None:
    before = balance_micro(http, keys["demo_key"])
    with client.responses.stream(model="echo-paid", input="stream these words to me", store=False) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    for kind in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert kind in kinds
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == final.output_text == "echo: stream these words to me"
    assert final.usage is not None
    assert final.usage.input_tokens == prompt_words(last_body(upstream))
    assert final.usage.output_tokens == words(text)
    charged = before - balance_micro(http, keys["demo_key"])
    assert charged == cost_micro(final.usage.input_tokens, final.usage.output_tokens, *PAID) > 0


def test_a_tool_round_trip_through_previous_response_id(
    client: openai.OpenAI, http: httpx.Client, upstream: httpx.Client, keys: dict[str, str], script: Any
) -> None:
    script({"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}, {"content": "sunny in Paris"})
    before = balance_micro(http, keys["demo_key"])
    first = client.responses.create(model="echo-paid", input="what is the weather in Paris?", tools=[WEATHER])
    call = first.output[0]
    assert call.type == "function_call"
    assert (call.name, call.arguments) == ("get_weather", '{"city":"Paris"}')
    assert last_body(upstream)["tools"] == [
        {
            "type": "function",
            "function": {
                "name": WEATHER["name"],
                "description": WEATHER["description"],
                "parameters": WEATHER["parameters"],
                "strict": False,
            },
        }
    ]
    second = client.responses.create(
        model="echo-paid",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 24 degrees"}],
        tools=[WEATHER],
    )
    assert second.output_text == "sunny in Paris"
    assert second.previous_response_id == first.id
    sent = last_body(upstream)
    assert sent["messages"] == [
        {"role": "user", "content": "what is the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.call_id, "content": "sunny, 24 degrees"},
    ]
    assert first.usage is not None and second.usage is not None
    assert second.usage.input_tokens == prompt_words(sent)
    charged = before - balance_micro(http, keys["demo_key"])
    expected = cost_micro(first.usage.input_tokens, first.usage.output_tokens, *PAID)
    expected += cost_micro(second.usage.input_tokens, second.usage.output_tokens, *PAID)
    assert charged == expected


def test_a_streamed_tool_call_arrives_as_argument_deltas(client: openai.OpenAI, script: Any) -> None:
    script({"tool_calls": [{"name": "get_weather", "arguments": {"city": "Lyon"}}]})
    with client.responses.stream(model="echo-paid", input="weather in Lyon?", tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert deltas == '{"city":"Lyon"}'
    assert [e.type for e in events].count("response.function_call_arguments.done") == 1
    call = final.output[0]
    assert call.type == "function_call" and call.arguments == deltas and call.call_id.startswith("call_")


def test_stored_responses_are_read_continued_and_deleted(client: openai.OpenAI, upstream: httpx.Client) -> None:
    first = client.responses.create(model="echo-paid", input="remember the word teal")
    fetched = client.responses.retrieve(first.id)
    assert (fetched.id, fetched.output_text) == (first.id, "echo: remember the word teal")
    items = client.responses.input_items.list(first.id)
    assert [item.type for item in items.data] == ["message"]
    second = client.responses.create(model="echo-paid", previous_response_id=first.id, input="which word?")
    assert second.output_text == "echo: which word?"
    assert [m["role"] for m in last_body(upstream)["messages"]] == ["user", "assistant", "user"]
    assert last_body(upstream)["messages"][1]["content"] == "echo: remember the word teal"
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="echo-paid", previous_response_id=first.id, input="again")
    unstored = client.responses.create(model="echo-paid", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_json_schema_reasoning_and_length(client: openai.OpenAI, upstream: httpx.Client) -> None:
    schema: dict[str, object] = {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}
    response = client.responses.create(
        model="echo-paid",
        input="one two three four five six",
        max_output_tokens=2,
        reasoning={"effort": "low"},
        text={"format": {"type": "json_schema", "name": "word", "schema": schema, "strict": True}},
        store=False,
    )
    sent = last_body(upstream)
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "word", "schema": schema, "strict": True},
    }
    assert sent["reasoning_effort"] == "low"
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "echo: one"


def test_codex_shaped_request_is_translated(http: httpx.Client, upstream: httpx.Client, keys: dict[str, str]) -> None:
    """What Codex CLI sends (seen on a capture server): namespaced and hosted tools, reasoning, include, metadata."""
    body = {
        "model": "echo-paid",
        "stream": True,
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be a coding agent"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list the files"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
        ],
        "tools": [
            {
                "type": "function",
                "name": "exec_command",
                "strict": False,
                "parameters": {"type": "object"},
                "api_base": "http://evil.test",
            },
            {
                "type": "custom",
                "name": "apply_patch",
                "format": {"type": "grammar", "syntax": "lark", "definition": "x"},
            },
            {"type": "namespace", "name": "agents", "tools": [{"type": "function", "name": "spawn", "parameters": {}}]},
            {"type": "web_search", "external_web_access": False},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "session-1",
        "client_metadata": {"session_id": "session-1"},
    }
    with http.stream("POST", "/v1/responses", json=body, headers=bearer(keys["demo_key"])) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        text = "".join(reply.iter_text())
    assert "event: response.completed" in text and "[DONE]" not in text
    sent = last_body(upstream)
    assert [t.get("function", t.get("custom", {})).get("name") for t in sent["tools"]] == [
        "exec_command",
        "apply_patch",
        "agents__spawn",
    ]
    assert sent["tools"][0] == {
        "type": "function",
        "function": {"name": "exec_command", "strict": False, "parameters": {"type": "object"}},
    }
    assert sent["tools"][1]["type"] == "custom"
    assert sent["prompt_cache_key"] == "session-1"
    assert sent["parallel_tool_calls"] is True and sent["tool_choice"] == "auto"
    assert [m["role"] for m in sent["messages"]] == ["developer", "user"]
    assert not {"include", "client_metadata", "store", "reasoning"} & sent.keys()


def test_an_idempotent_retry_replays_the_same_response_uncharged(
    http: httpx.Client, keys: dict[str, str], upstream: httpx.Client
) -> None:
    headers = {**bearer(keys["demo_key"]), "Idempotency-Key": "responses-retry-1"}
    body = {"model": "echo-paid", "input": "charge me once"}
    calls = upstream.get("/_stats").json()["total"]
    before = balance_micro(http, keys["demo_key"])
    first = http.post("/v1/responses", json=body, headers=headers)
    second = http.post("/v1/responses", json=body, headers=headers)
    assert first.status_code == second.status_code == 200, second.text
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert upstream.get("/_stats").json()["total"] == calls + 1
    usage = first.json()["usage"]
    charged = before - balance_micro(http, keys["demo_key"])
    assert charged == cost_micro(usage["input_tokens"], usage["output_tokens"], *PAID)
