"""OpenAI's Responses API (`POST /v1/responses`) as a dialect of chat completions.

A Responses body becomes one chat completions body (`chat_body`), runs through the chat pipeline, and the chat
answer becomes a Responses object (`reply`) or its typed SSE events (`Stream`). What chat cannot carry is
refused with a 400 naming the field; the few things dropped on purpose (hosted web search, reasoning items,
`include`) are listed in docs/api/responses.md. Fields this API does not know travel on to the router,
whose allow-list refuses the steering ones and drops the rest, exactly as for chat.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson
from starlette.responses import Response

from services.gateway.edge import error_response
from services.gateway.validation import _kind, _number
from services.runtime.errors import DomainError
from tollgate.router.v1 import router_pb2

ROUTE = "responses"
# A namespaced tool (`{"type": "namespace", "name": ns, "tools": [...]}`) is a chat function `ns__name`.
NAMESPACE_SEPARATOR = "__"
# Responses fields that map onto chat (or are accepted without effect); everything else is below or unknown.
FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "text",
        "max_output_tokens",
        "temperature",
        "top_p",
        "user",
        "safety_identifier",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "store",
        "previous_response_id",
        "include",
        "metadata",
        "client_metadata",
        "truncation",
    }
)
# Responses features chat completions cannot give: refused rather than silently ignored.
UNSUPPORTED = {
    "background": "background responses are not supported",
    "conversation": "conversations are not supported; chain responses with 'previous_response_id'",
    "prompt": "stored prompt templates are not supported",
    "max_tool_calls": "'max_tool_calls' is not supported",
    "top_logprobs": "'top_logprobs' is not supported on /v1/responses",
    "context_management": "'context_management' is not supported",
}
# Chat completions parameters that are not Responses parameters: a client that sends them means another API.
CHAT_ONLY = frozenset(
    {
        "messages",
        "n",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "logit_bias",
        "logprobs",
        "functions",
        "function_call",
        "response_format",
        "audio",
        "modalities",
        "prediction",
        "frequency_penalty",
        "presence_penalty",
        "seed",
        "reasoning_effort",
        "verbosity",
        "web_search_options",
    }
)
# Hosted tools chat cannot run; web search is dropped (Codex always offers it), the others refused.
DROPPED_TOOLS = frozenset(
    {"web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11"}
)
ROLES = frozenset({"user", "system", "developer", "assistant"})
# Content part fields naming data kept at the provider or fetched by it, never the caller's inline data.
_HELD_ELSEWHERE = ("file_id", "file_url")
_FINISH = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _bad(param: str, message: str) -> DomainError:
    return DomainError("invalid_request", message, param)


def _new_id(prefix: str) -> str:
    return prefix + os.urandom(24).hex()


def validate(payload: dict[str, Any]) -> None:
    """Refuse what this API refuses, naming the parameter; the translation checks the items it walks."""
    if "input" not in payload:
        raise _bad("input", "'input' is a required property")
    value = payload["input"]
    if not isinstance(value, str | list) or (
        isinstance(value, list) and not value and not payload.get("previous_response_id")
    ):
        raise _bad("input", "'input' must be a string or a non-empty array of input items")
    for name in payload:
        if name in UNSUPPORTED and payload[name] not in (None, False):
            raise _bad(name, UNSUPPORTED[name])
        if name in CHAT_ONLY:
            raise _bad(name, f"'{name}' is a chat completions parameter, not a Responses one")
    for name in ("model", "instructions", "user", "safety_identifier", "prompt_cache_key", "previous_response_id"):
        _kind(payload, name, str, "a string")
    for name in ("stream", "store", "parallel_tool_calls"):
        _kind(payload, name, bool, "a boolean")
    for name in ("reasoning", "text", "metadata", "client_metadata", "stream_options"):
        _kind(payload, name, dict, "an object")
    _kind(payload, "tools", list, "an array")
    _kind(payload, "include", list, "an array")
    _number(payload, "temperature", 0, 2)
    _number(payload, "top_p", 0, 1)
    _number(payload, "max_output_tokens", 1, 10_000_000, integer=True)
    if payload.get("truncation") not in (None, "disabled"):
        raise _bad("truncation", "'truncation' must be 'disabled': tollgate never cuts a conversation")
    effort = (payload.get("reasoning") or {}).get("effort")
    if effort is not None and not isinstance(effort, str):
        raise _bad("reasoning.effort", "'reasoning.effort' must be a string")
    for name, value in payload.items():
        # The response echoes fields (`text`, `reasoning`, `tools`) up to three levels down (a stream event's
        # `response`): one nested past what JSON is written with would fail after the provider was paid.
        try:
            orjson.dumps([[[value]]])
        except orjson.JSONEncodeError:
            raise _bad(name, f"'{name}' is nested too deeply") from None


def _text_of(content: Any, where: str) -> str:
    """An assistant message's or a tool output's text: a string, or the text of its parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(where, f"'{where}' must be a string or an array of content parts")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise _bad(f"{where}[{j}]", f"'{where}[{j}]' must be a content part object")
        text = part.get("text", part.get("refusal"))
        if part.get("type") not in ("output_text", "input_text", "text", "refusal") or not isinstance(text, str):
            raise _bad(f"{where}[{j}]", f"'{where}[{j}]' must be a text part here")
        texts.append(text)
    return "".join(texts)


def _parts(content: Any, where: str) -> str | list[dict[str, Any]]:
    """A user, system or developer message's content in chat's part shapes."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(where, f"'{where}' must be a string or an array of content parts")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(part, dict):
            raise _bad(at, f"'{at}' must be a content part object")
        # A passthrough sends the part as written: an id or URL beside the inline data would still reach what
        # the platform's account holds at the provider (or make it fetch for us).
        for held in _HELD_ELSEWHERE:
            if part.get(held) is not None:
                raise _bad(f"{at}.{held}", f"'{at}.{held}' is not supported: send the data inline")
        if kind in ("input_text", "output_text", "text"):
            if not isinstance(part.get("text"), str):
                raise _bad(f"{at}.text", f"'{at}.text' must be a string")
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise _bad(f"{at}.image_url", f"'{at}.image_url' is required (uploaded files are not supported)")
            image = {"url": url}
            if isinstance(part.get("detail"), str):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            data = part.get("file_data")
            if not isinstance(data, str) or not data:
                raise _bad(f"{at}.file_data", f"'{at}.file_data' is required (uploaded files are not supported)")
            file = {"file_data": data}
            if isinstance(part.get("filename"), str):
                file["filename"] = part["filename"]
            parts.append({"type": "file", "file": file})
        else:
            raise _bad(f"{at}.type", f"'{at}.type' must be one of input_text, input_image, input_file")
    return parts


def _call_name(item: dict[str, Any], where: str) -> str:
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"{where}.name", f"'{where}.name' must be a non-empty string")
    namespace = item.get("namespace")
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if isinstance(namespace, str) and namespace else name


def _call_id(item: dict[str, Any], where: str) -> str:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{where}.call_id", f"'{where}.call_id' must be a non-empty string")
    return call_id


def messages(items: list[Any], where: str = "input") -> list[dict[str, Any]]:
    """Input items as chat messages: consecutive calls join one assistant message, outputs become tool messages."""
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise _bad(at, f"'{at}' must be an input item object")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ROLES:
                raise _bad(f"{at}.role", f"'{at}.role' must be one of {', '.join(sorted(ROLES))}")
            if role == "assistant":
                out.append({"role": "assistant", "content": _text_of(item.get("content"), f"{at}.content")})
            else:
                out.append({"role": role, "content": _parts(item.get("content"), f"{at}.content")})
        elif kind in ("function_call", "custom_tool_call"):
            name, call_id = _call_name(item, at), _call_id(item, at)
            if kind == "function_call":
                args = item.get("arguments")
                if not isinstance(args, str):
                    raise _bad(f"{at}.arguments", f"'{at}.arguments' must be a string of JSON")
                call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
            else:
                text = item.get("input")
                if not isinstance(text, str):
                    raise _bad(f"{at}.input", f"'{at}.input' must be a string")
                call = {"id": call_id, "type": "custom", "custom": {"name": name, "input": text}}
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            text = output if isinstance(output, str) else _text_of(output, f"{at}.output")
            out.append({"role": "tool", "tool_call_id": _call_id(item, at), "content": text})
        elif kind == "reasoning":
            continue  # a provider's own reasoning state: chat has no place for it
        else:
            raise _bad(f"{at}.type", f"'{at}.type' {kind!r} is not supported: chat completions cannot carry it")
    return out


def _function(tool: dict[str, Any], name: str) -> dict[str, Any]:
    fn = {"name": name}
    for key in ("description", "parameters", "strict"):
        if tool.get(key) is not None:
            fn[key] = tool[key]
    return {"type": "function", "function": fn}


def tools(given: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(given):
        at = f"tools[{i}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or not isinstance(kind, str):
            raise _bad(at, f"'{at}' must be a tool object with a type")
        if kind in DROPPED_TOOLS:
            continue
        if kind not in ("function", "custom", "namespace"):
            raise _bad(f"{at}.type", f"'{at}.type' {kind!r} is not supported: chat completions cannot run it")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"{at}.name", f"'{at}.name' must be a non-empty string")
        if kind == "function":
            out.append(_function(tool, name))
        elif kind == "custom":
            custom = {"name": name, **{k: tool[k] for k in ("description", "format") if tool.get(k) is not None}}
            out.append({"type": "custom", "custom": custom})
        else:
            inner = tool.get("tools")
            if not isinstance(inner, list):
                raise _bad(f"{at}.tools", f"'{at}.tools' must be an array")
            for j, member in enumerate(inner):
                where = f"{at}.tools[{j}]"
                if not isinstance(member, dict) or member.get("type") != "function":
                    raise _bad(where, f"'{where}' must be a function tool")
                if not isinstance(member.get("name"), str) or not member["name"]:
                    raise _bad(f"{where}.name", f"'{where}.name' must be a non-empty string")
                out.append(_function(member, f"{name}{NAMESPACE_SEPARATOR}{member['name']}"))
    return out


def tool_choice(choice: Any) -> Any:
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if (
        isinstance(choice, dict)
        and choice.get("type") in ("function", "custom")
        and isinstance(choice.get("name"), str)
    ):
        kind = choice["type"]
        return {"type": kind, kind: {"name": choice["name"]}}
    raise _bad("tool_choice", "'tool_choice' must be auto, none, required or {'type': 'function', 'name': …}")


def response_format(text: dict[str, Any]) -> dict[str, Any] | None:
    fmt = text.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema" and isinstance(fmt, dict):
        if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict):
            raise _bad("text.format", "'text.format' of type json_schema needs a string 'name' and an object 'schema'")
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise _bad("text.format.type", "'text.format.type' must be one of text, json_object, json_schema")


def output_items(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A stored response's output as input items of the next turn."""
    return [item for item in response.get("output", []) if isinstance(item, dict) and item.get("type") != "reasoning"]


class Responses:
    """One request's translation; `context` holds the items of the conversation a `previous_response_id` names."""

    route = ROUTE

    def __init__(self, context: list[dict[str, Any]] | None = None) -> None:
        self.context = context or []
        self.id = _new_id("resp_")
        self.created = int(time.time())
        self.request: dict[str, Any] = {}
        self.items: list[dict[str, Any]] = []  # the conversation up to this answer, as input items
        self.result: dict[str, Any] | None = None  # the finished response, once there is one
        self.namespaced: set[str] = set()

    @property
    def store(self) -> bool:
        return self.request.get("store", True) is not False

    def chat_body(self, payload: dict[str, Any]) -> dict[str, Any]:
        validate(payload)
        self.request = payload
        given = payload["input"]
        turn = [{"type": "message", "role": "user", "content": given}] if isinstance(given, str) else list(given)
        self.items = [*self.context, *turn]
        body = {k: v for k, v in payload.items() if k not in FIELDS}  # the edge's own fields, or the router's call
        chat: list[dict[str, Any]] = []
        if payload.get("instructions"):
            chat.append({"role": "system", "content": payload["instructions"]})
        chat += messages(self.context, "previous_response") if self.context else []
        chat += messages(turn)
        if not chat:
            raise _bad("input", "'input' must hold at least one message")
        body["messages"] = chat
        for name in ("model", "temperature", "top_p", "user", "safety_identifier", "service_tier"):
            if payload.get(name) is not None:
                body[name] = payload[name]
        for name in ("prompt_cache_key", "prompt_cache_retention", "parallel_tool_calls"):
            if payload.get(name) is not None:
                body[name] = payload[name]
        if payload.get("max_output_tokens") is not None:
            body["max_completion_tokens"] = payload["max_output_tokens"]
        effort = (payload.get("reasoning") or {}).get("effort")
        if effort is not None:
            body["reasoning_effort"] = effort
        text = payload.get("text") or {}
        fmt = response_format(text)
        if fmt is not None:
            body["response_format"] = fmt
        if text.get("verbosity") is not None:
            body["verbosity"] = text["verbosity"]
        if payload.get("tools"):
            chat_tools = tools(payload["tools"])
            self.namespaced = {
                t["function"]["name"]
                for t in chat_tools
                if NAMESPACE_SEPARATOR in t.get("function", {}).get("name", "")
            }
            if chat_tools:
                body["tools"] = chat_tools
        choice = tool_choice(payload.get("tool_choice"))
        if choice is not None and body.get("tools"):
            body["tool_choice"] = choice
        if payload.get("stream"):
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        body["cache"] = False  # a Responses answer has its own id and may be stored: never served from the cache
        return body

    def call_item(self, call_id: str, name: str, custom: bool, value: str, status: str) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": _new_id("ctc_" if custom else "fc_"),
            "type": "custom_tool_call" if custom else "function_call",
            "status": status,
            "call_id": call_id,
        }
        ns, sep, inner = name.partition(NAMESPACE_SEPARATOR)
        if sep and name in self.namespaced:
            item |= {"namespace": ns, "name": inner}
        else:
            item["name"] = name
        item["input" if custom else "arguments"] = value
        return item

    def response(
        self, status: str, output: list[dict[str, Any]], model: str, usage: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        req = self.request
        reason = req.get("reasoning") or {}
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": req.get("instructions"),
            "max_output_tokens": req.get("max_output_tokens"),
            "model": model or req.get("model") or "",
            "output": output,
            "parallel_tool_calls": req.get("parallel_tool_calls", True),
            "previous_response_id": req.get("previous_response_id"),
            "reasoning": {"effort": reason.get("effort"), "summary": reason.get("summary")},
            "store": self.store,
            "temperature": req.get("temperature", 1.0),
            "text": req.get("text") or {"format": {"type": "text"}},
            "tool_choice": req.get("tool_choice", "auto"),
            "tools": req.get("tools") or [],
            "top_p": req.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage,
            "user": req.get("user"),
            "metadata": req.get("metadata") or {},
        }

    def finish(
        self, response: dict[str, Any], finish_reason: str | None, outcome: router_pb2.Outcome, details: dict[str, Any]
    ) -> dict[str, Any]:
        """The response as it ends: status from the finish reason, usage as charged."""
        reason = _FINISH.get(finish_reason or "")
        response["status"] = "incomplete" if reason else "completed"
        response["incomplete_details"] = {"reason": reason} if reason else None
        prompt = details.get("prompt_tokens_details") or {}
        completion = details.get("completion_tokens_details") or {}
        response["usage"] = {
            "input_tokens": outcome.prompt_tokens,
            "input_tokens_details": {"cached_tokens": int(prompt.get("cached_tokens") or 0)},
            "output_tokens": outcome.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": int(completion.get("reasoning_tokens") or 0)},
            "total_tokens": outcome.prompt_tokens + outcome.completion_tokens,
        }
        self.result = response
        return response

    def reply(self, chat: dict[str, Any], outcome: router_pb2.Outcome) -> dict[str, Any]:
        choices = chat.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message") or {}
        output: list[dict[str, Any]] = []
        parts = []
        if isinstance(message.get("content"), str) and message["content"]:
            parts.append({"type": "output_text", "text": message["content"], "annotations": [], "logprobs": []})
        if isinstance(message.get("refusal"), str) and message["refusal"]:
            parts.append({"type": "refusal", "refusal": message["refusal"]})
        status = "incomplete" if choice.get("finish_reason") in _FINISH else "completed"
        if parts:
            item = {"id": _new_id("msg_"), "type": "message", "status": status, "role": "assistant"}
            output.append({**item, "content": parts})
        for call in message.get("tool_calls") or []:
            custom = call.get("type") == "custom" or "custom" in call
            fn = call.get("custom" if custom else "function") or {}
            value = fn.get("input" if custom else "arguments") or ""
            output.append(
                self.call_item(call.get("id") or _new_id("call_"), fn.get("name", ""), custom, value, "completed")
            )
        response = self.response(status, output, str(chat.get("model") or ""))
        if "_metadata" in chat:
            response["_metadata"] = chat["_metadata"]
        return self.finish(response, choice.get("finish_reason"), outcome, chat.get("usage") or {})

    def translation(self, payload: dict[str, Any]) -> Stream:
        return Stream(self)

    def error(self, err: DomainError, headers: dict[str, str]) -> Response:
        return error_response(err, headers)


class Stream:
    """Chat chunks in, the Responses API's typed events out, each with its `sequence_number`."""

    def __init__(self, dialect: Responses) -> None:
        self.dialect = dialect
        self.sequence = 0
        self.snapshot: dict[str, Any] | None = None
        self.items: list[dict[str, Any]] = []  # the output items, in output_index order
        self.message: dict[str, Any] | None = None
        self.calls: dict[int, dict[str, Any]] = {}  # chat tool-call index -> its item
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] = {}

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = orjson.dumps({"type": kind, **fields, "sequence_number": self.sequence})
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    def _start(self, model: str) -> list[bytes]:
        if self.snapshot is not None:
            return []
        self.snapshot = self.dialect.response("in_progress", [], model)
        return [
            self._event("response.created", response=self.snapshot),
            self._event("response.in_progress", response=self.snapshot),
        ]

    def _add(self, item: dict[str, Any]) -> bytes:
        self.items.append(item)
        return self._event("response.output_item.added", output_index=len(self.items) - 1, item=dict(item))

    def chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        frames = self._start(str(chunk.get("model") or ""))
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                frames += self._text(text)
            for call in delta.get("tool_calls") or []:
                if isinstance(call, dict):
                    frames += self._call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return frames

    def _text(self, text: str) -> list[bytes]:
        frames = []
        if self.message is None:
            self.message = {"id": _new_id("msg_"), "type": "message", "status": "in_progress", "role": "assistant"}
            frames.append(self._add({**self.message, "content": []}))
            self.message["content"] = [{"type": "output_text", "text": "", "annotations": [], "logprobs": []}]
            frames.append(
                self._event(
                    "response.content_part.added",
                    item_id=self.message["id"],
                    output_index=len(self.items) - 1,
                    content_index=0,
                    part=dict(self.message["content"][0]),
                )
            )
            self.items[-1] = self.message
        self.message["content"][0]["text"] += text
        frames.append(
            self._event(
                "response.output_text.delta",
                item_id=self.message["id"],
                output_index=self.items.index(self.message),
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return frames

    def _call(self, call: dict[str, Any]) -> list[bytes]:
        frames = []
        index = call.get("index", 0)
        custom = call.get("type") == "custom" or "custom" in call
        fn = call.get("custom" if custom else "function") or {}
        item = self.calls.get(index)
        if item is None:
            item = self.dialect.call_item(
                call.get("id") or _new_id("call_"), fn.get("name") or "", custom, "", "in_progress"
            )
            self.calls[index] = item
            frames.append(self._add(item))
        piece = fn.get("input" if custom else "arguments")
        if isinstance(piece, str) and piece:
            field = "input" if custom else "arguments"
            item[field] += piece
            kind = "response.custom_tool_call_input.delta" if custom else "response.function_call_arguments.delta"
            frames.append(self._event(kind, item_id=item["id"], output_index=self.items.index(item), delta=piece))
        return frames

    def _close(self, status: str) -> list[bytes]:
        frames = []
        for index, item in enumerate(self.items):
            item["status"] = status
            if item["type"] == "message":
                part = item["content"][0]
                common = {"item_id": item["id"], "output_index": index, "content_index": 0}
                frames.append(self._event("response.output_text.done", **common, text=part["text"], logprobs=[]))
                frames.append(self._event("response.content_part.done", **common, part=part))
            elif item["type"] == "function_call":
                frames.append(
                    self._event(
                        "response.function_call_arguments.done",
                        item_id=item["id"],
                        output_index=index,
                        name=item["name"],
                        arguments=item["arguments"],
                    )
                )
            else:
                frames.append(
                    self._event(
                        "response.custom_tool_call_input.done",
                        item_id=item["id"],
                        output_index=index,
                        input=item["input"],
                    )
                )
            frames.append(self._event("response.output_item.done", output_index=index, item=item))
        return frames

    def finished(self, outcome: router_pb2.Outcome) -> list[bytes]:
        frames = self._start("")
        assert self.snapshot is not None
        status = "incomplete" if self.finish_reason in _FINISH else "completed"
        frames += self._close(status)
        response = self.dialect.finish({**self.snapshot, "output": self.items}, self.finish_reason, outcome, self.usage)
        frames.append(self._event(f"response.{response['status']}", response=response))
        return frames

    def failed(self, error: dict[str, Any]) -> list[bytes]:
        frames = self._start("")
        assert self.snapshot is not None
        nested = error.get("error")
        detail: dict[str, Any] = nested if isinstance(nested, dict) else error
        code, message = detail.get("code") or "server_error", detail.get("message") or "The request failed"
        frames.append(self._event("error", code=code, message=message, param=detail.get("param")))
        for item in self.items:
            item["status"] = "incomplete"
        failed = {
            **self.snapshot,
            "status": "failed",
            "output": self.items,
            "error": {"code": code, "message": message},
        }
        frames.append(self._event("response.failed", response=failed))
        return frames
