"""Property: whatever the router accepts, whatever usage a provider may report for it, the charge fits the hold.

A fake provider receives exactly what the router sends (after the allow-list) and reports any usage within
what a provider may bill for it: input up to a provider-side bound computed here on its own (a byte-level
BPE over a chat template: UTF-8 bytes of every text, special tokens per message, the tool preamble, the
JSON of tools and schemas, images by their tile rule, inline data by its size; OpenAI's exact tokenizer for
a model that names it; never beyond the context window, which a provider refuses), output up to the limit
per choice times the choices. Then settled cost <= hold, so no accepted request can write an overdraft row.
`TOLLGATE_PROPERTY_EXAMPLES` raises the count for a long run (default 300).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from services.router import tokens
from services.router.adapters.base import Event, Reply
from services.router.catalog import Catalog, Model, parse
from services.router.clients import SELF, Funds, Hold, Payer
from services.router.health_view import HealthView
from services.router.pipeline import Caller, Router, Settings
from services.router.pricing import output_limit
from services.router.request import parse as parse_request
from services.router.settlements import Settlements
from services.runtime.channels import Deadline
from services.runtime.errors import DomainError
from tollgate.credits.v1 import credits_pb2

EXAMPLES = int(os.environ.get("TOLLGATE_PROPERTY_EXAMPLES", "300"))
CATALOG = """
version: 1
providers:
  p: {api_base: "http://127.0.0.1:9/v1"}
models:
  - {id: narrow, provider: p, tier: BALANCED, price: {input: 0.01, output: 0.02}, context_window: 3000,
     max_output_tokens: 500, capabilities: [chat, completion, tools, json, vision]}
  - {id: wide, provider: p, tier: BALANCED, price: {input: 0.003, output: 0.015}, context_window: 200000,
     capabilities: [chat, completion, tools, json, vision]}
  - {id: gpt, provider: p, tier: BALANCED, price: {input: 0.0025, output: 0.01}, context_window: 128000,
     max_output_tokens: 16384, capabilities: [chat, tools, json, vision], tokenizer: o200k_base,
     image_tokens: {low: 85, high: 1445}}
  - {id: embed, provider: p, tier: SPECIALIZED, price: {input: 0.0001, output: 0}, context_window: 512,
     capabilities: [embeddings]}
"""
CHAT_MODELS = ["narrow", "wide", "gpt"]
TEMPLATE_PER_MESSAGE, TEMPLATE_PRIMING, TOOL_PREAMBLE, SEQUENCE_MARKERS = 4, 3, 346, 2


def _bytes(text: str) -> int:
    return len(text.encode())


def _json(value: object) -> int:
    return _bytes(json.dumps(value, ensure_ascii=False))


def provider_prompt_max(route: str, model: Model, payload: dict[str, Any]) -> int:
    """The most input tokens a provider may bill for `payload` (as it arrives), computed apart from the router."""
    window = model.context_window
    enc = tokens.encoding(model.tokenizer) if model.tokenizer else None

    def text(t: str) -> int:
        return len(enc.encode_ordinary(t)) if enc is not None else _bytes(t)

    if route == "embedding":
        inputs = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
        return sum(min(window, len(i) if isinstance(i, list) else SEQUENCE_MARKERS + _bytes(i)) for i in inputs)
    if route == "completion":
        prompts = payload["prompt"] if isinstance(payload["prompt"], list) else [payload["prompt"]]
        suffix = _bytes(payload.get("suffix") or "")
        return sum(min(window, SEQUENCE_MARKERS + _bytes(p) + suffix) for p in prompts)
    total = TEMPLATE_PRIMING
    for message in payload["messages"]:
        total += TEMPLATE_PER_MESSAGE + _bytes(message["role"])
        content = message.get("content")
        if isinstance(content, str):
            total += text(content)
        for part in content if isinstance(content, list) else ():
            if part["type"] == "text":
                total += 1 + text(part["text"])
            elif part["type"] == "image_url":
                low = part["image_url"].get("detail") == "low"
                total += model.image_tokens_low if low else model.image_tokens_high
            elif part["type"] == "input_audio":
                total += _bytes(part["input_audio"]["data"])
            elif part["type"] == "file":
                total += _bytes(part["file"]["file_data"])
        if "name" in message:
            total += 1 + _bytes(message["name"])
        if "tool_calls" in message:
            total += _json(message["tool_calls"])
        if "tool_call_id" in message:
            total += _bytes(message["tool_call_id"])
    response_format = payload.get("response_format") or {}
    if payload.get("tools") or response_format.get("type") in ("json_object", "json_schema"):
        total += TOOL_PREAMBLE  # a structured output may be served as a forced tool call
    total += _json(payload.get("tools") or []) + _json(response_format)
    if payload.get("tool_choice") is not None:
        total += _json(payload["tool_choice"])
    return min(window, total)


def provider_completion_max(route: str, model: Model, payload: dict[str, Any]) -> int:
    if route == "embedding":
        return 0
    per_choice = output_limit(
        model, max((payload.get(k) or 0 for k in ("max_tokens", "max_completion_tokens")), default=0) or None
    )
    choices = payload.get("n") or 1
    if route == "completion":
        prompts = payload["prompt"] if isinstance(payload["prompt"], list) else [payload["prompt"]]
        choices = len(prompts) * max(choices, payload.get("best_of") or 1)
    return per_choice * choices


@dataclass
class Provider:
    """Answers with usage drawn within what it may bill for the payload it received."""

    draw: Any
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def _usage(self, route: str, model: Model, payload: dict[str, Any]) -> dict[str, int]:
        self.sent.append((route, payload))
        prompt = self.draw(st.integers(0, provider_prompt_max(route, model, payload)), label="reported prompt")
        completion = self.draw(
            st.integers(0, provider_completion_max(route, model, payload)), label="reported completion"
        )
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    async def call(
        self, route: Any, model: Model, payload: dict[str, Any], api_key: str | None, timeout: float
    ) -> Reply:
        usage = self._usage(route, model, payload)
        if route == "embedding":
            return Reply({"data": [{"embedding": [0.0]}], "usage": usage})
        choice = {"message": {"content": "x"}} if route == "chat" else {"text": "x"}
        return Reply({"choices": [choice], "usage": usage})

    async def stream(
        self, route: Any, model: Model, payload: dict[str, Any], api_key: str | None, timeout: float
    ) -> AsyncIterator[Event]:
        usage = self._usage(route, model, payload)
        delta = {"delta": {"content": "x"}} if route == "chat" else {"text": "x"}
        for obj in ({"choices": [delta]}, {"choices": [], "usage": usage}):
            yield Event(orjson.dumps(obj), obj)

    async def close(self) -> None:
        return None


@dataclass
class Ledger:
    """Holds and what settled them; never refuses a hold."""

    holds: dict[str, int] = field(default_factory=dict)
    settled: list[tuple[int, int]] = field(default_factory=list)

    async def reserve(
        self,
        user_id: str,
        amount_micro: int,
        key: str,
        request_id: str,
        ttl_seconds: int,
        timeout: float,
        payer: Payer = SELF,
    ) -> Hold:
        hold_id = uuid.uuid4().hex
        self.holds[hold_id] = amount_micro
        return Hold(hold_id, Funds(10**12, False), amount_micro)

    async def settle(
        self, hold_id: str, amount_micro: int, key: str, usage: credits_pb2.UsageRecord, timeout: float
    ) -> Funds:
        self.settled.append((self.holds.pop(hold_id), amount_micro))
        return Funds(10**12, False)

    async def settle_many(self, settles: list[credits_pb2.SettleRequest], timeout: float) -> list[Funds | DomainError]:
        return [await self.settle(s.hold_id, s.amount_micro, s.idempotency_key, s.usage, timeout) for s in settles]

    async def release(self, hold_id: str, key: str, usage: credits_pb2.UsageRecord | None, timeout: float) -> None:
        self.holds.pop(hold_id)

    async def record_usage(self, usage: credits_pb2.UsageRecord, key: str, timeout: float) -> None:
        return None

    async def funds(self, user_id: str, timeout: float) -> Funds:
        return Funds(10**12, False)


class Vault:
    async def provider_key(self, user_id: str, provider: str, timeout: float) -> str | None:
        return None


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    if not tokens.preload("o200k_base"):
        pytest.skip("litellm's bundled o200k_base is not installed")
    return parse(CATALOG, env={})


# Bodies: every kind of billed input, in any script, at any size up to what the limits allow.

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=400) | st.sampled_from(
    ["", "hello", "漢字かな交じり文" * 40, "def f(x):\n    return x  # 🙂\n" * 20, " " * 300, "{}" * 200]
)
data = st.binary(min_size=1, max_size=600).map(lambda b: base64.b64encode(b).decode())
parts = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, texts),
    st.builds(
        lambda d: {"type": "image_url", "image_url": {"url": "https://example.com/i.png", **d}},
        st.sampled_from([{}, {"detail": "low"}, {"detail": "high"}, {"detail": "auto"}]),
    ),
    st.builds(lambda d: {"type": "input_audio", "input_audio": {"data": d, "format": "wav"}}, data),
    st.builds(lambda d: {"type": "file", "file": {"file_data": d, "filename": "f.pdf"}}, data),
)
tool_calls = st.lists(
    st.builds(
        lambda name, args: {"id": "call_1", "type": "function", "function": {"name": name, "arguments": args}},
        st.text("abcdefgh_", min_size=1, max_size=20),
        texts,
    ),
    min_size=1,
    max_size=3,
)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    role = draw(st.sampled_from(["system", "developer", "user", "assistant", "tool"]))
    message: dict[str, Any] = {"role": role, "content": draw(texts | st.lists(parts, max_size=4))}
    if role == "assistant" and draw(st.booleans()):
        message["tool_calls"] = draw(tool_calls)
        message["content"] = draw(st.none() | texts)
    if role == "tool":
        message["tool_call_id"] = draw(st.text("abc123", min_size=1, max_size=12))
    if role == "user" and draw(st.booleans()):
        message["name"] = draw(st.text("abcdefgh_", min_size=1, max_size=30))
    return message


tools = st.lists(
    st.builds(
        lambda name, description, props: {
            "type": "function",
            "function": {
                "name": name,
                "description": description,
                "parameters": {
                    "type": "object",
                    "properties": {p: {"type": "string", "description": p} for p in props},
                },
            },
        },
        st.text("abcdefgh_", min_size=1, max_size=20),
        texts,
        st.lists(st.text("abcdefghijklmnop", min_size=1, max_size=12), max_size=4),
    ),
    max_size=4,
)
response_formats = st.sampled_from(
    [
        None,
        {"type": "text"},
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object", "description": "漢字" * 50}}},
    ]
)
limits = st.none() | st.integers(1, 300_000)


@st.composite
def chat_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": draw(st.sampled_from(CHAT_MODELS)),
        "messages": draw(st.lists(messages(), min_size=1, max_size=6)),
        "user_email": "dropped@example.com",
    }
    for name, strategy in (
        ("n", st.integers(1, 128)),
        ("max_tokens", limits),
        ("max_completion_tokens", limits),
        ("tools", tools),
        ("response_format", response_formats),
        ("tool_choice", st.sampled_from(["auto", "none", {"type": "function", "function": {"name": "f"}}])),
    ):
        if draw(st.booleans()):
            body[name] = draw(strategy)
    return body


@st.composite
def completion_bodies(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 128))
    body: dict[str, Any] = {
        "model": draw(st.sampled_from(["narrow", "wide"])),
        "prompt": draw(texts.filter(bool) | st.lists(texts, min_size=1, max_size=5)),
        "n": n,
        "max_tokens": draw(limits),
    }
    if draw(st.booleans()):
        body["best_of"] = draw(st.integers(n, 20)) if n <= 20 else None
    if draw(st.booleans()):
        body["suffix"] = draw(texts)
    return body


embedding_bodies = st.builds(
    lambda i: {"model": "embed", "input": i},
    texts.filter(bool)
    | st.lists(texts.filter(bool), min_size=1, max_size=8)
    | st.lists(st.lists(st.integers(0, 100_000), min_size=1, max_size=700), min_size=1, max_size=4),
)
requests = st.one_of(
    st.tuples(st.just("chat"), chat_bodies()),
    st.tuples(st.just("completion"), completion_bodies()),
    st.tuples(st.just("embedding"), embedding_bodies),
)


async def _run(router: Router, route: str, raw: bytes, stream: bool) -> None:
    try:
        request = parse_request(route, raw, "CUSTOM")  # type: ignore[arg-type]
        caller = Caller(request_id=uuid.uuid4().hex, user_id="u", key_id="k", deadline=Deadline(10))
        if stream and route != "embedding":
            async for _ in router.stream(request, caller):
                pass
        else:
            await router.complete(request, caller)
    except DomainError as err:
        event(f"refused: {err.param}")  # not accepted: nothing was held or charged
    await router.settlements.drain(5)  # settles made after their answers


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(request=requests, stream=st.booleans(), draw=st.data())
def test_no_accepted_request_settles_above_its_hold(
    catalog: Catalog, request: tuple[str, dict[str, Any]], stream: bool, draw: st.DataObject
) -> None:
    route, body = request
    ledger, provider = Ledger(), Provider(draw.draw)
    with tempfile.TemporaryDirectory() as journal:
        settlements = Settlements(ledger, Path(journal), sync=False)  # settled after the answer, as deployed
        router = Router(
            catalog,
            Settings(default_power_level="BALANCED"),
            ledger,
            Vault(),
            HealthView(),
            {"openai": provider},
            settlements=settlements,
        )
        asyncio.run(_run(router, route, orjson.dumps(body), stream))
        settlements.close()
    event(f"{route}: {'settled' if ledger.settled else 'not settled'}")
    for hold, cost in ledger.settled:
        assert cost <= hold, f"settled {cost} above the hold {hold} for {body}"
    for _, payload in provider.sent:
        assert "user_email" not in payload
    assert not ledger.holds
