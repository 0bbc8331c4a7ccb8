"""The demo upstream's `/v1/responses` through the official openai SDK: the echo, the token rule, the typed
stream ending with `response.completed` and its usage, `max_output_tokens`, `usage_details` and `cut-after-N`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from services.demo_upstream import Upstream, start_upstream


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = await start_upstream(chunks=3)
    yield server
    await server.close()


@pytest.fixture
async def client(upstream: Upstream) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=upstream.base_url, api_key="sk-demo", max_retries=0) as sdk:
        yield sdk


async def test_create_echoes_and_counts_words(client: openai.AsyncOpenAI, upstream: Upstream) -> None:
    reply = await client.responses.create(model="demo-echo", instructions="be brief", input="hello there world")
    assert reply.output_text == "echo: hello there world" and reply.status == "completed"
    assert reply.usage is not None
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (5, 4)
    assert upstream.stats["requests"]["/v1/responses demo-echo"] == 1
    short = await client.responses.create(model="demo-echo", input="one two three four", max_output_tokens=2)
    assert short.output_text == "echo: one" and short.status == "incomplete"
    assert short.incomplete_details is not None and short.incomplete_details.reason == "max_output_tokens"


async def test_stream_sends_the_typed_events_with_usage_last(client: openai.AsyncOpenAI, upstream: Upstream) -> None:
    upstream.control(model="demo-echo", usage_details={"input_tokens_details": {"cached_tokens": 1}})
    async with client.responses.stream(model="demo-echo", input="stream me please") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 3
    assert final.output_text == "echo: stream me please"
    assert final.usage is not None and final.usage.input_tokens_details.cached_tokens == 1


async def test_cut_after_stops_before_completed(client: openai.AsyncOpenAI) -> None:
    kinds: list[str] = []
    with pytest.raises(openai.APIError):
        async with client.responses.stream(model="cut-after-1", input="a b c d e f") as stream:
            async for event in stream:
                kinds.append(event.type)
    assert kinds.count("response.output_text.delta") == 1
    assert "response.completed" not in kinds
