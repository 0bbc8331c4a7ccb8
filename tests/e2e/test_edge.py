"""The edge's policies through the real suite: idempotent retries, the response cache, rate limits."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest

from services.launcher import Suite
from tests.e2e.support import balance_micro, bearer, create_key, upstream_count

CHAT = "/v1/chat/completions"


def test_idempotent_retry_replays_without_a_second_call_or_charge(
    http: httpx.Client, upstream: httpx.Client, keys: dict[str, str]
) -> None:
    key = keys["demo_key"]
    headers = {**bearer(key), "Idempotency-Key": f"retry-{uuid.uuid4()}"}
    body = {"model": "echo-paid", "messages": [{"role": "user", "content": "only once please"}]}
    calls, before = upstream_count(upstream, CHAT, "demo-echo"), balance_micro(http, key)
    first = http.post(CHAT, json=body, headers=headers)
    assert first.status_code == 200, first.text
    charged = before - balance_micro(http, key)
    assert charged > 0
    again = http.post(CHAT, json=body, headers=headers)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert upstream_count(upstream, CHAT, "demo-echo") == calls + 1
    assert before - balance_micro(http, key) == charged
    other = http.post(CHAT, json={**body, "temperature": 1}, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_idempotent_stream_is_replayed_whole(http: httpx.Client, upstream: httpx.Client, keys: dict[str, str]) -> None:
    headers = {**bearer(keys["demo_key"]), "Idempotency-Key": f"stream-{uuid.uuid4()}"}
    body = {"model": "echo-paid", "stream": True, "messages": [{"role": "user", "content": "stream me once"}]}
    first = http.post(CHAT, json=body, headers=headers)
    calls = upstream_count(upstream, CHAT, "demo-echo")
    again = http.post(CHAT, json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.text == first.text
    assert first.text.endswith("data: [DONE]\n\n")
    assert upstream_count(upstream, CHAT, "demo-echo") == calls


def test_cache_hit_makes_no_upstream_call_and_is_free(
    http: httpx.Client, upstream: httpx.Client, keys: dict[str, str]
) -> None:
    key = keys["demo_key"]
    body = {"model": "echo-paid", "temperature": 0, "messages": [{"role": "user", "content": f"cache {uuid.uuid4()}"}]}
    first = http.post(CHAT, json=body, headers=bearer(key))
    assert first.status_code == 200 and first.headers["x-tollgate-cache"] == "miss"
    calls, before = upstream_count(upstream, CHAT, "demo-echo"), balance_micro(http, key)
    hit = http.post(CHAT, json=body, headers=bearer(key))
    assert hit.status_code == 200
    assert hit.headers["x-tollgate-cache"] == "hit"
    assert hit.json()["choices"] == first.json()["choices"]
    assert hit.json()["_metadata"]["cache_hit"] is True
    assert upstream_count(upstream, CHAT, "demo-echo") == calls
    assert balance_micro(http, key) == before


def test_rate_limit_is_openai_shaped_with_headers(suite: Suite, http: httpx.Client) -> None:
    key = create_key(suite, f"limited-{uuid.uuid4().hex[:8]}", rpm=3)
    body = {"model": "echo-free", "messages": [{"role": "user", "content": "hi"}]}
    replies = [http.post(CHAT, json=body, headers=bearer(key)) for _ in range(4)]
    assert [r.status_code for r in replies] == [200, 200, 200, 429]
    assert replies[0].headers["x-ratelimit-limit-requests"] == "3"
    assert replies[2].headers["x-ratelimit-remaining-requests"] == "0"
    refused = replies[3]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    with (
        openai.OpenAI(base_url=suite.base_url, api_key=key, max_retries=0) as sdk,
        pytest.raises(openai.RateLimitError),
    ):
        sdk.chat.completions.create(model="echo-free", messages=[{"role": "user", "content": "hi"}])


def test_request_id_is_accepted_or_generated(http: httpx.Client) -> None:
    assert http.get("/health", headers={"X-Request-Id": "abc-123"}).headers["x-request-id"] == "abc-123"
    generated = http.get("/health").headers["x-request-id"]
    assert len(generated) == 32
    assert http.get("/health", headers={"X-Request-Id": "bad id\twith spaces"}).headers["x-request-id"] != "bad id"


def test_oversized_body_is_413(http: httpx.Client, keys: dict[str, str]) -> None:
    huge = b'{"messages": [{"role": "user", "content": "' + b"x" * (11 * 1024 * 1024) + b'"}]}'
    reply = http.post(CHAT, content=huge, headers={**bearer(keys["demo_key"]), "Content-Type": "application/json"})
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "request_too_large"
