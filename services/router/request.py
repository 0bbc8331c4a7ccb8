"""A client's request body, checked and read once: route, model, power level, stream flags and needs.

The body stays the client's JSON, cut down to the route's allow-list (`params`); this module validates
what the router relies on and measures what holds and selection need: how many choices may be written,
an upper bound of the input (`tokens.Prompt`) and a typical estimate of it (for context-window fit and
for usage a provider does not report).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.router import params, preferences
from services.router.adapters.base import Route
from services.router.catalog import POWER_LEVELS
from services.router.preferences import Preferences
from services.router.tokens import (
    IMAGE_LOW_TOKENS,
    INPUT_ALLOWANCE,
    MESSAGE_ALLOWANCE,
    PART_ALLOWANCE,
    REQUEST_ALLOWANCE,
    TOOLS_ALLOWANCE,
    Prompt,
    json_bytes,
    text_weight,
    utf8,
)
from services.runtime import attribution
from services.runtime.errors import DomainError

AUTO = ("", "auto")
CAPABILITY_OF_ROUTE = {"chat": "chat", "completion": "completion", "embedding": "embeddings", "responses": "chat"}
# The client APIs the gateway translates onto a route (the usage row names them instead of the route).
CLIENT_APIS = ("", "responses", "messages")
MAX_N = 128
MAX_BEST_OF = 20
_IMAGE_PARTS = ("image_url", "input_image", "image")
_TEXT_PARTS = ("text", "input_text", "output_text")


@dataclass(slots=True)
class Request:
    route: Route
    body: dict[str, Any]
    model: str | None  # None: the power level decides
    power_level: str | None  # None: the default
    stream: bool
    include_usage: bool
    max_tokens: int | None  # per choice: the larger of max_tokens and max_completion_tokens
    needs: frozenset[str]
    prompt_tokens: int  # typical estimate
    choices: int = 1  # how many completions may be written: n (x best_of, x prompts for completions)
    prompt: Prompt = field(default_factory=Prompt)  # what bounds the input, per model
    end_user: str = ""  # the body's `user`
    tags: dict[str, str] = field(default_factory=dict)  # `metadata` and the gateway's X-Tollgate-Tags
    client_api: str = ""  # the client API the gateway translated from, when not the route's own (usage rows)
    provider: Preferences | None = None  # the body's provider preferences; never sent on


def _invalid(message: str, param: str) -> DomainError:
    return DomainError("invalid_request", message, param)


def estimate_tokens(text_chars: int, items: int = 0) -> int:
    """A typical token estimate from weighed characters (`tokens.text_weight`: four a token, plus framing)."""
    return math.ceil(text_chars / 4) + 4 * items


def _json(value: object, param: str) -> int:
    try:
        return json_bytes(value)
    except TypeError:
        raise _invalid(f"{param} is nested too deeply (at most 254 levels)", param) from None


def _positive_int(body: dict[str, Any], name: str, low: int, high: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise _invalid(f"{name} must be an integer {bound}", name)
    return value


def parse(
    route: Route,
    raw: bytes,
    header_power_level: str = "",
    selection_only: bool = False,
    header_tags: Mapping[str, str] | None = None,
    client_api: str = "",
) -> Request:
    if client_api not in CLIENT_APIS:
        raise _invalid(f"client_api must be one of {', '.join(a for a in CLIENT_APIS if a)} or empty", "client_api")
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
    task = body.get("task")
    # Attribution is tollgate's own: `metadata` becomes tags and never travels on to a provider.
    tags = attribution.merged(
        attribution.tags(body.pop("metadata", None)), attribution.tags(header_tags or {}, "X-Tollgate-Tags")
    )
    end_user = attribution.end_user(body.get("user"))
    # Provider preferences are the router's to apply: consumed here, they never reach a provider.
    wanted_providers = body.pop("provider", None)
    if not selection_only:
        body = params.checked(route, body)
    provider = preferences.parse(wanted_providers)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _invalid("model must be a string", "model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _invalid("stream must be a boolean", "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _invalid("stream_options must be an object", "stream_options")
    include_usage = bool(options and options.get("include_usage") is True) and route != "responses"
    limit_names = ("max_output_tokens",) if route == "responses" else ("max_tokens", "max_completion_tokens")
    limits = [v for v in (_positive_int(body, name, 1) for name in limit_names) if v]
    max_tokens = max(limits) if limits else None

    needs = {CAPABILITY_OF_ROUTE[route]}
    choices = 0
    if route == "chat":
        choices = _positive_int(body, "n", 1, MAX_N) or 1
        prompt = _task(task) if body.get("messages") is None and selection_only else _chat_prompt(body)
        if prompt.images:
            needs.add("vision")
        prediction = body.get("prediction")
        if prediction is not None:
            prompt.predicted_bytes = _json(prediction, "prediction")
    elif route == "responses":
        choices = 1
        prompt = _responses_prompt(body)
        if prompt.images:
            needs.add("vision")
    elif route == "completion":
        n = _positive_int(body, "n", 1, MAX_N) or 1
        best_of = _positive_int(body, "best_of", 0, MAX_BEST_OF)
        if best_of and best_of < n:
            raise _invalid("best_of must be greater than or equal to n", "best_of")
        prompt = _completion_prompt(body)
        assert prompt.units is not None
        choices = len(prompt.units) * max(n, best_of or 1)  # best_of candidates are written, n returned
    else:
        prompt = _embedding_input(body)
    if token_ids(body.get("prompt" if route == "completion" else "input")) is not None and route != "chat":
        needs.add("token_ids")
    if route == "embedding" and body.get("dimensions") is not None:
        _positive_int(body, "dimensions", 1)
        needs.add("dimensions")
    if body.get("tools") or body.get("functions"):
        needs.add("tools")
    response_format = body.get("response_format")
    if route == "responses" and isinstance(body.get("text"), dict):
        response_format = body["text"].get("format")
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
        prompt_tokens=_estimate(prompt),
        choices=choices,
        prompt=prompt,
        end_user=end_user,
        tags=tags,
        client_api=client_api,
        provider=provider,
    )


def _estimate(prompt: Prompt) -> int:
    if prompt.units is not None:
        return sum(
            estimate_tokens(text_weight(text) if text is not None else 4 * size, 1) for size, text in prompt.units
        )
    chars = sum(text_weight(t) for t in prompt.texts) + prompt.other_bytes
    return estimate_tokens(chars, prompt.messages) + IMAGE_LOW_TOKENS * prompt.images


def _task(task: object) -> Prompt:
    if not isinstance(task, str):
        raise _invalid("task must be a string", "task")
    size = utf8(task)
    return Prompt(fixed=REQUEST_ALLOWANCE + MESSAGE_ALLOWANCE, texts=[task], text_bytes=size, messages=1)


def _chat_prompt(body: dict[str, Any]) -> Prompt:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages must be a non-empty array of message objects", "messages")
    prompt = Prompt(fixed=REQUEST_ALLOWANCE)
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _invalid("each message must be an object with a string role", "messages")
        prompt.fixed += MESSAGE_ALLOWANCE
        prompt.messages += 1
        _content(message.get("content"), prompt)
        for key, value in message.items():
            if key == "content" or value is None:
                continue
            if key == "audio":  # an earlier audio reply, billed again as input: its size is not in the body
                prompt.unbounded = True
            prompt.other_bytes += utf8(value) if isinstance(value, str) else _json(value, "messages")
    for key in ("tools", "functions", "tool_choice"):
        value = body.get(key)
        if value is not None:
            prompt.other_bytes += _json(value, key)
    response_format = body.get("response_format")
    if response_format is not None:
        prompt.other_bytes += _json(response_format, "response_format")
    json_mode = isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema")
    if body.get("tools") or body.get("functions") or json_mode:
        prompt.fixed += TOOLS_ALLOWANCE
    return prompt


def _responses_prompt(body: dict[str, Any]) -> Prompt:
    """The bound of a Responses request's input: its items, `instructions` and tools, as a chat prompt's."""
    given = body.get("input")
    if isinstance(given, str):
        items: list[Any] = [{"type": "message", "role": "user", "content": given}]
    elif isinstance(given, list) and given:
        items = given
    else:
        raise _invalid("input must be a string or a non-empty array of input items", "input")
    prompt = Prompt(fixed=REQUEST_ALLOWANCE)
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _invalid("instructions must be a string", "instructions")
        items = [{"role": "system", "content": instructions}, *items]
    for item in items:
        if not isinstance(item, dict):
            raise _invalid("each input item must be an object", "input")
        prompt.fixed += MESSAGE_ALLOWANCE
        prompt.messages += 1
        for key, value in item.items():
            if value is None:
                continue
            if key == "content":
                _content(value, prompt)
            else:
                prompt.other_bytes += utf8(value) if isinstance(value, str) else _json(value, "input")
    for key in ("tools", "tool_choice", "text"):
        value = body.get(key)
        if value is not None:
            prompt.other_bytes += _json(value, key)
    if body.get("tools") or isinstance(body.get("text"), dict):
        prompt.fixed += TOOLS_ALLOWANCE
    return prompt


def _content(content: object, prompt: Prompt) -> None:
    if content is None:
        return
    if isinstance(content, str):
        prompt.texts.append(content)
        prompt.text_bytes += utf8(content)
        return
    if not isinstance(content, list):
        raise _invalid("message content must be a string, an array of parts or null", "messages")
    for part in content:
        if not isinstance(part, dict):
            raise _invalid("message content parts must be objects", "messages")
        kind = part.get("type")
        if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
            prompt.texts.append(part["text"])
            prompt.text_bytes += utf8(part["text"])
            prompt.fixed += PART_ALLOWANCE
        elif kind in _IMAGE_PARTS:
            _image(part, prompt)
        elif kind == "input_audio":
            audio = part.get("input_audio")
            _data(audio.get("data") if isinstance(audio, dict) else None, part, prompt)
        elif kind == "file":
            file = part.get("file")
            _data(file.get("file_data") if isinstance(file, dict) else None, part, prompt)
        elif kind == "input_file":  # Responses: the data (or a file_id the body does not bound) on the part
            _data(part.get("file_data"), part, prompt)
        else:
            prompt.other_bytes += _json(part, "messages")


def _image(part: dict[str, Any], prompt: Prompt) -> None:
    image = part.get("image_url")
    detail = image.get("detail") if isinstance(image, dict) else part.get("detail")
    if detail == "low":
        prompt.images_low += 1
    else:  # high, auto (the provider may choose high) or anything else
        prompt.images_high += 1
    prompt.fixed += PART_ALLOWANCE


def _data(data: object, part: dict[str, Any], prompt: Prompt) -> None:
    """A file or audio part, bounded by the size of its inline data; one held elsewhere is not bounded."""
    if isinstance(data, str) and data:
        prompt.other_bytes += _json(part, "messages")
    else:
        prompt.unbounded = True


def _completion_prompt(body: dict[str, Any]) -> Prompt:
    prompt = body.get("prompt")
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise _invalid("suffix must be a string", "suffix")
    extra = INPUT_ALLOWANCE + (utf8(suffix) if suffix else 0)
    if isinstance(prompt, str):
        texts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        texts = prompt
    else:
        ids = token_ids(prompt)
        if ids is None:
            raise _invalid(
                "prompt must be a string, a non-empty array of strings, an array of token ids or an array of "
                "token-id arrays",
                "prompt",
            )
        return Prompt(units=[(n + extra, None) for n in ids])
    return _units(texts, extra)


def token_ids(value: object) -> list[int] | None:
    """The length of each input when `value` is token ids (one array of them, or an array of such arrays)."""
    if not isinstance(value, list) or not value:
        return None
    if all(_token(t) for t in value):
        return [len(value)]
    if all(isinstance(i, list) and i and all(_token(t) for t in i) for i in value):
        return [len(i) for i in value]
    return None


def _token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32


def _units(texts: list[str], extra: int) -> Prompt:
    units: list[tuple[int, str | None]] = []
    total = 0
    for text in texts:
        size = utf8(text)
        total += size
        units.append((size + extra, text))
    return Prompt(units=units, text_bytes=total)


def _embedding_input(body: dict[str, Any]) -> Prompt:
    data = body.get("input")
    if isinstance(data, str) and data:
        return _units([data], INPUT_ALLOWANCE)
    if isinstance(data, list) and data:
        if all(isinstance(i, str) for i in data):
            return _units(data, INPUT_ALLOWANCE)
        ids = token_ids(data)
        if ids is not None:
            return Prompt(units=[(n, None) for n in ids])  # exact: each id is one token
    raise _invalid("input must be a non-empty string or array of strings or token arrays", "input")
