"""Make provider replies conform to OpenAI's published schemas, whatever the provider sent.

Missing fields the SDKs expect are filled (`logprobs` and `refusal` as null, `created`, `object`,
`usage`), finish reasons are mapped into the allowed set, odd extra fields are left alone. Stream chunks
report whether they changed, so an already conformant chunk is relayed as the upstream's bytes.
"""

from __future__ import annotations

import os
import time
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
    if not isinstance(body.get("model"), str) or not body["model"]:
        body["model"] = model
    if "system_fingerprint" in body and not isinstance(body["system_fingerprint"], str | None):
        body["system_fingerprint"] = None
    choices = body.get("choices")
    if not isinstance(choices, list):
        choices = body["choices"] = []
    for index, choice in enumerate(choices):
        if not isinstance(choice, dict):
            choices[index] = choice = {}
        choice.setdefault("index", index)
        choice.setdefault("logprobs", None)
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


def embedding(body: dict[str, Any], model: str, prompt: int) -> dict[str, Any]:
    body["object"] = "list"
    data = body.get("data")
    if not isinstance(data, list):
        data = body["data"] = []
    for index, item in enumerate(data):
        if isinstance(item, dict):
            item["object"] = "embedding"
            item.setdefault("index", index)
    if not isinstance(body.get("model"), str) or not body["model"]:
        body["model"] = model
    body["usage"] = {"prompt_tokens": prompt, "total_tokens": prompt}
    return body


def chunk(route: str, obj: dict[str, Any], model: str) -> bool:
    """Bring one stream chunk into shape in place; True when anything had to change."""
    changed = False
    expected = _CHUNK_OBJECT[route]
    if obj.get("object") != expected:
        obj["object"] = expected
        changed = True
    if not isinstance(obj.get("id"), str):
        obj["id"] = _id("chatcmpl-" if route == "chat" else "cmpl-")
        changed = True
    if not isinstance(obj.get("created"), int):
        obj["created"] = int(time.time())
        changed = True
    if not isinstance(obj.get("model"), str):
        obj["model"] = model
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
        if "logprobs" not in choice:
            choice["logprobs"] = None
            changed = True
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
                for call in delta.get("tool_calls") or ():
                    if isinstance(call, dict) and isinstance(call.get("function"), dict):
                        total += text_weight(str(call["function"].get("arguments") or ""))
        else:
            text = choice.get("text")
            total += text_weight(text) if isinstance(text, str) else 0
    return total


def model_list(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": entries}
