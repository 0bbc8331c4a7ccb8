"""Anthropic prompt caching through the litellm adapter: `cache_control` on message parts reaches the provider,
and the cache's read and write tokens come back as parts of the prompt, priced at the catalog's cache prices.

The provider is a fake Anthropic Messages API on localhost that records what it was sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from services.router import normalize
from services.router.adapters.litellm import LiteLLMAdapter
from services.router.catalog import parse
from services.router.pricing import Usage, charge_micro

REPLY = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-test",
    "content": [{"type": "text", "text": "cached hello"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 12,
        "output_tokens": 5,
        "cache_read_input_tokens": 900,
        "cache_creation_input_tokens": 300,
    },
}


class FakeAnthropic:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        self.bodies.append(orjson.loads(await reader.readexactly(length)))
        payload = orjson.dumps(REPLY)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
            + f"content-length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        writer.close()


@pytest.fixture
async def anthropic() -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    async with server:
        yield fake


# litellm imports its Anthropic code lazily, and that import can warn (a UserWarning from its own models) when it
# first happens inside this test; with warnings as errors the adapter would report the warning as the failure.
@pytest.mark.filterwarnings("ignore::UserWarning")
async def test_cache_control_reaches_anthropic_and_its_cache_tokens_are_priced(anthropic: FakeAnthropic) -> None:
    catalog = parse(
        f"""
version: 1
providers:
  anthropic: {{api_base: "http://127.0.0.1:{anthropic.port}", adapter: litellm, litellm_provider: anthropic}}
models:
  - {{id: claude, provider: anthropic, upstream: claude-test, tier: PROFESSIONAL, max_output_tokens: 100,
     price: {{input: 0.003, output: 0.015, cache_read: 0.0003, cache_write: 0.00375}}}}
""",
        env={},
    )
    model = catalog.models["claude"]
    long_context = "the handbook " * 200
    payload = {
        "model": "claude",
        "max_tokens": 100,
        "messages": [
            {
                "role": "system",
                "content": [{"type": "text", "text": long_context, "cache_control": {"type": "ephemeral"}}],
            },
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
        ],
    }
    reply = await LiteLLMAdapter().call("chat", model, payload, "sk-ant-test", 5)
    sent = anthropic.bodies[-1]
    system = sent["system"] if isinstance(sent["system"], list) else []
    assert [part.get("cache_control") for part in system] == [{"type": "ephemeral"}]
    user_parts = sent["messages"][-1]["content"]
    assert user_parts[-1]["cache_control"] == {"type": "ephemeral"}
    used = normalize.usage_of(reply.body)
    # litellm counts the cache's tokens into prompt_tokens; they are its parts here.
    assert used == Usage(prompt=12 + 900 + 300, completion=5, cache_read=900, cache_write=300)
    assert charge_micro(model, used) == -(-(12 * 3000 + 900 * 300 + 300 * 3750 + 5 * 15_000) // 1000)
