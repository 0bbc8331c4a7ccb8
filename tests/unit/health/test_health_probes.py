"""Each provider kind of the default catalog is probed at its real model listing with its real auth header.

The fake provider answers 200 only on its kind's listing path with the key in its kind's header; any other
path is 404 and any other header 401, as the real APIs answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from services.health.probes import Prober
from services.health.targets import Target, load_targets

ROOT = Path(__file__).resolve().parents[3]
KEY = "sk-probe-test-0123456789"
# kind -> (the listing path under the default catalog's api_base path, the header that must carry the key)
REAL = {
    "openai": ("/models", ("authorization", f"Bearer {KEY}")),
    "anthropic": ("/v1/models", ("x-api-key", KEY)),
    "gemini": ("/v1beta/models", ("x-goog-api-key", KEY)),
}


@dataclass
class FakeProvider:
    """A provider of one kind on localhost: answers only its real listing path, with its real header."""

    path: str
    header: tuple[str, str]
    extra: dict[str, str] = field(default_factory=dict)  # further headers the real API insists on
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        self.seen.append((target, headers))
        if method != "GET" or target != self.path:
            status = "404 Not Found"
        elif headers.get(self.header[0]) != self.header[1] or any(headers.get(k) != v for k, v in self.extra.items()):
            status = "401 Unauthorized"
        else:
            status = "200 OK"
        body = b'{"data": []}'
        writer.write(f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[list[asyncio.Server]]:
    servers: list[asyncio.Server] = []
    yield servers
    for server in servers:
        server.close()
        await server.wait_closed()


async def _start(fake: FakeProvider, servers: list[asyncio.Server]) -> None:
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    servers.append(server)
    fake.port = server.sockets[0].getsockname()[1]


def _local(target: Target, port: int) -> Target:
    """The target with its host moved to localhost, its path (as the catalog gives it) kept."""
    return replace(target, base_url=f"http://127.0.0.1:{port}{urlsplit(target.base_url).path}")


DEFAULT = {t.provider: t for t in load_targets(ROOT / "catalog" / "default.yaml")}


def test_the_default_catalog_has_each_kind_it_should() -> None:
    assert DEFAULT["anthropic"].kind == "anthropic"
    assert {t.kind for t in DEFAULT.values()} == {"openai", "anthropic"}
    assert all(t.kind == "openai" for name, t in DEFAULT.items() if name != "anthropic")


@pytest.mark.parametrize("provider", sorted(DEFAULT))
async def test_each_default_provider_is_probed_where_it_really_lists(
    provider: str, serve: list[asyncio.Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = DEFAULT[provider]
    path, header = REAL[target.kind]
    base_path = urlsplit(target.base_url).path
    extra = {"anthropic-version": "2023-06-01"} if target.kind == "anthropic" else {}
    fake = FakeProvider(base_path + path, header, extra)
    await _start(fake, serve)
    env = target.api_key_env or "TOLLGATE_TEST_PROBE_KEY"
    monkeypatch.setenv(env, KEY)
    prober = Prober(2.0)
    try:
        result = await prober.probe(replace(_local(target, fake.port), api_key_env=env))
    finally:
        await prober.aclose()
    assert (result.ok, result.http_status, result.error) == (True, 200, "")
    [(seen_path, seen_headers)] = fake.seen
    assert seen_path == fake.path
    if target.kind != "openai":
        assert "authorization" not in seen_headers  # the key goes in its kind's header only


async def test_gemini_is_probed_at_v1beta_with_its_header(
    serve: list[asyncio.Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeProvider("/v1beta/models", REAL["gemini"][1])
    await _start(fake, serve)
    monkeypatch.setenv("TOLLGATE_TEST_GEMINI_KEY", KEY)
    prober = Prober(2.0)
    try:
        target = Target("gemini", f"http://127.0.0.1:{fake.port}", "TOLLGATE_TEST_GEMINI_KEY", kind="gemini")
        assert (await prober.probe(target)).ok
        assert fake.seen[0][0] == "/v1beta/models" and "key=" not in fake.seen[0][0]
    finally:
        await prober.aclose()


async def test_a_probe_the_openai_way_against_anthropic_would_fail(
    serve: list[asyncio.Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the test above guards against: Anthropic probed as if it were OpenAI-compatible is marked down."""
    fake = FakeProvider("/v1/models", REAL["anthropic"][1], {"anthropic-version": "2023-06-01"})
    await _start(fake, serve)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    prober = Prober(2.0)
    try:
        wrong = replace(_local(DEFAULT["anthropic"], fake.port), kind="openai")
        result = await prober.probe(wrong)
        assert (result.ok, result.http_status) == (False, 404)
        assert result.error == "GET /models answered HTTP 404" and KEY not in result.error
        # without a platform key a 401 from the right path still proves the provider answers
        monkeypatch.delenv("ANTHROPIC_API_KEY")
        keyless = await prober.probe(_local(DEFAULT["anthropic"], fake.port))
        assert (keyless.ok, keyless.http_status) == (True, 401)
    finally:
        await prober.aclose()
