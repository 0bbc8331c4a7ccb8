"""Replies and chunks in OpenAI's shape: the catalog id as model, one id per stream, a reason for every choice."""

from __future__ import annotations

import base64
import struct
from typing import Any

from services.router import normalize


def _chunk(ident: str, index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": index, "delta": delta, "finish_reason": finish}
    return {"id": ident, "object": "chat.completion.chunk", "created": 1, "model": "/m.gguf", "choices": [choice]}


def test_a_stream_keeps_its_first_id_and_the_catalog_model() -> None:
    shape = normalize.StreamShape("chat", "local-llama")
    first, second = _chunk("a", 0, {"content": "x"}), _chunk("b", 0, {"content": "y"})
    second["created"] = 2
    shape.chunk(first)
    assert shape.chunk(second)
    assert (second["id"], second["created"], second["model"]) == ("a", 1, "local-llama")


def test_only_choices_left_open_are_closed_with_their_reason() -> None:
    shape = normalize.StreamShape("chat", "m")
    shape.chunk(_chunk("a", 0, {"content": "x"}, "stop"))
    shape.chunk(_chunk("a", 1, {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))
    shape.chunk(_chunk("a", 2, {"content": "z"}))
    closing = shape.closing()
    assert closing is not None and closing["id"] == "a"
    assert [(c["index"], c["finish_reason"]) for c in closing["choices"]] == [(1, "tool_calls"), (2, "stop")]
    assert shape.closing() is None


def test_a_finished_stream_needs_no_closing_chunk() -> None:
    shape = normalize.StreamShape("completion", "m")
    shape.chunk({"id": "c", "choices": [{"index": 0, "text": "x", "finish_reason": "length"}]})
    assert shape.closing() is None


def test_spec_fields_are_normalized() -> None:
    body: dict[str, Any] = {
        "model": "/models/x.gguf",
        "system_fingerprint": None,
        "choices": [{"message": {"content": "hi"}, "logprobs": {"content": []}, "finish_reason": "eos"}],
    }
    out = normalize.completion("chat", body, "local-llama", 1, 1)
    assert out["model"] == "local-llama" and "system_fingerprint" not in out
    assert out["choices"][0]["logprobs"] == {"content": [], "refusal": None}
    assert out["choices"][0]["finish_reason"] == "stop"
    text = normalize.completion("completion", {"choices": [{"text": "a", "logprobs": {"tokens": ["a"]}}]}, "m", 1, 1)
    assert text["choices"][0]["logprobs"] == {"tokens": ["a"]}  # a text completion's own logprobs shape


def test_embeddings_come_in_the_encoding_asked_for() -> None:
    vector = [0.5, -0.25]
    packed = base64.b64encode(struct.pack("<2f", *vector)).decode()
    as_base64 = normalize.embedding({"data": [{"embedding": list(vector)}]}, "e", 1, "base64")
    assert as_base64["data"][0]["embedding"] == packed and as_base64["model"] == "e"
    as_floats = normalize.embedding({"data": [{"embedding": packed}]}, "e", 1, None)
    assert as_floats["data"][0]["embedding"] == vector
    assert normalize.dimensions_of(as_base64) == {2}
