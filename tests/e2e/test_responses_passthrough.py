"""`/v1/responses` passed through to an upstream that serves it (`responses: true`), through the official openai
SDK: the upstream gets the Responses body on `/v1/responses`, the answer is charged exactly from its Responses
usage, steering fields are refused and unknown ones dropped, a cut stream is charged for what was delivered,
stored responses stay the gateway's (and each user's own); usage rows name the client API they came through."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from services.launcher import Suite
from tests.e2e.support import balance_micro, bearer, cost_micro, create_key, upstream_count, usage_rows, words

PRICE = (0.01, 0.02)  # echo-responses' catalog price, credits per 1k input / output tokens
UPSTREAM_MODEL = "demo-echo"


def sdk(suite: Suite, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=suite.base_url, api_key=key, max_retries=0, timeout=30)


def last_body(upstream: httpx.Client, model: str = UPSTREAM_MODEL) -> dict[str, Any]:
    body: dict[str, Any] = upstream.get("/_stats").json()["last_bodies"][model]
    return body


@pytest.fixture
def user(suite: Suite) -> str:
    return create_key(suite, f"pass-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def details(upstream: httpx.Client) -> Iterator[None]:
    """Cached input and reasoning output reported in the Responses usage."""
    spec = {"input_tokens_details": {"cached_tokens": 2}, "output_tokens_details": {"reasoning_tokens": 1}}
    upstream.post("/_control", json={"model": UPSTREAM_MODEL, "usage_details": spec})
    yield
    upstream.post("/_control", json={"model": UPSTREAM_MODEL, "usage_details": {}})


def test_create_is_passed_through_and_charged_from_the_responses_usage(
    suite: Suite, http: httpx.Client, upstream: httpx.Client, user: str, details: None
) -> None:
    before = balance_micro(http, user)
    chats = upstream_count(upstream, "/v1/chat/completions", UPSTREAM_MODEL)
    passed = upstream_count(upstream, "/v1/responses", UPSTREAM_MODEL)
    with sdk(suite, user) as client:
        response = client.responses.create(
            model="echo-responses",
            instructions="answer briefly",
            input="say hello to the upstream",
            max_output_tokens=50,
            metadata={"ticket": "7"},
            extra_body={"frobnicate": True},
        )
    assert upstream_count(upstream, "/v1/responses", UPSTREAM_MODEL) == passed + 1
    assert upstream_count(upstream, "/v1/chat/completions", UPSTREAM_MODEL) == chats
    sent = last_body(upstream)
    assert sent["input"] == "say hello to the upstream"
    assert sent["instructions"] == "answer briefly" and sent["max_output_tokens"] == 50
    assert sent["store"] is False  # the gateway keeps stored responses
    assert not {"frobnicate", "metadata", "stream", "messages"} & sent.keys()
    assert response.output_text == "echo: say hello to the upstream"
    assert response.model == "echo-responses" and response.to_dict()["store"] is True
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens == words("answer briefly say hello to the upstream")
    assert usage.output_tokens == words(response.output_text)
    assert usage.input_tokens_details.cached_tokens == 2 and usage.output_tokens_details.reasoning_tokens == 1
    charged = before - balance_micro(http, user)
    assert charged == cost_micro(usage.input_tokens, usage.output_tokens, *PRICE) > 0
    (row,) = usage_rows(http, user, 1)
    assert row["route"] == "responses" and row["model"] == "echo-responses" and row["status"] == "ok"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (usage.input_tokens, usage.output_tokens)
    assert (row["cache_read_tokens"], row["reasoning_tokens"]) == (2, 1)
    assert row["cost_micro"] == charged


def test_stream_relays_the_upstream_events_and_charges_exactly(
    suite: Suite, http: httpx.Client, upstream: httpx.Client, user: str
) -> None:
    before = balance_micro(http, user)
    passed = upstream_count(upstream, "/v1/responses", UPSTREAM_MODEL)
    with (
        sdk(suite, user) as client,
        client.responses.stream(model="echo-responses", input="stream these words back") as stream,
    ):
        events = list(stream)
        final = stream.get_final_response()
    assert upstream_count(upstream, "/v1/responses", UPSTREAM_MODEL) == passed + 1
    assert last_body(upstream)["stream"] is True
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == final.output_text == "echo: stream these words back"
    assert final.model == "echo-responses"
    assert final.usage is not None and final.usage.output_tokens == words(text)
    charged = before - balance_micro(http, user)
    assert charged == cost_micro(final.usage.input_tokens, final.usage.output_tokens, *PRICE) > 0


def test_steering_fields_hosted_tools_and_upstream_references_are_refused_before_any_call(
    suite: Suite, upstream: httpx.Client, user: str
) -> None:
    passed = upstream_count(upstream, "/v1/responses", UPSTREAM_MODEL)
    with sdk(suite, user) as client:
        with pytest.raises(openai.BadRequestError) as steering:
            client.responses.create(
                model="echo-responses", input="hi", extra_body={"base_url": "http://attacker.invalid/v1"}
            )
        with pytest.raises(openai.BadRequestError) as hosted:
            client.responses.create(
                model="echo-responses", input="hi", tools=[{"type": "code_interpreter", "container": {"type": "auto"}}]
            )
        with pytest.raises(openai.BadRequestError) as reference:  # items the platform's account holds upstream
            client.responses.create(model="echo-responses", input=[{"type": "item_reference", "id": "msg_1"}])
        with pytest.raises(openai.BadRequestError) as uploaded:
            client.responses.create(
                model="echo-responses",
                input=[{"role": "user", "content": [{"type": "input_file", "file_id": "file-platform-owned"}]}],
            )
    assert steering.value.body["param"] == "base_url"  # type: ignore[index]
    assert reference.value.body["param"] == "input[0].type"  # type: ignore[index]
    assert uploaded.value.body["param"] == "input[0].content[0].file_id"  # type: ignore[index]
    assert hosted.value.body["param"] == "tools[0]"  # type: ignore[index]
    assert upstream_count(upstream, "/v1/responses", UPSTREAM_MODEL) == passed


def test_a_stream_cut_before_completed_ends_with_an_error_and_is_charged_for_what_came(
    suite: Suite, http: httpx.Client, user: str
) -> None:
    before = balance_micro(http, user)
    body = {"model": "echo-responses-cut", "input": "one two three four five six seven eight", "stream": True}
    kinds: list[str] = []
    with http.stream("POST", "/v1/responses", json=body, headers=bearer(user)) as reply:
        assert reply.status_code == 200
        for line in reply.iter_lines():
            if line.startswith("event: "):
                kinds.append(line.removeprefix("event: "))
    assert "response.output_text.delta" in kinds
    assert "response.completed" not in kinds
    assert kinds[-2:] == ["error", "response.failed"]
    (row,) = usage_rows(http, user, 1)
    charged = before - balance_micro(http, user)
    assert row["status"] == "partial" and row["route"] == "responses"
    assert row["completion_tokens"] > 0 and row["cost_micro"] == charged > 0


def test_stored_responses_stay_the_gateways_and_their_owners(suite: Suite, upstream: httpx.Client, user: str) -> None:
    other = create_key(suite, f"pass-other-{uuid.uuid4().hex[:8]}")
    with sdk(suite, user) as client, sdk(suite, other) as intruder:
        first = client.responses.create(model="echo-responses", input="remember the word cobalt")
        assert client.responses.retrieve(first.id).output_text == first.output_text
        with pytest.raises(openai.NotFoundError):
            intruder.responses.retrieve(first.id)
        with pytest.raises(openai.NotFoundError):
            intruder.responses.create(model="echo-responses", input="what was it?", previous_response_id=first.id)
        second = client.responses.create(model="echo-responses", input="what was it?", previous_response_id=first.id)
        sent = last_body(upstream)
        assert "previous_response_id" not in sent and sent["store"] is False
        assert [i.get("role") for i in sent["input"]] == ["user", "assistant", "user"]
        assert not any("id" in i for i in sent["input"])
        assert second.previous_response_id == first.id
        client.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(first.id)


def test_usage_rows_name_the_client_api(suite: Suite, http: httpx.Client, user: str) -> None:
    with sdk(suite, user) as client:
        client.responses.create(model="echo-paid", input="translated onto chat", store=False)
        client.chat.completions.create(model="echo-paid", messages=[{"role": "user", "content": "plain chat"}])
    messages = http.post(
        "/v1/messages",
        json={"model": "echo-paid", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": user},
    )
    assert messages.status_code == 200, messages.text
    rows = usage_rows(http, user, 3)
    assert sorted(r["route"] for r in rows) == ["chat", "messages", "responses"]
