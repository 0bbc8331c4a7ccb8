"""A provider that starts failing is marked down within an interval and the router stops choosing it;
it comes back through half-open to healthy and is chosen again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.launcher import Suite
from tests.e2e.support import bearer, eventually, start_suite

INTERVAL = 0.3


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    suite = start_suite(
        Path(tmp_path_factory.mktemp("watched")), TOLLGATE_HEALTH_INTERVAL=str(INTERVAL), TOLLGATE_HEALTH_JITTER="0"
    )
    yield suite
    suite.stop()


def test_failing_provider_is_skipped_then_chosen_again(watched: Suite) -> None:
    key = watched.bootstrap_keys()["demo_key"]
    with (
        httpx.Client(base_url=f"http://{watched.host}:{watched.ports.gateway}", headers=bearer(key), timeout=30) as gw,
        httpx.Client(base_url=f"http://{watched.host}:{watched.ports.upstream}", timeout=10) as upstream,
    ):
        _flip_and_recover(gw, upstream)


def _flip_and_recover(gateway: httpx.Client, upstream: httpx.Client) -> None:

    def state(provider: str) -> str:
        providers = gateway.get("/v1/providers").json()["data"]
        return str(next(p for p in providers if p["id"] == provider)["state"])

    def chosen() -> str:
        reply = gateway.post(
            "/v1/models/select",
            json={"model": "echo-paid", "power_level": "eco", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert reply.status_code == 200, reply.text
        return str(reply.json()["model"])

    eventually(lambda: state("fake") == "healthy", "fake healthy")
    assert chosen() == "echo-paid"

    # The fake provider's probes (which carry its platform key) are now refused; the keyless one still answers.
    upstream.post("/_control", json={"model": "-", "require_key": "sk-not-the-platform-key"}).raise_for_status()
    eventually(lambda: state("fake") == "down", "fake marked down")
    assert state("fake-free") != "down"
    eventually(lambda: chosen() == "echo-free", "router skips the down provider")

    upstream.post("/_control", json={"reset": True}).raise_for_status()
    seen: set[str] = set()

    def recovered() -> bool:
        seen.add(state("fake"))
        return "healthy" in seen

    eventually(recovered, "fake healthy again")
    assert "degraded" in seen or "down" in seen
    assert chosen() == "echo-paid"
