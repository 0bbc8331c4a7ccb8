"""The demo upstream's HTTP/1.1 server: asyncio.Protocol, keep-alive, no framework (see the package doc)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import math
import os
import re
import socket
import struct
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeGuard, cast

import orjson

MODELS = ("demo-echo", "demo-echo-large", "demo-embed")
_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024
_JSON = b"application/json"
_SSE = b"text/event-stream"
_PHRASES = {s.value: s.phrase.encode() for s in HTTPStatus}
_FAIL = re.compile(r"fail-([45]\d\d)")
_CUT = re.compile(r"cut-after-(\d+)")
_SLOW = re.compile(r"slow-(\d+)")
_END = re.compile(r"end-after-(\d+)")
# Ways a real upstream strays from OpenAI's stream (see the package doc).
QUIRKS = frozenset({"no_done", "no_finish", "new_ids", "float_only"})


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


@dataclass(slots=True)
class _Reply:
    status: int
    body: bytes | list[bytes]  # bytes: Content-Length body; list: chunked, one chunk per item
    content_type: bytes = _JSON
    headers: bytes = b""
    delay: float = 0.0  # seconds before the first byte; math.inf never answers
    gap: float = 0.0  # seconds between chunks
    cut: bool = False  # drop the connection after the chunks, without ending the body


class _Answer(Exception):
    """Ends request handling early with this reply."""

    def __init__(self, reply: _Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def _json(obj: object, status: int = 200) -> _Reply:
    return _Reply(status, orjson.dumps(obj))


def _error(status: int, message: str) -> _Reply:
    code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
    kind = "server_error" if status >= 500 else "invalid_request_error"
    error = {"message": message, "type": kind, "param": None, "code": code}
    reply = _json({"error": error}, status)
    if status == 429:
        reply.headers = b"retry-after: 1\r\n"
    return reply


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _words(text: str) -> int:
    return len(text.split())


def _bytes(text: str | bytes) -> int:
    return len(text if isinstance(text, bytes) else text.encode())


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _split(text: str, n: int) -> list[str]:
    cuts = [len(text) * i // n for i in range(n + 1)]
    return [text[a:b] for a, b in itertools.pairwise(cuts)]


def _vector(text: str, dims: int) -> list[float]:
    # k/32768 is exact in float32, so the float and base64 encodings carry the same numbers.
    raw = hashlib.shake_256(text.encode()).digest(2 * dims)
    return [(v - 32768) / 32768 for v in struct.unpack(f"<{dims}H", raw)]


def _rule(table: dict[str, Any], model: str, value: object) -> None:
    """Set `model`'s entry in a control table, or lift it when `value` is empty."""
    if value:
        table[model] = value
    else:
        table.pop(model, None)


def _token_ids(value: object) -> list[list[int]] | None:
    """A prompt or input of token ids (one array, or an array of arrays) as its arrays; None otherwise."""
    if isinstance(value, list) and value and all(_is_int(t) for t in value):
        return [value]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(i, list) and i and all(_is_int(t) for t in i) for i in value)
    ):
        return value
    return None


def _event(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _scripted_reply(reply: object) -> bool:
    if not isinstance(reply, dict) or not isinstance(reply.get("content", ""), str | None):
        return False
    calls = reply.get("tool_calls", [])
    return (
        isinstance(calls, list)
        and all(
            isinstance(c, dict) and isinstance(c.get("name"), str) and ("arguments" in c or "input" in c) for c in calls
        )
        and isinstance(reply.get("usage", {}), dict)
    )


def _tool_body(call: dict[str, Any]) -> dict[str, object]:
    """A scripted tool call as OpenAI sends it: a function with JSON arguments, or a custom tool's free input."""
    if "input" in call:
        return {"type": "custom", "custom": {"name": call["name"], "input": str(call["input"])}}
    args = call["arguments"]
    return {
        "type": "function",
        "function": {"name": call["name"], "arguments": args if isinstance(args, str) else orjson.dumps(args).decode()},
    }


class _App:
    def __init__(self, latency_ms: float, chunks: int, chunk_gap_ms: float) -> None:
        self.latency = latency_ms / 1000
        self.chunks = max(1, chunks)
        self.gap = chunk_gap_ms / 1000
        self.rules: dict[str, list[int]] = {}  # model -> [status, times left]
        self.keys: dict[str, str] = {}
        self.requests: Counter[str] = Counter()
        self.last_auth: dict[str, str] = {}
        self.last_fields: dict[str, list[str]] = {}
        self.usage_modes: dict[str, str] = {}  # model -> "worst"
        self.scripts: dict[str, deque[dict[str, Any]]] = {}  # model -> the replies it gives next, in order
        self.last_bodies: dict[str, dict[str, Any]] = {}
        self.quirks: dict[str, frozenset[str]] = {}  # model -> ways its answers stray from OpenAI's
        self.answer_models: dict[str, str] = {}  # model -> the `model` string its answers carry
        self.usage_details: dict[str, dict[str, Any]] = {}  # model -> fields merged into each reply's usage
        self.connections: set[_Connection] = set()

    def handle(self, req: _Request) -> _Reply:
        path = req.path.partition("?")[0]
        route = _ROUTES.get(path)
        if route is None:
            return _error(404, f"unknown path {path}")
        if req.method != route[0]:
            return _error(405, f"{req.method} is not allowed on {path}")
        try:
            return route[1](self, req)
        except _Answer as answer:
            return answer.reply
        except Exception:  # a fake upstream must answer even when a request finds a bug in it
            return _error(500, "the demo upstream failed on this request")

    # control plane

    def apply_control(self, spec: Mapping[str, object]) -> None:
        if spec.get("reset") is True:
            self.rules.clear()
            self.keys.clear()
            self.usage_modes.clear()
            self.scripts.clear()
            self.quirks.clear()
            self.answer_models.clear()
            self.usage_details.clear()
        model = spec.get("model", "*")
        if not isinstance(model, str) or not model:
            raise ValueError("model must be a non-empty string")
        if "status" in spec:
            status, times = spec["status"], spec.get("times", 1)
            if not _is_int(status) or not 400 <= status <= 599:
                raise ValueError("status must be an integer from 400 to 599")
            if not _is_int(times) or times < -1:
                raise ValueError("times must be an integer >= -1")
            if times == 0:
                self.rules.pop(model, None)
            else:
                self.rules[model] = [status, times]
        if "require_key" in spec:
            key = spec["require_key"]
            if not isinstance(key, str):
                raise ValueError("require_key must be a string")
            _rule(self.keys, model, key)
        if "usage" in spec:
            mode = spec["usage"]
            if mode not in ("words", "worst"):
                raise ValueError("usage must be 'words' or 'worst'")
            _rule(self.usage_modes, model, mode if mode == "worst" else None)
        if "script" in spec:
            script = spec["script"]
            if not isinstance(script, list) or not all(_scripted_reply(r) for r in script):
                raise ValueError(
                    "script must be a list of replies: objects with optional content (string or null), tool_calls "
                    "(objects with a string name and arguments or input), finish_reason, usage and logprobs"
                )
            _rule(self.scripts, model, deque(script) if script else None)
        if "usage_details" in spec:
            details = spec["usage_details"]
            if not isinstance(details, dict):
                raise ValueError("usage_details must be an object (fields merged into usage; {} clears)")
            _rule(self.usage_details, model, details)
        if "quirks" in spec:
            quirks = spec["quirks"]
            if not isinstance(quirks, list) or not all(q in QUIRKS for q in quirks):
                raise ValueError(f"quirks must be a list of {', '.join(sorted(QUIRKS))}")
            _rule(self.quirks, model, frozenset(quirks) if quirks else None)
        if "answer_model" in spec:
            answer = spec["answer_model"]
            if not isinstance(answer, str):
                raise ValueError("answer_model must be a string ('' answers with the model asked for)")
            _rule(self.answer_models, model, answer)

    def _quirk(self, model: str, quirk: str) -> bool:
        return quirk in self.quirks.get(model, self.quirks.get("*", frozenset()))

    def _answer_model(self, model: str) -> str:
        return self.answer_models.get(model, self.answer_models.get("*", model))

    def _stream_events(self, model: str, events: list[bytes]) -> list[bytes]:
        """Chunks as the quirks of `model` send them: each with its own id, without any finish_reason."""
        if not (self._quirk(model, "no_finish") or self._quirk(model, "new_ids")):
            return events
        out = []
        for event in events:
            obj = orjson.loads(event[6:])
            if self._quirk(model, "new_ids"):
                obj["id"] = "chatcmpl-" + os.urandom(12).hex()
            for choice in obj.get("choices") or ():
                if self._quirk(model, "no_finish"):
                    choice.pop("finish_reason", None)
            out.append(_event(obj))
        return out

    def _ending(self, model: str) -> bytes:
        return b"" if self._quirk(model, "no_done") else b"data: [DONE]\n\n"

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "total": sum(self.requests.values()),
            "last_authorization": dict(self.last_auth),
            "last_fields": dict(self.last_fields),
            "last_bodies": dict(self.last_bodies),
        }

    def _control(self, req: _Request) -> _Reply:
        try:
            self.apply_control(_json_body(req))
        except ValueError as exc:
            return _error(400, str(exc))
        return _json({"ok": True})

    def _stats(self, req: _Request) -> _Reply:
        return _json(self.stats())

    def reset_stats(self) -> None:
        self.requests.clear()
        self.last_auth.clear()
        self.last_fields.clear()
        self.last_bodies.clear()

    def _stats_reset(self, req: _Request) -> _Reply:
        self.reset_stats()
        return _json({"ok": True})

    def _health(self, req: _Request) -> _Reply:
        return _json({"status": "ok"})

    # the API

    def _gate(self, req: _Request, path: str, model: str) -> None:
        self.requests[f"{path} {model}"] += 1
        auth = req.headers.get("authorization")
        if auth is not None:
            self.last_auth[model] = auth
        key = self.keys.get(model, self.keys.get("*"))
        if key is not None and auth != f"Bearer {key}":
            raise _Answer(_error(401, "Incorrect API key provided."))
        for name in (model, "*"):
            rule = self.rules.get(name)
            if rule is not None:
                if rule[1] == 1:
                    del self.rules[name]
                elif rule[1] > 1:
                    rule[1] -= 1
                raise _Answer(_error(rule[0], f"injected failure for model {model}"))

    def _admit(self, req: _Request, path: str) -> tuple[dict[str, Any], str, float]:
        body = _json_body(req)
        model = body.get("model")
        name = model if isinstance(model, str) and model else "-"
        self.last_fields[name] = sorted(body)
        self.last_bodies[name] = body
        self._gate(req, path, name)
        if name == "-":
            raise _Answer(_error(400, "model is required"))
        if fail := _FAIL.fullmatch(name):
            raise _Answer(_error(int(fail[1]), f"{name}: injected failure"))
        if name == "garbage":
            raise _Answer(_Reply(200, b"<html>this is not json</html>"))
        if name == "hang":
            raise _Answer(_Reply(200, b"", delay=math.inf))
        slow = _SLOW.fullmatch(name)
        return body, name, self.latency + (int(slow[1]) / 1000 if slow else 0.0)

    def _models(self, req: _Request) -> _Reply:
        self._gate(req, "/v1/models", "-")
        data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "demo"} for m in MODELS]
        return _Reply(200, orjson.dumps({"object": "list", "data": data}), delay=self.latency)

    def _chat(self, req: _Request) -> _Reply:
        body, model, delay = self._admit(req, "/v1/chat/completions")
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise _Answer(_error(400, "messages must be a list of objects"))
        texts = [_text(m.get("content")) for m in messages]
        user = [t for m, t in zip(messages, texts, strict=True) if m.get("role") == "user"]
        prompt_tokens = sum(_words(t) for t in texts)
        script = self.scripts.get(model, self.scripts.get("*"))
        if script:
            return self._scripted(body, model, delay, script.popleft(), prompt_tokens)
        if self._worst(model):
            prompt_tokens = sum(_bytes(t) for t in texts) + (
                _bytes(orjson.dumps(body["tools"])) if body.get("tools") else 0
            )
        return self._complete(body, model, delay, "echo: " + (user[-1] if user else ""), prompt_tokens, True)

    def _completions(self, req: _Request) -> _Reply:
        body, model, delay = self._admit(req, "/v1/completions")
        prompt = body.get("prompt")
        ids = _token_ids(prompt)
        if ids is not None:  # token ids: each id is one token, and the echo names them
            prompt = " ".join(" ".join(map(str, i)) for i in ids)
        elif isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
            prompt = " ".join(prompt)
        if not isinstance(prompt, str):
            raise _Answer(_error(400, "prompt must be a string, a list of strings or token ids"))
        prompt_tokens = _bytes(prompt) if self._worst(model) and ids is None else _words(prompt)
        return self._complete(body, model, delay, "echo: " + prompt, prompt_tokens, False)

    def _complete(
        self, body: dict[str, Any], model: str, delay: float, reply: str, prompt_tokens: int, chat: bool
    ) -> _Reply:
        words = reply.split()
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        finish = "stop"
        if _is_int(limit) and 0 <= limit < len(words):
            words = words[:limit]
            reply, finish = " ".join(words), "length"
        n = len(words)
        if self._worst(model):  # every choice asked for, each at its limit
            choices = body.get("n")
            n = (limit if _is_int(limit) else n) * (choices if _is_int(choices) and choices > 1 else 1)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
        usage |= self.usage_details.get(model, self.usage_details.get("*", {}))
        head: dict[str, object] = {
            "id": ("chatcmpl-" if chat else "cmpl-") + os.urandom(12).hex(),
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": self._answer_model(model),
            "system_fingerprint": None,
        }
        cut = _CUT.fullmatch(model)
        if not body.get("stream"):
            if cut:
                return _Reply(200, [], delay=delay, cut=True)
            message = {"role": "assistant", "content": reply, "refusal": None}
            choice = {"index": 0, "message": message} if chat else {"index": 0, "text": reply}
            obj = {**head, "choices": [{**choice, "logprobs": None, "finish_reason": finish}]}
            if model != "no-usage":
                obj["usage"] = usage
            return _Reply(200, orjson.dumps(obj), delay=delay)

        options = body.get("stream_options")
        asked = isinstance(options, dict) and options.get("include_usage") is True
        with_usage = asked and model != "no-usage"
        if chat:
            head["object"] = "chat.completion.chunk"
        if with_usage:
            head["usage"] = None
        pieces = _split(reply, max(self.chunks, int(cut[1]) + 1) if cut else self.chunks)
        events = []
        for i, piece in enumerate(pieces):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            item: dict[str, object] = {"index": 0, "delta": delta} if chat else {"index": 0, "text": piece}
            item |= {"logprobs": None, "finish_reason": finish if i == len(pieces) - 1 else None}
            events.append(_event({**head, "choices": [item]}))
        events = self._stream_events(model, events)
        if cut:
            events = events[: int(cut[1])]
        elif end := _END.fullmatch(model):  # N chunks, then the body ends cleanly without [DONE]
            events = events[: int(end[1])]
        else:
            if with_usage:
                events[-1] += _event({**head, "choices": [], "usage": usage})
            events[-1] += self._ending(model)
        return _Reply(200, events, _SSE, b"cache-control: no-cache\r\n", delay, self.gap, cut=bool(cut))

    def _scripted(
        self, body: dict[str, Any], model: str, delay: float, entry: dict[str, Any], prompt_tokens: int
    ) -> _Reply:
        content = entry.get("content", None if entry.get("tool_calls") else "")
        calls = [
            {"id": c.get("id") or f"call_{os.urandom(6).hex()}", **_tool_body(c)} for c in entry.get("tool_calls", [])
        ]
        finish = entry.get("finish_reason") or ("tool_calls" if calls else "stop")
        completion = _words(content or "") + sum(max(1, len(orjson.dumps(c)) // 16) for c in calls)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion}
        usage |= self.usage_details.get(model, self.usage_details.get("*", {})) | entry.get("usage", {})
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        asked = body.get("n")
        n = asked if _is_int(asked) and asked > 1 else 1
        head: dict[str, object] = {
            "id": "chatcmpl-" + os.urandom(12).hex(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self._answer_model(model),
            "system_fingerprint": None,
        }
        logprobs = entry.get("logprobs")
        if not body.get("stream"):
            message: dict[str, object] = {"role": "assistant", "content": content, "refusal": None}
            if calls:
                message["tool_calls"] = calls
            choices = [
                {"index": i, "message": message, "logprobs": logprobs, "finish_reason": finish} for i in range(n)
            ]
            return _Reply(200, orjson.dumps({**head, "choices": choices, "usage": usage}), delay=delay)

        head["object"] = "chat.completion.chunk"
        deltas: list[dict[str, object]] = [{"role": "assistant", "content": None if calls and not content else ""}]
        deltas += [{"content": piece} for piece in _split(content, self.chunks)] if content else []
        for i, call in enumerate(calls):
            fn = call.get("function") or call.get("custom")
            assert isinstance(fn, dict)
            kind, field = ("function", "arguments") if "function" in call else ("custom", "input")
            first = {"index": i, "id": call["id"], "type": kind, kind: {"name": fn["name"], field: ""}}
            deltas.append({"tool_calls": [first]})
            deltas += [{"tool_calls": [{"index": i, kind: {field: p}}]} for p in _split(fn[field], self.chunks)]
        events = []
        for i in range(n):
            for j, delta in enumerate(deltas):
                last = j == len(deltas) - 1
                item = {"index": i, "delta": delta, "logprobs": logprobs if last else None}
                events.append(_event({**head, "choices": [{**item, "finish_reason": finish if last else None}]}))
        events = self._stream_events(model, events)
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            events.append(_event({**head, "choices": [], "usage": usage}))
        events[-1] += self._ending(model)
        return _Reply(200, events, _SSE, b"cache-control: no-cache\r\n", delay, self.gap)

    def _worst(self, model: str) -> bool:
        return self.usage_modes.get(model, self.usage_modes.get("*")) == "worst"

    def _embeddings(self, req: _Request) -> _Reply:
        body, model, delay = self._admit(req, "/v1/embeddings")
        inputs = body.get("input")
        ids = _token_ids(inputs)
        if ids is not None:  # token ids: each id is one token
            inputs = [" ".join(map(str, i)) for i in ids]
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
            raise _Answer(_error(400, "input must be a string or a non-empty list of strings"))
        dims = body.get("dimensions", 8)
        if not _is_int(dims) or not 1 <= dims <= 4096:
            raise _Answer(_error(400, "dimensions must be an integer from 1 to 4096"))
        data = []
        for i, text in enumerate(inputs):
            vector = _vector(text, dims)
            embedding: object = vector
            if body.get("encoding_format") == "base64" and not self._quirk(model, "float_only"):
                embedding = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        tokens = sum((_bytes if self._worst(model) else _words)(t) for t in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        obj = {"object": "list", "data": data, "model": self._answer_model(model), "usage": usage}
        return _Reply(200, orjson.dumps(obj), delay=delay)

    def _responses(self, req: _Request) -> _Reply:
        """OpenAI's Responses API over the same echo and token rule (input items' text words in, reply words out)."""
        body, model, delay = self._admit(req, "/v1/responses")
        given = body.get("input")
        items = [{"type": "message", "role": "user", "content": given}] if isinstance(given, str) else given
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise _Answer(_error(400, "input must be a string or a list of input items"))
        texts = [_text(i.get("content")) for i in items if i.get("type", "message") == "message"]
        user = [_text(i.get("content")) for i in items if i.get("role") == "user"]
        instructions = body.get("instructions")
        prompt_tokens = sum(_words(t) for t in texts) + (_words(instructions) if isinstance(instructions, str) else 0)
        words = ("echo: " + (user[-1] if user else "")).split()
        limit = body.get("max_output_tokens")
        status, incomplete = "completed", None
        if _is_int(limit) and 0 <= limit < len(words):
            words, status, incomplete = words[:limit], "incomplete", {"reason": "max_output_tokens"}
        reply = " ".join(words)
        usage: dict[str, Any] = {
            "input_tokens": prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": len(words),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt_tokens + len(words),
        }
        usage |= self.usage_details.get(model, self.usage_details.get("*", {}))
        item_id = "msg_" + os.urandom(12).hex()
        part = {"type": "output_text", "text": reply, "annotations": [], "logprobs": []}
        item = {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": [part]}
        response: dict[str, Any] = {
            "id": "resp_" + os.urandom(12).hex(),
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": incomplete,
            "instructions": instructions,
            "max_output_tokens": limit,
            "model": model,
            "output": [item],
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": None if model == "no-usage" else usage,
            "metadata": {},
        }
        cut = _CUT.fullmatch(model)
        if not body.get("stream"):
            if cut:
                return _Reply(200, [], delay=delay, cut=True)
            return _Reply(200, orjson.dumps(response), delay=delay)
        pieces = _split(reply, max(self.chunks, int(cut[1]) + 1) if cut else self.chunks)
        started = {**response, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
        where = {"item_id": item_id, "output_index": 0, "content_index": 0}
        typed: list[dict[str, Any]] = [
            {"type": "response.created", "response": started},
            {"type": "response.in_progress", "response": started},
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**item, "status": "in_progress", "content": []},
            },
            {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
        ]
        deltas = [{"type": "response.output_text.delta", **where, "delta": p, "logprobs": []} for p in pieces]
        if cut:
            typed += deltas[: int(cut[1])]
        else:
            typed += [
                *deltas,
                {"type": "response.output_text.done", **where, "text": reply, "logprobs": []},
                {"type": "response.content_part.done", **where, "part": part},
                {"type": "response.output_item.done", "output_index": 0, "item": item},
                {"type": f"response.{status}", "response": response},
            ]
        events = [
            b"event: %s\n%s" % (e["type"].encode(), _event({**e, "sequence_number": n})) for n, e in enumerate(typed)
        ]
        return _Reply(200, events, _SSE, b"cache-control: no-cache\r\n", delay, self.gap, cut=bool(cut))


_ROUTES = {
    "/v1/chat/completions": ("POST", _App._chat),
    "/v1/responses": ("POST", _App._responses),
    "/v1/completions": ("POST", _App._completions),
    "/v1/embeddings": ("POST", _App._embeddings),
    "/v1/models": ("GET", _App._models),
    "/_control": ("POST", _App._control),
    "/_stats": ("GET", _App._stats),
    "/_stats/reset": ("POST", _App._stats_reset),
    "/health": ("GET", _App._health),
}


def _json_body(req: _Request) -> dict[str, Any]:
    try:
        body = orjson.loads(req.body)
    except orjson.JSONDecodeError:
        raise _Answer(_error(400, "the request body is not valid JSON")) from None
    if not isinstance(body, dict):
        raise _Answer(_error(400, "the request body must be a JSON object"))
    return body


class _BadRequest(Exception):
    pass


def _encode(reply: _Reply, keep_alive: bool) -> tuple[list[bytes], bool]:
    """The reply as the byte strings to write one after the other, and whether to close after them."""
    close = reply.cut or not keep_alive
    if isinstance(reply.body, bytes):
        framing = b"content-length: %d\r\n" % len(reply.body)
        frames = [reply.body]
    else:
        framing = b"transfer-encoding: chunked\r\n"
        frames = [b"%x\r\n%s\r\n" % (len(p), p) for p in reply.body if p] or [b""]
        if not reply.cut:
            frames[-1] += b"0\r\n\r\n"
    head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\n%s%s%s\r\n" % (
        reply.status,
        _PHRASES.get(reply.status, b"Status"),
        reply.content_type,
        framing,
        reply.headers,
        b"connection: close\r\n" if close else b"",
    )
    frames[0] = head + frames[0]
    return frames, close


class _Connection(asyncio.Protocol):
    _transport: asyncio.Transport

    def __init__(self, app: _App) -> None:
        self._app = app
        self._buf = bytearray()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # without it every SSE chunk waits for Nagle and delayed ACKs
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._app.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._app.connections.discard(self)
        if self._task is not None:
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._task is None:
            self._process()
        elif len(self._buf) > _MAX_HEAD + _MAX_BODY:
            self._transport.abort()

    def abort(self) -> asyncio.Task[None] | None:
        self._transport.abort()
        return self._task

    def _process(self) -> None:
        while self._task is None and not self._closed:
            try:
                req = self._parse()
            except _BadRequest as exc:
                self._send(_error(400, str(exc)), keep_alive=False)
                return
            if req is None:
                return
            self._send(self._app.handle(req), req.keep_alive)

    def _parse(self) -> _Request | None:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > _MAX_HEAD:
                raise _BadRequest("request head too large")
            return None
        lines = self._buf[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[1].startswith("/") or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
            raise _BadRequest("malformed request line")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadRequest("malformed header line")
            headers[name.lower()] = value.strip()
        if "transfer-encoding" in headers:
            raise _BadRequest("only Content-Length request bodies are supported")
        length = headers.get("content-length", "0")
        if not length.isdigit() or int(length) > _MAX_BODY:
            raise _BadRequest("bad Content-Length")
        total = end + 4 + int(length)
        if len(self._buf) < total:
            return None
        body = bytes(self._buf[end + 4 : total])
        del self._buf[:total]
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection if parts[2] == "HTTP/1.1" else "keep-alive" in connection
        return _Request(parts[0], parts[1], headers, body, keep_alive)

    def _send(self, reply: _Reply, keep_alive: bool) -> None:
        frames, close = _encode(reply, keep_alive)
        if reply.delay == 0 and (reply.gap == 0 or len(frames) == 1):
            self._transport.write(b"".join(frames))
            if close:
                self._closed = True
                self._transport.close()
        else:
            self._task = asyncio.get_running_loop().create_task(self._send_later(frames, reply, close))

    async def _send_later(self, frames: list[bytes], reply: _Reply, close: bool) -> None:
        if reply.delay == math.inf:
            await asyncio.get_running_loop().create_future()
        else:
            await asyncio.sleep(reply.delay)
        for i, frame in enumerate(frames):
            if i:
                await asyncio.sleep(reply.gap)
            self._transport.write(frame)
        self._task = None
        if close:
            self._closed = True
            self._transport.close()
        else:
            self._process()


class Upstream:
    """A running demo upstream; ``control`` and ``stats`` mirror ``POST /_control`` and ``GET /_stats``."""

    def __init__(self, server: asyncio.Server, app: _App, host: str) -> None:
        self._server = server
        self._app = app
        self.port: int = server.sockets[0].getsockname()[1]
        self.base_url = f"http://{'127.0.0.1' if host in ('', '0.0.0.0') else host}:{self.port}/v1"

    @property
    def stats(self) -> dict[str, Any]:
        return self._app.stats()

    def control(
        self,
        *,
        model: str = "*",
        status: int | None = None,
        times: int = 1,
        require_key: str | None = None,
        usage: str | None = None,
        usage_details: dict[str, Any] | None = None,
        reset: bool = False,
    ) -> None:
        spec: dict[str, object] = {"model": model, "times": times, "reset": reset}
        if usage is not None:
            spec["usage"] = usage
        if usage_details is not None:
            spec["usage_details"] = usage_details
        if status is not None:
            spec["status"] = status
        if require_key is not None:
            spec["require_key"] = require_key
        self._app.apply_control(spec)

    def reset_stats(self) -> None:
        self._app.reset_stats()

    async def close(self) -> None:
        self._server.close()
        tasks = [t for c in list(self._app.connections) if (t := c.abort()) is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)  # lets the aborted transports run connection_lost and close their sockets
        await self._server.wait_closed()


async def start_upstream(
    host: str = "127.0.0.1", port: int = 0, latency_ms: float = 0, chunks: int = 8, chunk_gap_ms: float = 0
) -> Upstream:
    app = _App(latency_ms, chunks, chunk_gap_ms)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(app), host, port, backlog=1024)
    return Upstream(server, app, host)
