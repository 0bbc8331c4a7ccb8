"""Only the catalog steers a provider call, seen from outside: a body naming another URL, headers or call
options is a 400 naming the field, through both adapters, and a second server it points at hears nothing
(so never the platform key); harmless unknown fields are dropped before the provider.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.launcher import Suite
from tests.e2e.support import PLATFORM_KEY, bearer, start_suite

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODELS = ["echo-paid", "echo-litellm"]  # the openai adapter and the litellm adapter, same demo upstream


class Capture:
    """A server that records every request it receives and answers like a provider would."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode(errors="replace")
                seen.append(f"{self.command} {self.path}\n{self.headers}\n{body}")
                reply = b'{"choices":[{"message":{"content":"captured"}}],"usage":{"prompt_tokens":1}}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = _record

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def capture() -> Iterator[Capture]:
    server = Capture()
    yield server
    server.close()


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    running = start_suite(Path(tmp_path_factory.mktemp("provider-call")))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(suite: Suite) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{suite.host}:{suite.ports.gateway}", timeout=30) as session:
        yield session


@pytest.fixture(scope="module")
def key(suite: Suite) -> str:
    return suite.bootstrap_keys()["demo_key"]


def steering(url: str) -> list[tuple[str, object]]:
    return [
        ("api_base", url),
        ("base_url", url),
        ("extra_headers", {"x-forwarded-host": url, "authorization": "Bearer sk-attacker"}),
        ("headers", {"host": url}),
        ("extra_body", {"api_base": url}),
        ("extra_query", {"redirect": url}),
        ("api_version", "2024-01-01"),
        ("custom_llm_provider", "azure"),
        ("mock_response", "free answer"),
        ("litellm_params", {"api_base": url}),
        ("proxy", url),
        ("timeout", 600),
        ("num_retries", 50),
        ("callbacks", ["webhook"]),
    ]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_a_body_that_would_redirect_the_call_is_refused_and_nothing_reaches_the_other_server(
    http: httpx.Client, key: str, capture: Capture, model: str, stream: bool
) -> None:
    for field, value in steering(capture.url):
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream, field: value}
        reply = http.post("/v1/chat/completions", json=body, headers=bearer(key))
        assert reply.status_code == 400, (field, reply.text)
        error = reply.json()["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", field)
        assert field in error["message"]
    completion = {"model": model, "prompt": "hi", "api_base": capture.url}
    reply = http.post("/v1/completions", json=completion, headers=bearer(key))
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "api_base"
    embedding = {"model": "echo-embed", "input": "hi", "base_url": capture.url}
    reply = http.post("/v1/embeddings", json=embedding, headers=bearer(key))
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "base_url"
    assert capture.seen == []


@pytest.mark.parametrize("model", MODELS)
def test_harmless_unknown_fields_never_reach_the_provider(
    suite: Suite, http: httpx.Client, key: str, capture: Capture, model: str
) -> None:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "hello"}],
        "user_email": "someone@example.com",
        "byok": False,
        "tags": ["a"],
        "temperature": 0.2,
    }
    reply = http.post("/v1/chat/completions", json=body, headers=bearer(key))
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == "echo: hello"
    with httpx.Client(base_url=f"http://{suite.host}:{suite.ports.upstream}", timeout=10) as upstream:
        stats = upstream.get("/_stats").json()
    fields = set(stats["last_fields"]["demo-echo"])
    assert {"messages", "model", "temperature"} <= fields
    assert not fields & {"user_email", "byok", "tags"}
    assert stats["last_authorization"]["demo-echo"] == f"Bearer {PLATFORM_KEY}"  # the catalog's key, to its URL


def test_the_other_server_never_saw_the_platform_key(capture: Capture) -> None:
    assert not any(PLATFORM_KEY in request for request in capture.seen)
    assert capture.seen == []


def test_an_image_url_into_the_routers_own_network_is_never_fetched(
    http: httpx.Client, key: str, capture: Capture
) -> None:
    """litellm downloads image URLs itself for some providers: such a URL must name a public host."""
    before = http.get("/v1/credits", headers=bearer(key)).json()["balance_micro"]
    for url in (capture.url + "/cat.png", "http://169.254.169.254/latest/meta-data/iam/"):
        part = {"type": "image_url", "image_url": {"url": url}}
        body = {"model": "echo-litellm", "messages": [{"role": "user", "content": [part]}]}
        reply = http.post("/v1/chat/completions", json=body, headers={**bearer(key), "X-Power-Level": "CUSTOM"})
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["param"] == "messages"
    assert capture.seen == []
    assert http.get("/v1/credits", headers=bearer(key)).json()["balance_micro"] == before
