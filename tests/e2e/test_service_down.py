"""A stopped service answers 503 at the edge; nothing is charged; the gateway keeps serving the rest."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.launcher import Suite
from tests.e2e.support import bearer, start_suite


@pytest.fixture(scope="module")
def doomed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    running = start_suite(Path(tmp_path_factory.mktemp("doomed")))
    yield running
    running.stop()


def test_router_down_is_503_and_gateway_stays_up(doomed: Suite) -> None:
    key = doomed.bootstrap_keys()["demo_key"]
    body = {"model": "echo-paid", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=f"http://{doomed.host}:{doomed.ports.gateway}", timeout=30) as http:
        assert http.post("/v1/chat/completions", json=body, headers=bearer(key)).status_code == 200
        router = doomed.processes["router"]
        router.send_signal(signal.SIGTERM)
        router.wait(30)
        reply = http.post("/v1/chat/completions", json=body, headers=bearer(key))
        assert reply.status_code == 503, reply.text
        assert reply.json()["error"]["code"] == "service_unavailable"
        assert http.get("/health").status_code == 200
        ready = http.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["services"]["router"] is False
