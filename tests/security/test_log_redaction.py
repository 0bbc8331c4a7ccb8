"""Platform keys never reach a log line, even when the upstream quotes them back in its errors.

The `leaky` provider answers every call with an error that quotes the key it was sent (plain hex: no
pattern knows its shape, so only the router's registration of its platform keys by value masks it).
The suite logs at DEBUG; every service's log is then searched for the key.
"""

from __future__ import annotations

import httpx

from tests.e2e.support import PLATFORM_KEY, bearer
from tests.security.conftest import LEAKY_KEY, Edge


def test_a_platform_key_echoed_by_the_upstream_never_reaches_a_log(
    edge: Edge, http: httpx.Client, keys: dict[str, str]
) -> None:
    body = {"model": "leaky-model", "power_level": "custom", "messages": [{"role": "user", "content": "hi"}]}
    said: list[str] = []
    for stream in (False, True):
        reply = http.post("/v1/chat/completions", json={**body, "stream": stream}, headers=bearer(keys["demo_key"]))
        said.append(reply.text)
        assert reply.status_code >= 400 or '"error"' in reply.text, reply.text
    probe = http.post("/v1/admin/providers/health/check", json={}, headers=bearer(keys["admin_key"]))
    said.append(probe.text)
    assert probe.status_code == 200, probe.text

    logs = {path.name: path.read_text(errors="replace") for path in edge.logs.glob("*.log")}
    assert {"router.log", "gateway.log", "health.log"} <= set(logs)
    assert "leaky" in logs["router.log"]  # the failure was logged, only without the key
    leaks = [
        f"{name} in {where}"
        for where, text in {**logs, **{f"response {i}": t for i, t in enumerate(said)}}.items()
        for name, key in (("leaky platform key", LEAKY_KEY), ("platform key", PLATFORM_KEY))
        if key in text
    ]
    assert leaks == []
