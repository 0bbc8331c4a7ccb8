"""The official openai SDK, sync and async, stream and not, against the running suite: content, usage, charge."""

from __future__ import annotations

import httpx
import openai

from services.launcher import Suite
from tests.e2e.support import balance_micro, cost_micro, words

PROMPT = "say hello to the gateway please"
PAID = (0.01, 0.02)  # echo-paid's catalog price, credits per 1k input / output tokens


def expected_usage(prompt: str = PROMPT) -> tuple[str, int, int]:
    reply = f"echo: {prompt}"
    return reply, words(prompt), words(reply)


def test_non_stream_answer_usage_and_exact_charge(
    client: openai.OpenAI, http: httpx.Client, keys: dict[str, str]
) -> None:
    before = balance_micro(http, keys["demo_key"])
    completion = client.chat.completions.create(model="echo-paid", messages=[{"role": "user", "content": PROMPT}])
    reply, prompt_tokens, completion_tokens = expected_usage()
    assert completion.choices[0].message.content == reply
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (prompt_tokens, completion_tokens)
    after = balance_micro(http, keys["demo_key"])
    assert before - after == cost_micro(prompt_tokens, completion_tokens, *PAID)


def test_stream_relays_chunks_usage_and_charges_exactly(
    client: openai.OpenAI, http: httpx.Client, keys: dict[str, str]
) -> None:
    before = balance_micro(http, keys["demo_key"])
    stream = client.chat.completions.create(
        model="echo-paid",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish, meta = "", None, None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
            meta = (chunk.model_extra or {}).get("_metadata")
    reply, prompt_tokens, completion_tokens = expected_usage()
    assert text == reply
    assert finish == "stop"
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (prompt_tokens, completion_tokens)
    charged = before - balance_micro(http, keys["demo_key"])
    assert charged == cost_micro(prompt_tokens, completion_tokens, *PAID)
    assert meta is not None
    assert (meta["provider_used"], meta["model_used"]) == ("fake", "echo-paid")
    assert round(meta["cost_incurred"] * 1_000_000) == charged


async def test_async_client_stream_and_non_stream(async_client: openai.AsyncOpenAI) -> None:
    reply, prompt_tokens, _ = expected_usage()
    completion = await async_client.chat.completions.create(
        model="echo-paid", messages=[{"role": "user", "content": PROMPT}]
    )
    assert completion.choices[0].message.content == reply
    assert completion.usage is not None and completion.usage.prompt_tokens == prompt_tokens

    stream = await async_client.chat.completions.create(
        model="echo-paid", messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert text == reply
    await async_client.close()


def test_free_model_is_not_charged(client: openai.OpenAI, http: httpx.Client, keys: dict[str, str]) -> None:
    before = balance_micro(http, keys["demo_key"])
    completion = client.chat.completions.create(model="echo-free", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "echo: hi"
    assert balance_micro(http, keys["demo_key"]) == before


def test_response_metadata_and_headers(suite: Suite, http: httpx.Client, keys: dict[str, str]) -> None:
    reply = http.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {keys['demo_key']}", "X-Request-Id": "e2e-meta-1"},
        json={"model": "echo-paid", "messages": [{"role": "user", "content": PROMPT}]},
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    meta = body["_metadata"]
    assert meta["provider_used"] == "fake"
    assert meta["model_used"] == "echo-paid"
    assert meta["byok"] is False
    _, prompt_tokens, completion_tokens = expected_usage()
    assert round(meta["cost_incurred"] * 1_000_000) == cost_micro(prompt_tokens, completion_tokens, *PAID)
    assert reply.headers["x-tollgate-provider"] == "fake"
    assert reply.headers["x-request-id"] == "e2e-meta-1"
    assert float(reply.headers["x-tollgate-cost"]) == meta["cost_incurred"]


def test_completions_and_embeddings(client: openai.OpenAI) -> None:
    text = client.completions.create(model="echo-paid", prompt="one two three")
    assert text.choices[0].text == "echo: one two three"
    vectors = client.embeddings.create(model="echo-embed", input=["alpha", "beta gamma"])
    assert len(vectors.data) == 2
    assert all(len(item.embedding) > 0 for item in vectors.data)
    assert vectors.usage.prompt_tokens == 3


def test_models_list_is_the_catalog(client: openai.OpenAI) -> None:
    ids = {model.id for model in client.models.list()}
    assert {"echo-paid", "echo-free", "echo-embed"} <= ids


def test_model_selection_explains_itself(http: httpx.Client, keys: dict[str, str]) -> None:
    reply = http.post(
        "/v1/models/select",
        headers={"Authorization": f"Bearer {keys['demo_key']}", "X-Power-Level": "eco"},
        json={"messages": [{"role": "user", "content": "hello"}]},
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["power_level"] == "ECO"
    assert body["model"] == "echo-free"
    assert body["provider"] == "fake-free"
    top = body["candidates"][0]
    assert (top["model"], top["tier"], top["estimated_cost"]) == ("echo-free", "FREE", 0)
    assert body["reason"]


def test_stream_headers_name_the_provider(http: httpx.Client, keys: dict[str, str]) -> None:
    body = {"model": "echo-paid", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with http.stream(
        "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {keys['demo_key']}"}
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers["x-tollgate-provider"] == "fake"
        assert reply.headers["x-tollgate-model"] == "echo-paid"
        lines = [line for line in reply.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert not any("_metadata" in line for line in lines)  # no usage asked for, no extra chunk
