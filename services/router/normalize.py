"""Make provider replies conform to OpenAI's published schemas, whatever the provider sent.

Missing fields the SDKs expect are filled (`logprobs` and `refusal` as null, `logprobs.refusal`, `created`,
`object`, `usage`), finish reasons are mapped into the allowed set, a `system_fingerprint` that is not a
string is dropped, odd extra fields are left alone. `model` is always the catalog id the client can send
again, never the upstream's own name for it (llama.cpp answers with a file path). A stream is shaped by
one `StreamShape`: every chunk carries the first chunk's `id` and `created`, and a choice the upstream
never finished gets a closing chunk with its `finish_reason`. Stream chunks report whether they changed,
so an already conformant chunk is relayed as the upstream's bytes.
"""

from __future__ import annotations

import base64
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from services.router.pricing import Usage
from services.router.tokens import text_weight

FINISH_REASONS = {"stop", "length", "tool_calls", "content_filter", "function_call"}
_FINISH_MAP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "eos": "stop",
    "eos_token": "stop",
    "complete": "stop",
    "max_tokens": "length",
    "max_output_tokens": "length",
    "model_length": "length",
    "tool_use": "tool_calls",
    "tool_call": "tool_calls",
    "safety": "content_filter",
    "recitation": "content_filter",
}
_OBJECT = {"chat": "chat.completion", "completion": "text_completion"}
_CHUNK_OBJECT = {"chat": "chat.completion.chunk", "completion": "text_completion"}


def finish_reason(value: object, default: str | None = "stop") -> str | None:
    if value is None:
        return default
    text = str(value)
    return text if text in FINISH_REASONS else _FINISH_MAP.get(text.lower(), "stop")


def _id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def usage_of(body: dict[str, Any]) -> Usage | None:
    """The tokens a body's `usage` reports, when it carries integers: the prompt and completion counts and
    their cached and reasoning parts (OpenAI's `prompt_tokens_details.cached_tokens` and
    `completion_tokens_details.reasoning_tokens`; Anthropic's `cache_read_input_tokens` and
    `cache_creation_input_tokens` as litellm reports them, already counted in `prompt_tokens`)."""
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens", 0)
    if not _count(prompt) or not isinstance(completion, int | None) or isinstance(completion, bool):
        return None
    assert isinstance(prompt, int)
    inputs = usage.get("prompt_tokens_details")
    outputs = usage.get("completion_tokens_details")
    inputs = inputs if isinstance(inputs, dict) else {}
    outputs = outputs if isinstance(outputs, dict) else {}
    return Usage(
        prompt,
        completion or 0,
        cache_read=_first(inputs.get("cached_tokens"), usage.get("cache_read_input_tokens")),
        cache_write=_first(inputs.get("cache_creation_tokens"), usage.get("cache_creation_input_tokens")),
        reasoning=_first(outputs.get("reasoning_tokens"), usage.get("reasoning_tokens")),
    ).consistent()


def usage_for(route: str, body: dict[str, Any]) -> Usage | None:
    """The usage a reply of `route` reports: the Responses API's own names on `responses`."""
    return response_usage(body) if route == "responses" else usage_of(body)


def response_usage(response: object) -> Usage | None:
    """The tokens a Responses object's `usage` reports: `input_tokens`, `output_tokens`,
    `input_tokens_details.cached_tokens` and `output_tokens_details.reasoning_tokens`."""
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens", 0)
    if not _count(prompt) or not isinstance(completion, int | None) or isinstance(completion, bool):
        return None
    assert isinstance(prompt, int)
    inputs = usage.get("input_tokens_details")
    outputs = usage.get("output_tokens_details")
    inputs = inputs if isinstance(inputs, dict) else {}
    outputs = outputs if isinstance(outputs, dict) else {}
    return Usage(
        prompt,
        completion or 0,
        cache_read=_first(inputs.get("cached_tokens")),
        reasoning=_first(outputs.get("reasoning_tokens")),
    ).consistent()


# The events that end a Responses stream; one that ends without them was cut.
RESPONSE_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def response(body: dict[str, Any], model: str, used: Usage) -> dict[str, Any]:
    """A passed-through Responses object: `model` the catalog id, `usage` what is charged."""
    body["object"] = "response"
    body["model"] = model
    usage = body.get("usage")
    usage = dict(usage) if isinstance(usage, dict) else {}
    usage |= {
        "input_tokens": used.prompt,
        "output_tokens": used.completion,
        "total_tokens": used.prompt + used.completion,
    }
    usage.setdefault("input_tokens_details", {"cached_tokens": used.cache_read})
    usage.setdefault("output_tokens_details", {"reasoning_tokens": used.reasoning})
    body["usage"] = usage
    return body


def response_event(obj: dict[str, Any], model: str) -> bool:
    """Bring one Responses stream event into shape in place (its response's `model` the catalog id); True
    when anything changed."""
    inner = obj.get("response")
    if isinstance(inner, dict) and inner.get("model") != model:
        inner["model"] = model
        return True
    return False


def response_text(obj: dict[str, Any]) -> int:
    """Weighed characters of generated text in one Responses stream event (text and call-argument deltas)."""
    if obj.get("type") in ("response.output_text.delta", "response.function_call_arguments.delta"):
        delta = obj.get("delta")
        return text_weight(delta) if isinstance(delta, str) else 0
    return 0


def response_chars(body: dict[str, Any]) -> int:
    """Weighed characters of a Responses object's output text and call arguments."""
    total = 0
    for item in body.get("output") or ():
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("arguments"), str):
            total += text_weight(item["arguments"])
        for part in item.get("content") or ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                total += text_weight(part["text"])
    return total


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _first(*values: object) -> int:
    """The first of `values` that is a count of tokens, else 0."""
    for value in values:
        if _count(value) and isinstance(value, int) and value > 0:
            return value
    return 0


def completion(route: str, body: dict[str, Any], model: str, prompt: int, completion_tokens: int) -> dict[str, Any]:
    """A non-streamed chat or text completion in OpenAI's shape, `usage` set to what is charged."""
    body.setdefault("id", _id("chatcmpl-" if route == "chat" else "cmpl-"))
    body["object"] = _OBJECT[route]
    if not isinstance(body.get("created"), int):
        body["created"] = int(time.time())
    body["model"] = model
    if "system_fingerprint" in body and not isinstance(body["system_fingerprint"], str):
        del body["system_fingerprint"]
    choices = body.get("choices")
    if not isinstance(choices, list):
        choices = body["choices"] = []
    for index, choice in enumerate(choices):
        if not isinstance(choice, dict):
            choices[index] = choice = {}
        choice.setdefault("index", index)
        _logprobs(choice)
        choice["finish_reason"] = finish_reason(choice.get("finish_reason"))
        if route == "chat":
            message = choice.get("message")
            if not isinstance(message, dict):
                message = choice["message"] = {}
            message["role"] = "assistant"
            message.setdefault("content", None)
            message.setdefault("refusal", None)
            if message.get("tool_calls") == []:
                del message["tool_calls"]
        else:
            if not isinstance(choice.get("text"), str):
                choice["text"] = ""
    body["usage"] = _usage(body.get("usage"), prompt, completion_tokens)
    return body


def _usage(existing: object, prompt: int, completion_tokens: int) -> dict[str, Any]:
    usage = dict(existing) if isinstance(existing, dict) else {}
    usage["prompt_tokens"] = prompt
    usage["completion_tokens"] = completion_tokens
    usage["total_tokens"] = prompt + completion_tokens
    return {k: v for k, v in usage.items() if v is not None}


def _logprobs(choice: dict[str, Any]) -> bool:
    """`logprobs` as the spec has it: null, or an object with `content` and `refusal` (each null when absent).
    True when anything had to change."""
    logprobs = choice.get("logprobs", ...)
    if logprobs is ...:
        choice["logprobs"] = None
        return True
    if not isinstance(logprobs, dict) or ("content" in logprobs and "refusal" in logprobs):
        return False
    if "tokens" in logprobs or "token_logprobs" in logprobs:  # a text completion's own logprobs shape
        return False
    logprobs.setdefault("content", None)
    logprobs.setdefault("refusal", None)
    return True


def embedding(body: dict[str, Any], model: str, prompt: int, encoding: str | None = None) -> dict[str, Any]:
    """An embeddings reply in OpenAI's shape, each vector in the `encoding_format` asked for (float when none)."""
    body["object"] = "list"
    data = body.get("data")
    if not isinstance(data, list):
        data = body["data"] = []
    for index, item in enumerate(data):
        if isinstance(item, dict):
            item["object"] = "embedding"
            item.setdefault("index", index)
            item["embedding"] = _encoded(item.get("embedding"), encoding or "float")
    body["model"] = model
    body["usage"] = {"prompt_tokens": prompt, "total_tokens": prompt}
    return body


def _encoded(vector: object, encoding: str) -> object:
    """A vector as float32 little-endian base64 (OpenAI's `base64`) or as a list of floats."""
    if encoding == "base64" and isinstance(vector, list):
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    if encoding == "float" and isinstance(vector, str):
        raw = base64.b64decode(vector)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw[: len(raw) // 4 * 4]))
    return vector


def dimensions_of(body: dict[str, Any]) -> set[int]:
    """The lengths of the vectors in an embeddings reply (float lists or base64 float32)."""
    found = set()
    for item in body.get("data") or ():
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(vector, list):
            found.add(len(vector))
        elif isinstance(vector, str):
            found.add(len(base64.b64decode(vector)) // 4)
    return found


def chunk(route: str, obj: dict[str, Any], model: str, ident: str | None = None, created: int | None = None) -> bool:
    """Bring one stream chunk into shape in place; True when anything had to change.

    `ident` and `created`, when given, are the stream's: every chunk carries the same."""
    changed = False
    expected = _CHUNK_OBJECT[route]
    if obj.get("object") != expected:
        obj["object"] = expected
        changed = True
    if ident is not None and obj.get("id") != ident:
        obj["id"] = ident
        changed = True
    elif not isinstance(obj.get("id"), str) or not obj["id"]:
        obj["id"] = _id("chatcmpl-" if route == "chat" else "cmpl-")
        changed = True
    if created is not None and obj.get("created") != created:
        obj["created"] = created
        changed = True
    elif not isinstance(obj.get("created"), int):
        obj["created"] = int(time.time())
        changed = True
    if obj.get("model") != model:
        obj["model"] = model
        changed = True
    if "system_fingerprint" in obj and not isinstance(obj["system_fingerprint"], str):
        del obj["system_fingerprint"]
        changed = True
    if route == "completion" and "usage" in obj and obj["usage"] is None:  # the spec's completion has no null usage
        del obj["usage"]
        changed = True
    choices = obj.get("choices")
    if not isinstance(choices, list):
        obj["choices"] = []
        return True
    for index, choice in enumerate(choices):
        if not isinstance(choice, dict):
            choices[index] = choice = {"index": index}
            changed = True
        if "index" not in choice:
            choice["index"] = index
            changed = True
        changed = _logprobs(choice) or changed
        reason = choice.get("finish_reason")
        if (reason is not None and reason not in FINISH_REASONS) or "finish_reason" not in choice:
            choice["finish_reason"] = finish_reason(reason, None)
            changed = True
        if route == "chat" and not isinstance(choice.get("delta"), dict):
            choice["delta"] = {}
            changed = True
        elif route == "completion" and not isinstance(choice.get("text"), str):
            choice["text"] = ""
            changed = True
    return changed


def chunk_text(route: str, obj: dict[str, Any]) -> int:
    """Weighed characters of generated text in one chunk (`tokens.text_weight`), for estimating usage when the
    upstream reports none."""
    total = 0
    for choice in obj.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        if route == "chat":
            delta = choice.get("delta")
            if isinstance(delta, dict):
                content = delta.get("content")
                total += text_weight(content) if isinstance(content, str) else 0
                total += _calls_weight(delta.get("tool_calls"))
        else:
            text = choice.get("text")
            total += text_weight(text) if isinstance(text, str) else 0
    return total


def _calls_weight(calls: object) -> int:
    """Weighed characters of tool calls (a function's name and arguments, a custom tool's input)."""
    total = 0
    for call in calls if isinstance(calls, list) else ():
        if not isinstance(call, dict):
            continue
        for kind, field_name in (("function", "arguments"), ("custom", "input")):
            spec = call.get(kind)
            if isinstance(spec, dict):
                total += text_weight(str(spec.get(field_name) or "")) + text_weight(str(spec.get("name") or ""))
    return total


def reply_text(body: dict[str, Any]) -> int:
    """Weighed characters a non-streamed reply generated: content, refusals and tool calls of every choice
    (a Responses object's: its output text and call arguments)."""
    if "output" in body and "choices" not in body:
        return response_chars(body)
    total = 0
    for choice in body.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            for key in ("content", "refusal"):
                text = message.get(key)
                total += text_weight(text) if isinstance(text, str) else 0
            total += _calls_weight(message.get("tool_calls"))
        elif isinstance(choice.get("text"), str):
            total += text_weight(choice["text"])
    return total


@dataclass(slots=True)
class StreamShape:
    """What one relayed stream has shown so far: its id and time, and which choices finished or called tools."""

    route: str
    model: str
    ident: str | None = None
    created: int | None = None
    open_choices: dict[int, bool] = field(default_factory=dict)  # index -> whether it called a tool
    finished: set[int] = field(default_factory=set)

    def chunk(self, obj: dict[str, Any]) -> bool:
        """`chunk` with this stream's id and time (the first chunk's); True when anything had to change."""
        changed = chunk(self.route, obj, self.model, self.ident, self.created)
        if self.ident is None:
            self.ident, self.created = obj["id"], obj["created"]
        for choice in obj["choices"]:
            index = choice.get("index")
            if not isinstance(index, int) or index in self.finished:
                continue
            delta = choice.get("delta")
            called = isinstance(delta, dict) and bool(delta.get("tool_calls") or delta.get("function_call"))
            if choice.get("finish_reason") is not None:
                self.open_choices.pop(index, None)
                self.finished.add(index)
            else:
                self.open_choices[index] = self.open_choices.get(index, False) or called
        return changed

    def closing(self) -> dict[str, Any] | None:
        """The chunk that finishes every choice the upstream left open (None when it finished them all)."""
        if not self.open_choices and self.finished:
            return None
        open_choices = self.open_choices or {0: False}
        choices = []
        for index, called in sorted(open_choices.items()):
            reason = "tool_calls" if called else "stop"
            body: dict[str, Any] = {"delta": {}} if self.route == "chat" else {"text": ""}
            choices.append({"index": index, **body, "logprobs": None, "finish_reason": reason})
        self.finished.update(open_choices)
        self.open_choices.clear()
        obj = {"choices": choices}
        chunk(self.route, obj, self.model, self.ident, self.created)
        return obj

    def usage_chunk(self, prompt: int, completion: int) -> dict[str, Any]:
        """The closing usage chunk (no choices) for a stream whose upstream reported no usage."""
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        obj: dict[str, Any] = {"choices": [], "usage": usage}
        chunk(self.route, obj, self.model, self.ident, self.created)
        return obj


def model_list(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": entries}
