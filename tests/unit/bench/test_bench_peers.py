"""The side-by-side with peers and the embedded profile: extra routing headers, Portkey's gateway as a target,
the tables that put every target beside tollgate, and the matrix with the embedded profile's extra concurrency."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from bench import report
from bench.loadgen import format_headers, parse_headers, request_bytes, run_python, run_wrk, wrk_available
from bench.portkey_gateway import PACKAGE, PortkeyGateway, routing_headers
from bench.run import EMBEDDED_EXTRA, Target, matrix, portkey_target, refusal
from services.demo_upstream import Upstream, start_upstream

ROUTE = {"x-portkey-provider": "openai", "x-portkey-custom-host": "http://127.0.0.1:9/v1"}


def test_headers_survive_the_environment_round_trip() -> None:
    assert parse_headers(format_headers(ROUTE)) == ROUTE
    assert parse_headers("") == {}
    assert parse_headers("no colon here\n: empty name\nx-a:  b c \n") == {"x-a": "b c"}


def test_python_engine_request_carries_the_extra_headers_after_the_key() -> None:
    _, _, payload = request_bytes("http://127.0.0.1:1/v1/chat/completions", b"{}", "Bearer k", ROUTE)
    head = payload.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    assert "Authorization: Bearer k" in head
    assert "x-portkey-custom-host: http://127.0.0.1:9/v1" in head
    assert "x-portkey-provider: openai" in head


class _Recorder:
    """A raw HTTP server that answers 200 and keeps every request's head, to see what the engines send."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(ln.split(b":", 1)[1])
                        for ln in head.split(b"\r\n")
                        if ln.lower().startswith(b"content-length")
                    ),
                    0,
                )
                await reader.readexactly(length)
                self.heads.append(head)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[_Recorder, str]]:
    rec = _Recorder()
    server = await asyncio.start_server(rec.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield rec, f"http://127.0.0.1:{port}/v1/chat/completions"
    server.close()


async def test_python_engine_sends_the_routing_headers_on_every_request(recorder: tuple[_Recorder, str]) -> None:
    rec, url = recorder
    result = await run_python(url, b"{}", "Bearer k", 2, 0, False, 6, ROUTE)
    assert (result["requests"], result["status_errors"]) == (6, 0)
    assert len(rec.heads) == 6
    assert all(b"\r\nx-portkey-provider: openai" in h for h in rec.heads)


@pytest.mark.skipif(not wrk_available(), reason="wrk is not installed")
async def test_wrk_engine_sends_the_routing_headers(recorder: tuple[_Recorder, str]) -> None:
    rec, url = recorder
    result = await asyncio.to_thread(run_wrk, url, b"{}", "Bearer k", 1, 1, ROUTE)
    assert result["requests"] > 0
    assert rec.heads and all(b"x-portkey-custom-host: http://127.0.0.1:9/v1" in h.lower() for h in rec.heads)


def test_portkey_target_routes_each_latency_to_its_own_upstream() -> None:
    urls = {0: "http://127.0.0.1:1/v1", 50: "http://127.0.0.1:2/v1"}
    target = portkey_target("http://127.0.0.1:3/v1", urls)
    assert target.chat_url == "http://127.0.0.1:3/v1/chat/completions"
    assert target.model == {0: "demo-echo", 50: "demo-echo"}
    assert (
        target.headers[50]
        == routing_headers(urls[50])
        == {
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": "http://127.0.0.1:2/v1",
        }
    )


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = await start_upstream(chunks=4)
    yield server
    await server.close()


@pytest.mark.skipif(
    shutil.which("node") is None or not (PACKAGE / "build" / "start-server.js").exists(),
    reason="Portkey's gateway is not installed (make bench-peers installs it)",
)
async def test_portkey_gateway_relays_to_the_upstream_its_headers_name(upstream: Upstream, tmp_path: Path) -> None:
    from services.launcher import free_port

    gateway = PortkeyGateway(free_port(), tmp_path)
    await asyncio.to_thread(gateway.start)
    try:
        target = portkey_target(gateway.base_url, {0: upstream.base_url})
        body = orjson.dumps({"model": "demo-echo", "messages": [{"role": "user", "content": "one two"}]})
        result = await run_python(target.chat_url, body, target.auth, 2, 0, False, 10, target.headers[0])
        assert (result["requests"], result["errors"], result["status_errors"]) == (10, 0, 0)
        assert upstream.stats["requests"]["/v1/chat/completions demo-echo"] == 10
        # 1.15.2 on Node 20 answers every stream with a 500 ("TypeError: immutable" in its log): the runner
        # must then say so and skip its stream scenarios, not stop or count errors as figures.
        problem = await asyncio.to_thread(refusal, target, True)
        assert problem is None or problem.startswith("portkey refused a stream request: 500")
    finally:
        await asyncio.to_thread(gateway.stop)
    assert gateway.process is not None and gateway.process.poll() is not None


async def test_refusal_names_the_target_and_the_status(upstream: Upstream) -> None:
    ok = Target("demo", f"{upstream.base_url}/chat/completions", "Bearer k", {0: "demo-echo", 50: "demo-echo"})
    assert await asyncio.to_thread(refusal, ok, False) is None
    assert await asyncio.to_thread(refusal, ok, True) is None
    failing = Target("demo", ok.chat_url, "Bearer k", {0: "fail-500", 50: "fail-500"})
    problem = await asyncio.to_thread(refusal, failing, True)
    assert problem is not None and problem.startswith("demo refused a stream request: 500")


def test_the_embedded_matrix_adds_concurrency_32_to_every_mode_and_latency() -> None:
    names = {s.name for s in matrix((1, EMBEDDED_EXTRA, 64))}
    assert len(names) == 12
    assert {"non-stream c32 0ms", "stream c32 50ms"} <= names


def _side(p50: float, errors: int = 0) -> dict[str, object]:
    return {
        "latency_ms": {"p50": p50, "p90": p50, "p99": p50 * 2},
        "rps": 1000 / p50,
        "cpu_ms_per_request": p50 / 2,
        "errors": errors,
        "status_errors": 0,
    }


def test_comparison_tables_name_each_peer_and_skip_scenarios_it_did_not_run() -> None:
    direct = _side(1.0)
    both: dict[str, object] = {"name": "non-stream c1 0ms", "direct": direct, "tollgate": _side(3.0)}
    both["portkey"] = _side(2.0, errors=4)
    only_ours: dict[str, object] = {"name": "stream c1 0ms", "direct": direct, "tollgate": _side(3.0)}
    for row in (both, only_ours):
        for name in ("tollgate", "portkey"):
            if name in row:
                row[f"{name}_added"] = report.added(row[name], direct)  # type: ignore[arg-type]
    table = report.comparison_table([both, only_ours], "tollgate", "portkey")
    assert "+p50 pk/tg" in table
    assert "0.5x" in table  # Portkey adds 1 ms where tollgate adds 2: tollgate is behind
    assert "0 / 4" in table  # errors side by side
    assert "stream c1 0ms" not in table.replace("non-stream c1 0ms", "")
    assert "stream c1 0ms" not in report.scenario_table([both, only_ours], "portkey").replace("non-stream", "")


def test_capacity_summary_puts_every_other_target_beside_tollgate() -> None:
    capacity = {
        name: {"p99_limit_ms": 50.0, "rps": rps, "concurrency": 16}
        for name, rps in (("tollgate", 900.0), ("embedded", 450.0), ("litellm", 300.0), ("portkey", 1800.0))
    }
    summary = report.capacity_summary(capacity)
    assert "tollgate / embedded: 2.0x" in summary
    assert "tollgate / LiteLLM: 3.0x" in summary
    assert "tollgate / Portkey: 0.5x" in summary
    assert "portkey 1800 req/s" in summary
    capacity["portkey"] |= {"rps": 0.0, "concurrency": 0}  # p99 above the limit from concurrency 1 on
    assert "tollgate / Portkey: - (one search found nothing" in report.capacity_summary(capacity)
