"""A client's request body, checked and read once: route, model, power level, stream flags and needs.

The body stays the client's JSON, cut down to the route's allow-list (`params`); this module only validates
what the router relies on and derives what selection needs (capabilities, an estimate of the prompt's tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from services.router import params
from services.router.adapters.base import Route
from services.router.catalog import POWER_LEVELS
from services.runtime.errors import DomainError

AUTO = ("", "auto")
CAPABILITY_OF_ROUTE = {"chat": "chat", "completion": "completion", "embedding": "embeddings"}


@dataclass(slots=True)
class Request:
    route: Route
    body: dict[str, Any]
    model: str | None  # None: the power level decides
    power_level: str | None  # None: the default
    stream: bool
    include_usage: bool
    max_tokens: int | None
    needs: frozenset[str]
    prompt_tokens: int  # estimate


def _invalid(message: str, param: str) -> DomainError:
    return DomainError("invalid_request", message, param)


def estimate_tokens(text_chars: int, items: int = 0) -> int:
    """A cautious token estimate from character counts (about four characters a token, plus framing)."""
    return math.ceil(text_chars / 4) + 4 * items


def _content_chars(content: object, needs: set[str]) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if not isinstance(part, dict):
                raise _invalid("message content parts must be objects", "messages")
            if part.get("type") in ("image_url", "input_image", "image"):
                needs.add("vision")
                total += 340  # what a low-detail image costs at OpenAI, a floor for the estimate
            elif isinstance(part.get("text"), str):
                total += len(part["text"])
        return total
    raise _invalid("message content must be a string, an array of parts or null", "messages")


def parse(route: Route, raw: bytes, header_power_level: str = "", selection_only: bool = False) -> Request:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _invalid("the request body is not valid JSON", "body") from None
    if not isinstance(body, dict):
        raise _invalid("the request body must be a JSON object", "body")

    level = body.pop("power_level", None) or header_power_level or None
    if level is not None:
        if not isinstance(level, str) or level.upper() not in POWER_LEVELS:
            raise _invalid(f"power_level must be one of {', '.join(POWER_LEVELS)}", "power_level")
        level = level.upper()
    if not selection_only:
        body = params.checked(route, body)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _invalid("model must be a string", "model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _invalid("stream must be a boolean", "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _invalid("stream_options must be an object", "stream_options")
    include_usage = bool(options and options.get("include_usage") is True)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        param = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        raise _invalid(f"{param} must be a positive integer", param)

    needs = {CAPABILITY_OF_ROUTE[route]}
    if route == "chat":
        prompt_tokens = _chat_prompt(body, needs, selection_only)
    elif route == "completion":
        prompt_tokens = _completion_prompt(body)
    else:
        prompt_tokens = _embedding_input(body)
    if body.get("tools") or body.get("functions"):
        needs.add("tools")
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
        needs.add("json")
    return Request(
        route=route,
        body=body,
        model=None if model in (None, *AUTO) else model,
        power_level=level,
        stream=stream and route != "embedding",
        include_usage=include_usage,
        max_tokens=max_tokens,
        needs=frozenset(needs),
        prompt_tokens=prompt_tokens,
    )


def _chat_prompt(body: dict[str, Any], needs: set[str], selection_only: bool) -> int:
    messages = body.get("messages")
    if messages is None and selection_only:
        task = body.get("task", "")
        if not isinstance(task, str):
            raise _invalid("task must be a string", "task")
        return estimate_tokens(len(task), 1)
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages must be a non-empty array of message objects", "messages")
    chars = 0
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _invalid("each message must be an object with a string role", "messages")
        chars += _content_chars(message.get("content"), needs)
    return estimate_tokens(chars, len(messages))


def _completion_prompt(body: dict[str, Any]) -> int:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return estimate_tokens(len(prompt), 1)
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return estimate_tokens(sum(len(p) for p in prompt), len(prompt))
    raise _invalid("prompt must be a string or a non-empty array of strings", "prompt")


def _embedding_input(body: dict[str, Any]) -> int:
    data = body.get("input")
    if isinstance(data, str) and data:
        return estimate_tokens(len(data), 1)
    if isinstance(data, list) and data:
        if all(isinstance(i, str) for i in data):
            return estimate_tokens(sum(len(i) for i in data), len(data))
        if all(isinstance(i, int) and not isinstance(i, bool) for i in data):
            return len(data)
        if all(isinstance(i, list) and all(isinstance(t, int) for t in i) for i in data):
            return sum(len(i) for i in data)
    raise _invalid("input must be a non-empty string or array of strings or token arrays", "input")
