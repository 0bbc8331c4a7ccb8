"""SIGTERM during a stream: the service reports NOT_SERVING at once, the stream still finishes whole,
and new work is refused (so a load balancer sends it to another replica)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.launcher import Suite
from tests.e2e.support import bearer, start_suite

CHUNKS, GAP_MS = 10, 150
BODY = {"model": "echo-free", "stream": True, "messages": [{"role": "user", "content": "one two three four five"}]}


@pytest.fixture
def draining(tmp_path: Path) -> Iterator[Suite]:
    suite = start_suite(tmp_path, upstream_args=("--chunks", str(CHUNKS), "--chunk-gap-ms", str(GAP_MS)))
    yield suite
    suite.stop()


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as chan:
        try:
            reply = health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return -1
    return int(reply.status)


def _stream(suite: Suite, key: str, out: list[str]) -> None:
    with httpx.stream("POST", f"{suite.base_url}/chat/completions", json=BODY, headers=bearer(key), timeout=30) as r:
        out.extend(r.iter_lines())


@pytest.mark.parametrize("service", ["router", "gateway"])
def test_sigterm_mid_stream_finishes_the_stream(draining: Suite, service: str) -> None:
    key = draining.bootstrap_keys()["demo_key"]
    lines: list[str] = []
    reader = threading.Thread(target=_stream, args=(draining, key, lines))
    reader.start()
    time.sleep(GAP_MS * 3 / 1000)  # a few chunks in
    draining.processes[service].send_signal(signal.SIGTERM)
    if service == "router":
        address = f"{draining.host}:{draining.ports.router}"
        deadline = time.monotonic() + 2
        while _health(address) == health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline, "still SERVING after SIGTERM"
            time.sleep(0.02)
        refused = httpx.post(
            f"{draining.base_url}/chat/completions", json={**BODY, "stream": False}, headers=bearer(key), timeout=30
        )
        assert refused.status_code == 503
    reader.join(30)
    data = [line for line in lines if line.startswith("data: ")]
    assert data[-1] == "data: [DONE]"
    assert len(data) >= CHUNKS + 1
    # uvicorn re-raises SIGTERM once it has drained; the gRPC services exit 0.
    assert draining.processes[service].wait(20) in (0, -signal.SIGTERM)
