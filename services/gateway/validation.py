"""Request bodies checked against OpenAI's schema for each route, naming the offending parameter.

Only what OpenAI itself would refuse is refused; unknown fields pass through to the provider.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.runtime.errors import DomainError
from services.runtime.secrets import is_credential

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
PART_TYPES = frozenset({"text", "image_url", "input_audio", "file", "refusal"})
RESPONSE_FORMATS = frozenset({"text", "json_object", "json_schema"})
TOOL_TYPES = frozenset({"function", "custom"})
TOOL_CHOICES = frozenset({"none", "auto", "required"})


# What a credential may contain: printable ASCII, no space. A CR/LF or control character would break (or
# smuggle) the header it is sent in.


def _bad(param: str, message: str) -> DomainError:
    return DomainError("invalid_request", message, param)


def credential(value: object, param: str) -> str:
    """A provider key from a body: a non-empty string of printable ASCII without spaces."""
    if not isinstance(value, str) or not value:
        raise _bad(param, f"'{param}' is required and must be a string")
    if not is_credential(value):
        raise _bad(param, f"'{param}' must be printable ASCII without spaces or control characters")
    return value


def _one_of(value: object, allowed: frozenset[str]) -> bool:
    """`value in allowed` for any JSON value: a list or an object is simply not one of them."""
    return isinstance(value, str) and value in allowed


def _number(payload: dict[str, Any], name: str, low: float, high: float, integer: bool = False) -> None:
    value = payload.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        raise _bad(name, f"'{name}' must be {'an integer' if integer else 'a number'}")
    if not low <= value <= high:
        raise _bad(name, f"'{name}' must be between {low:g} and {high:g}, got {value}")


def _kind(payload: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> None:
    value = payload.get(name)
    if value is not None and (not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)):
        raise _bad(name, f"'{name}' must be {what}")


def _common(payload: dict[str, Any]) -> None:
    _kind(payload, "model", str, "a string")
    _kind(payload, "stream", bool, "a boolean")
    _kind(payload, "user", str, "a string")
    _kind(payload, "power_level", str, "a string")
    _number(payload, "temperature", 0, 2)
    _number(payload, "top_p", 0, 1)
    _number(payload, "n", 1, 128, integer=True)
    _number(payload, "max_tokens", 1, 10_000_000, integer=True)
    _number(payload, "max_completion_tokens", 1, 10_000_000, integer=True)
    _number(payload, "presence_penalty", -2, 2)
    _number(payload, "frequency_penalty", -2, 2)
    _number(payload, "seed", -(2**63), 2**63 - 1, integer=True)
    stop = payload.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop))
    ):
        raise _bad("stop", "'stop' must be a string or a list of at most 4 strings")
    options = payload.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _bad("stream_options", "'stream_options' must be an object")
        if not payload.get("stream"):
            raise _bad("stream_options", "'stream_options' is only allowed when 'stream' is true")
        if "include_usage" in options and not isinstance(options["include_usage"], bool):
            raise _bad("stream_options.include_usage", "'stream_options.include_usage' must be a boolean")


def _message(i: int, message: Any) -> None:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise _bad(where, f"'{where}' must be an object")
    role = message.get("role")
    if not _one_of(role, ROLES):
        raise _bad(f"{where}.role", f"'{where}.role' must be one of {', '.join(sorted(ROLES))}")
    content = message.get("content")
    if content is None:
        if role in ("user", "system", "developer") or (
            role == "assistant" and not message.get("tool_calls") and not message.get("function_call")
        ):
            raise _bad(f"{where}.content", f"'{where}.content' is required for role '{role}'")
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict):
                raise _bad(f"{where}.content[{j}]", f"'{where}.content[{j}]' must be a content part object")
            if not _one_of(part.get("type"), PART_TYPES):
                raise _bad(
                    f"{where}.content[{j}].type",
                    f"'{where}.content[{j}].type' must be one of {', '.join(sorted(PART_TYPES))}",
                )
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                raise _bad(f"{where}.content[{j}].text", f"'{where}.content[{j}].text' must be a string")
            image = part.get("image_url")
            if part["type"] == "image_url" and not (
                isinstance(image, dict) and isinstance(image.get("url"), str) and image["url"]
            ):
                raise _bad(f"{where}.content[{j}].image_url", f"'{where}.content[{j}].image_url.url' must be a URL")
    elif not isinstance(content, str):
        raise _bad(f"{where}.content", f"'{where}.content' must be a string or a list of content parts")
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise _bad(f"{where}.tool_call_id", f"'{where}.tool_call_id' is required for role 'tool'")


def chat(payload: dict[str, Any]) -> None:
    messages = payload.get("messages")
    if messages is None:
        raise _bad("messages", "'messages' is a required property")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "'messages' must be a non-empty array")
    for i, message in enumerate(messages):
        _message(i, message)
    _common(payload)
    _tools(payload.get("tools"))
    _tool_choice(payload.get("tool_choice"))
    _kind(payload, "parallel_tool_calls", bool, "a boolean")
    _kind(payload, "logprobs", bool, "a boolean")
    _number(payload, "top_logprobs", 0, 20, integer=True)
    if payload.get("top_logprobs") is not None and payload.get("logprobs") is not True:
        raise _bad("top_logprobs", "'top_logprobs' needs 'logprobs' set to true")
    fmt = payload.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or not _one_of(fmt.get("type"), RESPONSE_FORMATS)):
        raise _bad("response_format.type", "'response_format.type' must be one of json_object, json_schema, text")
    if isinstance(fmt, dict) and fmt["type"] == "json_schema":
        schema = fmt.get("json_schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("name"), str):
            raise _bad("response_format.json_schema", "'response_format.json_schema' must be an object with a 'name'")
        if schema.get("schema") is not None and not isinstance(schema["schema"], dict):
            raise _bad("response_format.json_schema.schema", "'response_format.json_schema.schema' must be an object")


def _tools(tools: object) -> None:
    """Function tools and OpenAI's `custom` tools (free-form text input, optionally a grammar)."""
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _bad("tools", "'tools' must be an array")
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        spec = tool.get(kind) if isinstance(tool, dict) and isinstance(kind, str) else None
        if kind not in TOOL_TYPES or not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise _bad(
                f"tools[{i}]",
                f"'tools[{i}]' must be {{'type': 'function', 'function': {{'name': …}}}} or "
                "{'type': 'custom', 'custom': {'name': …}}",
            )


def _tool_choice(choice: object) -> None:
    if choice is None or _one_of(choice, TOOL_CHOICES):
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    spec = choice.get(kind) if isinstance(choice, dict) and isinstance(kind, str) else None
    if kind in TOOL_TYPES and isinstance(spec, dict) and isinstance(spec.get("name"), str):
        return
    if kind == "allowed_tools" and isinstance(spec, dict) and isinstance(spec.get("tools"), list):
        return
    raise _bad(
        "tool_choice",
        "'tool_choice' must be 'none', 'auto', 'required' or {'type': 'function', 'function': {'name': …}} "
        "(or 'custom', or 'allowed_tools')",
    )


def completion(payload: dict[str, Any]) -> None:
    prompt = payload.get("prompt")
    if prompt is None:
        raise _bad("prompt", "'prompt' is a required property")
    if not isinstance(prompt, str | list):
        raise _bad("prompt", "'prompt' must be a string or an array")
    _common(payload)


def embedding(payload: dict[str, Any]) -> None:
    value = payload.get("input")
    if value is None:
        raise _bad("input", "'input' is a required property")
    if isinstance(value, str):
        if not value:
            raise _bad("input", "'input' must not be empty")
    elif not isinstance(value, list) or not value:
        raise _bad("input", "'input' must be a non-empty string or array")
    _kind(payload, "model", str, "a string")
    if payload.get("stream"):
        raise _bad("stream", "Embeddings cannot be streamed")
    fmt = payload.get("encoding_format")
    if fmt is not None and not _one_of(fmt, frozenset({"float", "base64"})):
        raise _bad("encoding_format", "'encoding_format' must be 'float' or 'base64'")
    _number(payload, "dimensions", 1, 65_536, integer=True)


def responses(payload: dict[str, Any]) -> None:
    """A Responses body passed through: checked by its dialect as it reads it (`dialects.responses.validate`)."""


VALIDATORS: dict[str, Callable[[dict[str, Any]], None]] = {
    "chat": chat,
    "completion": completion,
    "embedding": embedding,
    "responses": responses,
}
