"""Anthropic's Messages API as a dialect of chat completions: its request onto a chat body, chat's answer
(whole or streamed) back into a message, and errors in Anthropic's shape.

The translation is total or refused: every field of a Messages request is mapped, accepted and ignored (a
documented list), or refused with a 400 naming it, as Anthropic refuses fields it does not know. Nothing here
keeps state beyond one request; routing, holds, charging and logging are chat's.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, TypeGuard

import orjson
from starlette.responses import Response

from services.runtime.errors import DomainError
from services.runtime.logging import request_id
from tollgate.router.v1 import router_pb2

ROUTE = "messages"
# Accepted and not sent on: chat has no counterpart (see docs/api/anthropic-messages.md).
IGNORED = frozenset({"top_k", "thinking", "context_management", "service_tier", "container"})
# tollgate's own body fields, read by the chat pipeline as on chat completions.
EXTENSIONS = frozenset({"power_level", "api_key", "provider", "byok", "cache"})
MAPPED = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "metadata",
        "output_config",
    }
)
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use"}
MAX_STOP_SEQUENCES = 4  # what an OpenAI-compatible provider takes
_ID_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def _bad(param: str, message: str) -> DomainError:
    return DomainError("invalid_request", message, param)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _obj(value: object) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (providers' answers are read defensively)."""
    return value if isinstance(value, dict) else {}


def _number(payload: dict[str, Any], name: str, low: float, high: float) -> None:
    value = payload.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(name, f"{name}: Input should be a valid number")
    if not low <= value <= high:
        raise _bad(name, f"{name}: Input should be between {low:g} and {high:g}")


# ── request: Messages → chat ─────────────────────────────────────────────────────────────────────────────


def _cached(part: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    """A chat part keeps its block's `cache_control` (the litellm adapter hands it to Anthropic)."""
    if isinstance(block.get("cache_control"), dict):
        part["cache_control"] = block["cache_control"]
    return part


def _text(block: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(block.get("text"), str):
        raise _bad(f"{where}.text", f"{where}.text: Field required (a string)")
    return _cached({"type": "text", "text": block["text"]}, block)


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _bad(f"{where}.source", f"{where}.source: Field required (an object)")
    kind, url = source.get("type"), source.get("url")
    if kind == "base64":
        media, data = source.get("media_type"), source.get("data")
        if not isinstance(media, str) or media not in IMAGE_TYPES:
            raise _bad(
                f"{where}.source.media_type", f"{where}.source.media_type: one of {', '.join(sorted(IMAGE_TYPES))}"
            )
        if not isinstance(data, str) or not data:
            raise _bad(f"{where}.source.data", f"{where}.source.data: Field required (base64 text)")
        url = f"data:{media};base64,{data}"
    elif kind == "url":
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise _bad(f"{where}.source.url", f"{where}.source.url: an http(s) URL is required")
    else:
        raise _bad(f"{where}.source.type", f"{where}.source.type: 'base64' or 'url' (file ids are not supported)")
    return _cached({"type": "image_url", "image_url": {"url": url}}, block)


def _document(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "text" and isinstance(source.get("data"), str):
        return _cached({"type": "text", "text": source["data"]}, block)
    if (
        isinstance(source, dict)
        and source.get("type") == "base64"
        and source.get("media_type") == "application/pdf"
        and isinstance(source.get("data"), str)
    ):
        part = {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{source['data']}"}}
        return _cached(part, block)
    raise _bad(f"{where}.source", f"{where}.source: a base64 PDF or plain text source is supported")


def _parts(content: Any, where: str, images: bool = True) -> list[dict[str, Any]]:
    """Text, image and document blocks as chat content parts."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _bad(where, f"{where}: Input should be a string or a list of content blocks")
    parts = []
    for j, block in enumerate(content):
        at = f"{where}[{j}]"
        if not isinstance(block, dict):
            raise _bad(at, f"{at}: Input should be a content block object")
        kind = block.get("type")
        if kind == "text":
            parts.append(_text(block, at))
        elif kind == "image" and images:
            parts.append(_image(block, at))
        elif kind == "document" and images:
            parts.append(_document(block, at))
        else:
            raise _bad(f"{at}.type", f"{at}.type: '{kind}' is not supported here")
    return parts


def _system(system: Any) -> dict[str, Any]:
    parts = _parts(system, "system", images=False)
    if all(set(p) == {"type", "text"} for p in parts):
        return {"role": "system", "content": "\n\n".join(p["text"] for p in parts)}
    return {"role": "system", "content": parts}


def _tool_call(block: dict[str, Any], at: str) -> dict[str, Any]:
    name, call_id, arguments = block.get("name"), block.get("id"), block.get("input", {})
    if not isinstance(name, str) or not name:
        raise _bad(f"{at}.name", f"{at}.name: Field required")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{at}.id", f"{at}.id: Field required")
    if not isinstance(arguments, dict):
        raise _bad(f"{at}.input", f"{at}.input: Input should be an object")
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": orjson.dumps(arguments).decode()},
    }


def _tool_result(block: dict[str, Any], at: str) -> dict[str, Any]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{at}.tool_use_id", f"{at}.tool_use_id: Field required")
    content = block.get("content", "")
    parts = _parts(content, f"{at}.content") if content else []
    if block.get("is_error") is True:
        parts.insert(0, {"type": "text", "text": "[tool error]"})
    if all(p["type"] == "text" and set(p) == {"type", "text"} for p in parts):
        text: Any = "\n".join(p["text"] for p in parts)
    else:
        text = parts
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _message(i: int, message: Any) -> list[dict[str, Any]]:
    """One Messages turn as chat messages: a user turn's tool results come first, as tool messages."""
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise _bad(where, f"{where}: Input should be an object")
    role, content = message.get("role"), message.get("content")
    if role not in ("user", "assistant"):
        raise _bad(f"{where}.role", f"{where}.role: Input should be 'user' or 'assistant'")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _bad(f"{where}.content", f"{where}.content: Input should be a string or a list of content blocks")
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(block, dict):
            raise _bad(at, f"{at}: Input should be a content block object")
        kind = block.get("type")
        if kind in ("thinking", "redacted_thinking") and role == "assistant":
            continue  # chat has no place for earlier reasoning: it is not sent on
        if kind == "tool_use" and role == "assistant":
            calls.append(_tool_call(block, at))
        elif kind == "tool_result" and role == "user":
            results.append(_tool_result(block, at))
        elif kind in ("text", "image", "document"):
            if role == "assistant" and kind != "text":
                raise _bad(f"{at}.type", f"{at}.type: an assistant turn holds text and tool_use blocks")
            parts.extend(_parts([block], f"{where}.content"))
        else:
            raise _bad(f"{at}.type", f"{at}.type: '{kind}' is not supported in a {role} turn")
    out: list[dict[str, Any]] = list(results)
    if role == "assistant":
        text = "".join(p["text"] for p in parts)
        turn: dict[str, Any] = {"role": "assistant", "content": text or None}
        if any("cache_control" in p for p in parts):
            turn["content"] = parts
        if calls:
            turn["tool_calls"] = calls
        if turn["content"] is not None or calls:
            out.append(turn)
    elif parts:
        plain = all(set(p) == {"type", "text"} for p in parts)
        out.append(
            {"role": "user", "content": "\n".join(p["text"] for p in parts) if plain and len(parts) == 1 else parts}
        )
    return out


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad("tools", "tools: Input should be a list")
    out = []
    for i, tool in enumerate(tools):
        at = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _bad(at, f"{at}: Input should be an object")
        kind = tool.get("type", "custom")
        if kind != "custom":
            raise _bad(
                f"{at}.type",
                f"{at}.type: server tool '{kind}' is not supported by this gateway; declare a client tool "
                "(name, description, input_schema) instead",
            )
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not name:
            raise _bad(f"{at}.name", f"{at}.name: Field required")
        if not isinstance(schema, dict):
            raise _bad(f"{at}.input_schema", f"{at}.input_schema: Field required (a JSON schema object)")
        function: dict[str, Any] = {"name": name, "parameters": schema}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append(_cached({"type": "function", "function": function}, tool))
    return out


def _tool_choice(choice: Any, chat: dict[str, Any]) -> None:
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise _bad("tool_choice.type", "tool_choice.type: one of 'auto', 'any', 'tool', 'none'")
    kind = choice["type"]
    if kind == "tool":
        if not isinstance(choice.get("name"), str) or not choice["name"]:
            raise _bad("tool_choice.name", "tool_choice.name: Field required for type 'tool'")
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        chat["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if choice.get("disable_parallel_tool_use") is True and "tools" in chat:
        chat["parallel_tool_calls"] = False


def _output_config(config: Any, chat: dict[str, Any]) -> None:
    """`format` (structured outputs) becomes chat's `response_format`; `effort` has no counterpart and stays."""
    if not isinstance(config, dict):
        raise _bad("output_config", "output_config: Input should be an object")
    fmt = config.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise _bad(
            "output_config.format", "output_config.format: {'type': 'json_schema', 'schema': {...}} is supported"
        )
    chat["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}


def translate(payload: dict[str, Any], counting: bool = False) -> dict[str, Any]:
    """A Messages request (checked) as a chat completions body; `counting`: a count_tokens request (no
    `max_tokens`, never streamed)."""
    unknown = sorted(set(payload) - MAPPED - IGNORED - EXTENSIONS)
    if unknown:
        raise _bad(unknown[0], f"{unknown[0]}: Extra inputs are not permitted")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "model: Field required")
    chat: dict[str, Any] = {"model": model}
    max_tokens = payload.get("max_tokens")
    if not counting or max_tokens is not None:
        if not _is_int(max_tokens):
            raise _bad("max_tokens", "max_tokens: Field required (an integer)")
        if not 1 <= max_tokens <= 10_000_000:
            raise _bad("max_tokens", "max_tokens: Input should be between 1 and 10000000")
        chat["max_tokens"] = max_tokens
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "messages: Field required (a non-empty list)")
    turns = [] if payload.get("system") in (None, "", []) else [_system(payload["system"])]
    for i, message in enumerate(messages):
        turns.extend(_message(i, message))
    if not any(t["role"] != "system" for t in turns):
        raise _bad("messages", "messages: at least one message with content is required")
    chat["messages"] = turns
    if "tools" in payload and payload["tools"] is not None:
        tools = _tools(payload["tools"])
        if tools:
            chat["tools"] = tools
    if payload.get("tool_choice") is not None:
        _tool_choice(payload["tool_choice"], chat)
    _number(payload, "temperature", 0, 1)
    _number(payload, "top_p", 0, 1)
    _number(payload, "top_k", 0, 1_000_000)
    for name in ("temperature", "top_p"):
        if payload.get(name) is not None:
            chat[name] = payload[name]
    stops = payload.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise _bad("stop_sequences", "stop_sequences: Input should be a list of non-empty strings")
        if len(stops) > MAX_STOP_SEQUENCES:
            raise _bad("stop_sequences", f"stop_sequences: at most {MAX_STOP_SEQUENCES} are supported")
        if stops:
            chat["stop"] = stops
    metadata = payload.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _bad("metadata", "metadata: Input should be an object")
        user = metadata.get("user_id")
        if user is not None and not isinstance(user, str):
            raise _bad("metadata.user_id", "metadata.user_id: Input should be a string")
        if user:
            chat["user"] = user[:256]
    if payload.get("output_config") is not None:
        _output_config(payload["output_config"], chat)
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("stream", "stream: Input should be a valid boolean")
    if stream and not counting:
        chat["stream"] = True
    for name in EXTENSIONS & set(payload):
        chat[name] = payload[name]
    return chat


# ── answer: chat → message ───────────────────────────────────────────────────────────────────────────────


def message_id(chat_id: object = None) -> str:
    tail = _ID_SAFE.sub("", chat_id) if isinstance(chat_id, str) else ""
    return f"msg_{tail[-40:] or uuid.uuid4().hex}"


def _tool_id(call_id: object) -> str:
    return call_id if isinstance(call_id, str) and call_id else f"toolu_{uuid.uuid4().hex[:24]}"


def _arguments(raw: object) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic's `input` is; text that is not an object is kept
    under `_raw_arguments` rather than lost."""
    if isinstance(raw, dict):
        return raw
    try:
        parsed = orjson.loads(raw) if isinstance(raw, str | bytes) and raw else {}
    except orjson.JSONDecodeError:
        return {"_raw_arguments": raw}
    return parsed if isinstance(parsed, dict) else {"_raw_arguments": raw}


def _stop(finish: object, stops: object, matched: object) -> tuple[str, str | None]:
    if isinstance(matched, str) and matched and (stops is None or (isinstance(stops, list) and matched in stops)):
        return "stop_sequence", matched
    if finish == "content_filter":
        return "refusal", None
    return STOP_REASONS.get(finish if isinstance(finish, str) else "", "end_turn"), None


def usage(outcome: router_pb2.Outcome, chat_usage: object = None) -> dict[str, int]:
    """Anthropic's usage from what was charged: input excludes the cached part, as Anthropic counts it."""
    read: object = _obj(_obj(chat_usage).get("prompt_tokens_details")).get("cached_tokens")
    created: object = _obj(chat_usage).get("cache_creation_input_tokens")
    read = read if _is_int(read) and read > 0 else 0
    created = created if _is_int(created) and created > 0 else 0
    assert isinstance(read, int) and isinstance(created, int)
    prompt = outcome.prompt_tokens
    return {
        "input_tokens": max(0, prompt - read - created),
        "output_tokens": outcome.completion_tokens,
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": read,
    }


def reply(chat: dict[str, Any], outcome: router_pb2.Outcome, stops: object = None) -> dict[str, Any]:
    choices = chat.get("choices")
    choice = _obj(choices[0] if isinstance(choices, list) and choices else None)
    message = _obj(choice.get("message"))
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        fn = _obj(call).get("function")
        if isinstance(fn, dict):
            content.append(
                {
                    "type": "tool_use",
                    "id": _tool_id(call.get("id")),
                    "name": fn.get("name") or "",
                    "input": _arguments(fn.get("arguments")),
                }
            )
    stop_reason, stop_sequence = _stop(choice.get("finish_reason"), stops, choice.get("stop_reason"))
    if any(block["type"] == "tool_use" for block in content) and stop_reason == "end_turn":
        stop_reason = "tool_use"
    return {
        "id": message_id(chat.get("id")),
        "type": "message",
        "role": "assistant",
        "model": outcome.model or chat.get("model", ""),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage(outcome, chat.get("usage")),
    }


# ── streams: chat chunks → Messages events ───────────────────────────────────────────────────────────────


def event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


class Stream:
    """One streamed message: content blocks opened and closed as chat's deltas change kind."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.model = payload.get("model", "")
        self.stops = payload.get("stop")
        self.started = False
        self.index = -1
        self.open: str | None = None  # "text" | "thinking" | "tool:<chat index>"
        self.finish: object = None
        self.matched: object = None
        self.chat_usage: object = None
        self.tools = False
        self.broken = False

    def _start(self, chat_id: object = None) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        message = {
            "id": message_id(chat_id),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [event("message_start", {"message": message}), event("ping", {})]

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        self.open = None
        return [event("content_block_stop", {"index": self.index})]

    def _block(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        frames = self._close()
        self.index += 1
        self.open = kind
        return [*frames, event("content_block_start", {"index": self.index, "content_block": block})]

    def chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        frames = self._start(chunk.get("id"))
        if isinstance(chunk.get("usage"), dict):
            self.chat_usage = chunk["usage"]
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return frames
        choice = choices[0]
        delta = _obj(choice.get("delta"))
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            if self.open != "thinking":
                frames += self._block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            frames.append(self._delta({"type": "thinking_delta", "thinking": reasoning}))
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self.open != "text":
                frames += self._block("text", {"type": "text", "text": ""})
            frames.append(self._delta({"type": "text_delta", "text": text}))
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                frames += self._tool(call)
        if choice.get("finish_reason"):
            self.finish = choice["finish_reason"]
            self.matched = choice.get("stop_reason")
        return frames

    def _tool(self, call: dict[str, Any]) -> list[bytes]:
        frames: list[bytes] = []
        fn = _obj(call.get("function"))
        key = f"tool:{call.get('index', 0)}"
        if self.open != key:
            self.tools = True
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": _tool_id(call.get("id")),
                "name": fn.get("name") or "",
                "input": {},
            }
            frames += self._block(key, block)
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            frames.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        return frames

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event("content_block_delta", {"index": self.index, "delta": delta})

    def failed(self, error: dict[str, Any]) -> list[bytes]:
        self.broken = True
        return [*self._close(), event("error", {"error": _error_object(error)})]

    def finished(self, outcome: router_pb2.Outcome) -> list[bytes]:
        if self.broken:  # the error event ended the message; the outcome only settles it
            return []
        frames = [*self._start(), *self._close()]
        stop_reason, stop_sequence = _stop(self.finish, self.stops, self.matched)
        if self.tools and stop_reason == "end_turn":
            stop_reason = "tool_use"
        frames.append(
            event(
                "message_delta",
                {
                    "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                    "usage": usage(outcome, self.chat_usage),
                },
            )
        )
        frames.append(event("message_stop", {}))
        return frames


# ── errors ────────────────────────────────────────────────────────────────────────────────────────────────

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    499: "api_error",
}


def error_body(err: DomainError) -> dict[str, Any]:
    status = err.kind.http_status
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": err.message}, "request_id": request_id.get()}


def _error_object(error: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI error event's object (as the router ends a stream with) in Anthropic's words."""
    inner = _obj(error.get("error")) or error
    code, message = inner.get("code"), inner.get("message")
    err = DomainError(
        code if isinstance(code, str) else "provider_error",
        message if isinstance(message, str) else "The stream failed",
    )
    found: dict[str, Any] = error_body(err)["error"]
    return found


def error_response(err: DomainError, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(error_body(err)),
        status_code=err.kind.http_status,
        headers={**err.headers, **(headers or {})},
        media_type="application/json",
    )


def is_messages_path(path: str) -> bool:
    return path.startswith(("/v1/messages", "/api/v1/llm/messages"))


class Messages:
    """The Messages dialect of the chat pipeline (`services.gateway.dialects.Dialect`)."""

    route = ROUTE

    def chat_body(self, payload: dict[str, Any]) -> dict[str, Any]:
        return translate(payload)

    def reply(self, chat: dict[str, Any], outcome: router_pb2.Outcome) -> dict[str, Any]:
        return reply(chat, outcome)

    def translation(self, payload: dict[str, Any]) -> Stream:
        return Stream(payload)

    def error(self, err: DomainError, headers: dict[str, str]) -> Response:
        return error_response(err, headers)


MESSAGES = Messages()
