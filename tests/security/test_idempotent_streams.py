"""A stream is stored for its Idempotency-Key only when it ended whole: a retry never replays a stream cut
short by the client going away or by the provider breaking off."""

from __future__ import annotations

import time
import uuid

import httpx

from tests.e2e.support import bearer, create_key
from tests.security.conftest import Edge

CHAT = "/v1/chat/completions"


def _retry_until_settled(http: httpx.Client, body: dict[str, object], headers: dict[str, str]) -> httpx.Response:
    """The retry, once the first request has let go of the key (409 while it is still being wound up)."""
    deadline = time.monotonic() + 10
    while True:
        reply = http.post(CHAT, json=body, headers=headers)
        if reply.status_code != 409 or time.monotonic() > deadline:
            return reply
        time.sleep(0.1)


def _chunks(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("data: ") and line != "data: [DONE]"]


def test_a_stream_the_client_left_is_not_replayed_truncated(edge: Edge, http: httpx.Client) -> None:
    key = create_key(edge.suite, f"leaver-{uuid.uuid4().hex[:8]}")
    headers = {**bearer(key), "Idempotency-Key": f"leave-{uuid.uuid4()}"}
    body = {"model": "echo-paid", "stream": True, "messages": [{"role": "user", "content": "one two three four"}]}
    whole = http.post(CHAT, json=body, headers=bearer(key))  # the same stream without a key, for comparison
    assert whole.text.endswith("data: [DONE]\n\n")

    with httpx.stream("POST", edge.url + CHAT, json=body, headers=headers, timeout=30) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        seen = [line for line in (next(lines) for _ in range(3)) if line.startswith("data: ")]
        assert seen and "data: [DONE]" not in seen
    # The client has gone (the connection is closed) with most of the stream unsent.

    retry = _retry_until_settled(http, body, headers)
    assert retry.status_code == 200, retry.text
    assert retry.text.endswith("data: [DONE]\n\n"), f"truncated replay: {retry.text[-200:]!r}"
    assert len(_chunks(retry.text)) == len(_chunks(whole.text))


def test_a_stream_that_broke_off_is_not_stored(edge: Edge, http: httpx.Client) -> None:
    key = create_key(edge.suite, f"broken-{uuid.uuid4().hex[:8]}")
    headers = {**bearer(key), "Idempotency-Key": f"cut-{uuid.uuid4()}"}
    body = {
        "model": "cut-stream",
        "power_level": "custom",
        "stream": True,
        "messages": [{"role": "user", "content": "a b c d e f"}],
    }
    first = http.post(CHAT, json=body, headers=headers)
    assert first.status_code == 200
    assert "data: [DONE]" not in first.text and '"error"' in first.text
    calls = httpx.get(f"{edge.upstream}/_stats", timeout=10).json()["requests"].get(f"{CHAT} cut-after-2", 0)
    retry = _retry_until_settled(http, body, headers)
    assert retry.headers.get("idempotent-replayed") is None
    assert httpx.get(f"{edge.upstream}/_stats", timeout=10).json()["requests"][f"{CHAT} cut-after-2"] == calls + 1
