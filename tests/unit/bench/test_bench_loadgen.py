"""The load generator against the demo upstream in process: counts, stream timings, errors, auth."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from bench.loadgen import percentiles, run_python, run_wrk, wrk_available
from services.demo_upstream import Upstream, start_upstream

KEY = "sk-bench-test"


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = await start_upstream(chunks=4)
    yield server
    await server.close()


def chat(model: str = "demo-echo", stream: bool = False) -> bytes:
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": "one two three four"}]}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def test_percentiles_use_the_nearest_rank() -> None:
    got = percentiles([float(v) for v in range(100, 0, -1)])
    assert got == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "mean": 50.5, "max": 100.0}
    assert percentiles([])["p99"] == 0.0


async def test_python_engine_sends_exactly_the_requests_asked_for(upstream: Upstream) -> None:
    result = await run_python(f"{upstream.base_url}/chat/completions", chat(), "", 4, 0, False, 50)
    assert (result["requests"], result["errors"], result["status_errors"]) == (50, 0, 0)
    assert upstream.stats["requests"]["/v1/chat/completions demo-echo"] == 50
    assert result["rps"] > 0
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"] <= result["latency_ms"]["max"]


async def test_python_engine_times_every_stream_event(upstream: Upstream) -> None:
    result = await run_python(f"{upstream.base_url}/chat/completions", chat(stream=True), "", 2, 0, True, 10)
    assert (result["requests"], result["errors"], result["status_errors"]) == (10, 0, 0)
    assert result["chunks_per_request"] == 4  # [DONE] is not a chunk
    assert 0 < result["ttft_ms"]["p50"] <= result["latency_ms"]["p50"]
    assert result["gap_ms"]["max"] >= 0


async def test_python_engine_counts_error_statuses(upstream: Upstream) -> None:
    result = await run_python(f"{upstream.base_url}/chat/completions", chat("fail-500"), "", 2, 0, False, 6)
    assert (result["requests"], result["status_errors"]) == (6, 6)


async def test_python_engine_sends_the_authorization_header(upstream: Upstream) -> None:
    upstream.control(require_key=KEY)
    url = f"{upstream.base_url}/chat/completions"
    assert (await run_python(url, chat(), f"Bearer {KEY}", 1, 0, False, 3))["status_errors"] == 0
    assert (await run_python(url, chat(), "Bearer wrong", 1, 0, False, 3))["status_errors"] == 3


async def test_python_engine_reports_a_refused_connection_as_errors() -> None:
    server = await start_upstream()
    url = f"{server.base_url}/chat/completions"
    await server.close()
    result = await run_python(url, chat(), "", 1, 0.2, False, 0)
    assert result["requests"] == 0
    assert result["errors"] > 0


@pytest.mark.skipif(not wrk_available(), reason="wrk is not installed")
async def test_wrk_engine_loads_with_the_body_and_key(upstream: Upstream) -> None:
    upstream.control(require_key=KEY)
    url = f"{upstream.base_url}/chat/completions"
    good = await asyncio.to_thread(run_wrk, url, chat(), f"Bearer {KEY}", 2, 1)
    assert good["requests"] > 0
    assert (good["errors"], good["status_errors"]) == (0, 0)
    assert upstream.stats["requests"]["/v1/chat/completions demo-echo"] >= good["requests"]
    bad = await asyncio.to_thread(run_wrk, url, chat(), "Bearer wrong", 1, 1)
    assert bad["status_errors"] == bad["requests"] > 0
