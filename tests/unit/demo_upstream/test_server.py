"""The demo upstream through the official openai SDK, raw HTTP and its CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionChunk

from services.demo_upstream import Upstream, start_upstream

ROOT = Path(__file__).resolve().parents[3]
T = TypeVar("T")


class _Background:
    """An upstream on an event loop in a thread, so that sync tests can talk to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.upstream: Upstream = self.run(start_upstream(chunks=4))

    def run(self, coro: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(5)

    def call(self, fn: Callable[[], T]) -> T:
        async def wrapped() -> T:
            return fn()

        return self.run(wrapped())

    def close(self) -> None:
        self.run(self.upstream.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def bg() -> Iterator[_Background]:
    background = _Background()
    yield background
    background.close()


@pytest.fixture
def http(bg: _Background) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{bg.upstream.port}", timeout=5) as client:
        client.post("/_control", json={"reset": True}).raise_for_status()
        client.post("/_stats/reset").raise_for_status()
        yield client


@pytest.fixture
def client(bg: _Background, http: httpx.Client) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=bg.upstream.base_url, api_key="sk-test", max_retries=0, timeout=5) as c:
        yield c


def _chat(client: openai.OpenAI, model: str = "demo-echo", text: str = "hello there") -> str | None:
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
    return reply.choices[0].message.content


def test_models_lists_demo_ids(client: openai.OpenAI) -> None:
    models = list(client.models.list())
    assert "demo-echo" in [m.id for m in models]
    assert {m.owned_by for m in models} == {"demo"}


def test_chat_echoes_the_last_user_message_and_counts_words(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="demo-echo",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "hello there"}, {"type": "text", "text": "world"}],
            },
        ],
    )
    assert reply.id.startswith("chatcmpl-")
    assert (reply.object, reply.model) == ("chat.completion", "demo-echo")
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "echo: hello there world"
    assert choice.message.refusal is None
    assert choice.finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (9, 4, 13)


def test_chat_stream_splits_the_reply_and_ends_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="demo-echo",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content, last = chunks[:-1], chunks[-1]
    assert len(content) == 4
    assert content[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in content] == [None, None, None, "stop"]
    assert "".join(c.choices[0].delta.content or "" for c in content) == "echo: one two three"
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (3, 4, 7)


@pytest.mark.parametrize(("model", "include_usage"), [("demo-echo", False), ("no-usage", True)])
def test_stream_without_usage_chunk(client: openai.OpenAI, model: str, include_usage: bool) -> None:
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": include_usage},
    )
    chunks = list(stream)
    assert len(chunks) == 4
    assert all(c.choices and c.usage is None for c in chunks)


def test_max_tokens_truncates_to_words(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="demo-echo", messages=[{"role": "user", "content": "a b c d"}], max_tokens=2
    )
    assert reply.choices[0].message.content == "echo: a"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 2

    stream = client.chat.completions.create(
        model="demo-echo", messages=[{"role": "user", "content": "a b"}], max_completion_tokens=1, stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo:"
    assert chunks[-1].choices[0].finish_reason == "length"


def test_legacy_completions(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="demo-echo", prompt="say this please")
    assert (reply.object, reply.choices[0].text, reply.choices[0].finish_reason) == (
        "text_completion",
        "echo: say this please",
        "stop",
    )
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (3, 4)

    chunks = list(
        client.completions.create(
            model="demo-echo", prompt="say it", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks[:-1]) == "echo: say it"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 5


def test_embeddings_are_deterministic_in_both_encodings(client: openai.OpenAI) -> None:
    as_base64 = client.embeddings.create(model="demo-embed", input=["a b c", "other text"])
    as_float = client.embeddings.create(model="demo-embed", input=["a b c", "other text"], encoding_format="float")
    vectors = [d.embedding for d in as_base64.data]
    assert vectors == [d.embedding for d in as_float.data]
    assert [len(v) for v in vectors] == [8, 8]
    assert vectors[0] != vectors[1]
    assert all(-1 <= x < 1 for x in vectors[0])
    assert as_base64.usage.prompt_tokens == 5
    single = client.embeddings.create(model="demo-embed", input="a b c", dimensions=3, encoding_format="float")
    assert len(single.data[0].embedding) == 3


@pytest.mark.parametrize(
    ("model", "error", "status"),
    [
        ("fail-500", openai.InternalServerError, 500),
        ("fail-429", openai.RateLimitError, 429),
        ("fail-401", openai.AuthenticationError, 401),
        ("fail-503", openai.InternalServerError, 503),
    ],
)
def test_failing_model_names(
    client: openai.OpenAI, model: str, error: type[openai.APIStatusError], status: int
) -> None:
    with pytest.raises(error) as caught:
        _chat(client, model)
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict) and caught.value.body["message"]
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "1"


def test_garbage_answers_200_with_a_non_json_body(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={"model": "garbage", "messages": []})
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_hang_never_answers_and_the_server_goes_on(http: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        http.post("/v1/chat/completions", json={"model": "hang", "messages": []}, timeout=0.2)
    assert http.get("/health").json() == {"status": "ok"}
    assert http.get("/_stats").json()["requests"]["/v1/chat/completions hang"] == 1


def test_cut_after_drops_the_stream(client: openai.OpenAI) -> None:
    received: list[ChatCompletionChunk] = []
    stream = client.chat.completions.create(
        model="cut-after-2", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        received.extend(stream)
    assert len(received) == 2
    assert all(c.choices[0].finish_reason is None for c in received)
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        _chat(client, "cut-after-0")


def test_slow_model_adds_delay(client: openai.OpenAI) -> None:
    started = time.perf_counter()
    assert _chat(client, "slow-150") == "echo: hello there"
    assert time.perf_counter() - started >= 0.15


def test_control_fails_the_next_requests(client: openai.OpenAI, http: httpx.Client) -> None:
    assert http.post("/_control", json={"model": "demo-echo", "status": 503, "times": 2}).json() == {"ok": True}
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            _chat(client)
    assert _chat(client, "demo-echo-large") == "echo: hello there"
    assert _chat(client) == "echo: hello there"


def test_control_wildcard_until_reset(client: openai.OpenAI, http: httpx.Client) -> None:
    http.post("/_control", json={"model": "*", "status": 500, "times": -1}).raise_for_status()
    for model in ("demo-echo", "demo-echo-large", "demo-echo"):
        with pytest.raises(openai.InternalServerError):
            _chat(client, model)
    with pytest.raises(openai.InternalServerError):
        client.models.list()
    http.post("/_control", json={"reset": True}).raise_for_status()
    assert _chat(client) == "echo: hello there"


def test_require_key_and_stats_show_the_authorization(bg: _Background, http: httpx.Client) -> None:
    http.post("/_control", json={"model": "demo-echo", "require_key": "sk-right"}).raise_for_status()
    with openai.OpenAI(base_url=bg.upstream.base_url, api_key="sk-wrong", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError):
            _chat(wrong)
        assert _chat(wrong, "demo-echo-large") == "echo: hello there"
    with openai.OpenAI(base_url=bg.upstream.base_url, api_key="sk-right", max_retries=0) as right:
        assert _chat(right) == "echo: hello there"
    stats = http.get("/_stats").json()
    assert stats["requests"] == {
        "/v1/chat/completions demo-echo": 2,
        "/v1/chat/completions demo-echo-large": 1,
    }
    assert stats["total"] == 3
    assert stats["last_authorization"] == {
        "demo-echo": "Bearer sk-right",
        "demo-echo-large": "Bearer sk-wrong",
    }
    assert stats["last_fields"] == {"demo-echo": ["messages", "model"], "demo-echo-large": ["messages", "model"]}
    http.post("/_stats/reset").raise_for_status()
    empty = {"requests": {}, "total": 0, "last_authorization": {}, "last_fields": {}, "last_bodies": {}}
    assert http.get("/_stats").json() == empty


def test_worst_usage_reports_the_most_a_provider_could_bill(client: openai.OpenAI, http: httpx.Client) -> None:
    http.post("/_control", json={"model": "demo-echo", "usage": "worst"}).raise_for_status()
    tools: Any = [{"type": "function", "function": {"name": "f"}}]
    messages: Any = [{"role": "user", "content": "héllo there"}]
    reply = client.chat.completions.create(model="demo-echo", messages=messages, max_tokens=7, n=3, tools=tools)
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == len("héllo there".encode()) + len(orjson.dumps(tools))
    assert reply.usage.completion_tokens == 7 * 3
    text = client.completions.create(model="demo-echo", prompt="a b", max_tokens=2)
    assert text.usage is not None and (text.usage.prompt_tokens, text.usage.completion_tokens) == (3, 2)
    vectors = client.embeddings.create(model="demo-echo", input=["漢字"])
    assert vectors.usage.prompt_tokens == 6
    assert _chat(client, "demo-echo-large") == "echo: hello there"  # other models keep the word rule
    http.post("/_control", json={"model": "demo-echo", "usage": "words"}).raise_for_status()
    again = client.chat.completions.create(model="demo-echo", messages=messages, max_tokens=7, n=3)
    assert again.usage is not None and (again.usage.prompt_tokens, again.usage.completion_tokens) == (2, 3)


def test_script_answers_tool_calls_in_order(client: openai.OpenAI, http: httpx.Client) -> None:
    weather = {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_1"}
    script = [
        {"tool_calls": [weather], "usage": {"prompt_tokens": 11, "completion_tokens": 5}},
        {"content": "It is sunny in Paris", "tool_calls": [{"name": "patch", "input": "*** Begin Patch"}]},
        {"content": "done"},
    ]
    http.post("/_control", json={"model": "demo-echo", "script": script}).raise_for_status()
    first = client.chat.completions.create(model="demo-echo", messages=[{"role": "user", "content": "weather?"}])
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert (first.choices[0].finish_reason, call.id, call.function.name) == ("tool_calls", "call_1", "get_weather")  # type: ignore[union-attr]
    assert orjson.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert first.usage is not None and (first.usage.prompt_tokens, first.usage.total_tokens) == (11, 16)

    stream = client.chat.completions.create(
        model="demo-echo",
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        n=2,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = {
        i: "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == i)
        for i in (0, 1)
    }
    assert text == {0: "It is sunny in Paris", 1: "It is sunny in Paris"}
    inputs = "".join(
        (t.model_extra or {}).get("custom", {}).get("input", "")
        for c in chunks
        if c.choices and c.choices[0].index == 0
        for t in c.choices[0].delta.tool_calls or []
    )
    assert inputs == "*** Begin Patch"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls", "tool_calls"]
    assert chunks[-1].usage is not None and not chunks[-1].choices
    assert _chat(client) == "done"
    assert _chat(client) == "echo: hello there"  # the script is spent
    assert http.get("/_stats").json()["last_bodies"]["demo-echo"]["messages"][-1]["content"] == "hello there"


@pytest.mark.parametrize(
    "spec",
    [
        {"status": "x"},
        {"status": 200},
        {"status": 500, "times": -2},
        {"model": 3},
        {"usage": "max"},
        {"script": {"content": "x"}},
        {"script": [{"tool_calls": [{"arguments": "{}"}]}]},
        {"script": [{"content": 3}]},
    ],
)
def test_control_rejects_bad_specs(http: httpx.Client, spec: dict[str, Any]) -> None:
    assert http.post("/_control", json=spec).status_code == 400


def test_in_process_control_and_stats(bg: _Background, client: openai.OpenAI) -> None:
    upstream = bg.upstream
    bg.call(lambda: upstream.control(model="demo-echo", status=502))
    with pytest.raises(openai.InternalServerError):
        _chat(client)
    assert _chat(client) == "echo: hello there"
    bg.call(lambda: upstream.control(model="demo-echo", require_key="sk-other"))
    with pytest.raises(openai.AuthenticationError):
        _chat(client)
    bg.call(lambda: upstream.control(reset=True))
    assert _chat(client) == "echo: hello there"
    stats = bg.call(lambda: upstream.stats)
    assert stats["total"] == 4
    assert stats["last_authorization"]["demo-echo"] == "Bearer sk-test"


def _raw(port: int, data: bytes) -> bytes:
    """Sends data on a fresh connection and reads until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT HTTP\r\n\r\n",
        b"GET /health HTTP/2.0\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 70000,
    ],
)
def test_malformed_requests_get_400_and_the_server_survives(
    bg: _Background, http: httpx.Client, request_bytes: bytes
) -> None:
    head, _, body = _raw(bg.upstream.port, request_bytes).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert "message" in orjson.loads(body)["error"]
    assert http.get("/health").status_code == 200


def test_bad_bodies_and_routes_keep_the_connection(http: httpx.Client) -> None:
    assert http.post("/v1/chat/completions", content=b"{nope").status_code == 400
    assert http.post("/v1/chat/completions", json=[1]).status_code == 400
    assert http.post("/v1/chat/completions", json={"messages": []}).status_code == 400
    assert http.post("/v1/chat/completions", json={"model": "m", "messages": "hi"}).status_code == 400
    assert http.post("/v1/embeddings", json={"model": "m", "input": [1.5, 2]}).status_code == 400
    assert http.get("/v1/nowhere").status_code == 404
    assert http.get("/v1/chat/completions").status_code == 405
    assert http.get("/health").json() == {"status": "ok"}


def test_pipelined_keep_alive_requests(bg: _Background) -> None:
    data = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nConnection: close\r\n\r\n"
    received = _raw(bg.upstream.port, data)
    assert received.count(b"HTTP/1.1 200 OK") == 2
    assert received.endswith(b'{"status":"ok"}')


def test_cli_runs_until_sigterm() -> None:
    env = {**os.environ, "TOLLGATE_DEMO_UPSTREAM_CHUNKS": "3"}
    args = [sys.executable, "-m", "services.demo_upstream", "--port", "0", "--latency-ms", "50"]
    with subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("demo upstream listening on http://127.0.0.1:")
        base_url = line.split()[-1] + "/v1"
        with openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=5) as c:
            started = time.perf_counter()
            assert _chat(c) == "echo: hello there"
            assert time.perf_counter() - started >= 0.05
            stream = c.chat.completions.create(
                model="demo-echo", messages=[{"role": "user", "content": "x"}], stream=True
            )
            assert len(list(stream)) == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        assert proc.stdout.read() == b""
        assert proc.stderr.read() == b""


def _sse(http: httpx.Client, model: str) -> list[str]:
    body = {"model": model, "messages": [{"role": "user", "content": "one two three"}], "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as reply:
        return [line[6:] for line in reply.iter_lines() if line.startswith("data: ")]


def test_quirks_and_answer_model_stray_from_openai_as_asked(http: httpx.Client) -> None:
    http.post("/_control", json={"model": "q", "quirks": ["no_done", "no_finish", "new_ids"]}).raise_for_status()
    http.post("/_control", json={"model": "q", "answer_model": "/models/x.gguf"}).raise_for_status()
    events = _sse(http, "q")
    assert "[DONE]" not in events
    chunks = [orjson.loads(e) for e in events]
    assert len({c["id"] for c in chunks}) == len(chunks) > 1
    assert all("finish_reason" not in ch for c in chunks for ch in c["choices"])
    assert {c["model"] for c in chunks} == {"/models/x.gguf"}
    assert _sse(http, "end-after-2")[-1] != "[DONE]" and len(_sse(http, "end-after-2")) == 2
    refused = http.post("/_control", json={"model": "q", "quirks": ["sometimes"]})
    assert refused.status_code == 400
    http.post("/_control", json={"model": "q", "quirks": [], "answer_model": ""}).raise_for_status()
    assert _sse(http, "q")[-1] == "[DONE]"


def test_token_id_prompts_and_inputs_count_one_token_each(http: httpx.Client) -> None:
    text = http.post("/v1/completions", json={"model": "m", "prompt": [[7, 8], [9]]}).json()
    assert text["choices"][0]["text"] == "echo: 7 8 9" and text["usage"]["prompt_tokens"] == 3
    vectors = http.post("/v1/embeddings", json={"model": "m", "input": [4, 5, 6], "dimensions": 3}).json()
    assert len(vectors["data"]) == 1 and len(vectors["data"][0]["embedding"]) == 3
    assert vectors["usage"]["prompt_tokens"] == 3
    http.post("/_control", json={"model": "m", "quirks": ["float_only"]}).raise_for_status()
    floats = http.post("/v1/embeddings", json={"model": "m", "input": "a", "encoding_format": "base64"}).json()
    assert isinstance(floats["data"][0]["embedding"], list)
