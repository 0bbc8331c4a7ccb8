"""Cached and reasoning tokens priced exactly and attribution kept, through the openai SDK against the suite.

The fake upstream reports cached and reasoning tokens (`usage_details`); the charge, `_metadata.tokens`, the
usage row and the summary must show the split. Tags and the end user land on every row and filter the
summary, but a user reads only their own rows, and tags never reach the provider.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from services.launcher import Suite
from tests.e2e.support import balance_micro, bearer, create_key, settled, upstream_count, words

PROMPT = " ".join(f"word{n}" for n in range(40))  # 40 prompt tokens by the fake upstream's rule
REPLY_TOKENS = 41  # "echo:" and the 40 words
# echo-cached's prices, micro-credits per 1k tokens
INPUT, OUTPUT, CACHE_READ, CACHE_WRITE, REASONING = 10_000, 20_000, 1_000, 12_500, 40_000
DETAILS = {
    "prompt_tokens_details": {"cached_tokens": 24, "cache_creation_tokens": 8},
    "completion_tokens_details": {"reasoning_tokens": 30},
}


def _expected_micro(read: int = 24, write: int = 8, reasoning: int = 30) -> int:
    total = (
        (40 - read - write) * INPUT
        + read * CACHE_READ
        + write * CACHE_WRITE
        + (REPLY_TOKENS - reasoning) * OUTPUT
        + reasoning * REASONING
    )
    return -(-total // 1000)


@pytest.fixture(scope="module")
def owner(suite: Suite) -> tuple[str, str]:
    user = f"pricing-{uuid.uuid4().hex[:8]}"
    return user, create_key(suite, user)


@pytest.fixture(scope="module")
def sdk(suite: Suite, owner: tuple[str, str]) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=suite.base_url, api_key=owner[1], max_retries=0, timeout=30) as client:
        yield client


@pytest.fixture
def cached_usage(upstream: httpx.Client) -> Iterator[None]:
    assert upstream.post("/_control", json={"model": "demo-echo", "usage_details": DETAILS}).status_code == 200
    yield
    upstream.post("/_control", json={"model": "demo-echo", "usage_details": {}})


def _rows(http: httpx.Client, key: str, **query: str) -> list[dict[str, Any]]:
    settled(http, key)
    reply = http.get("/v1/usage", params=query, headers=bearer(key))
    assert reply.status_code == 200, reply.text
    return list(reply.json()["data"])


def test_cached_and_reasoning_tokens_are_charged_at_their_prices(
    sdk: openai.OpenAI, http: httpx.Client, owner: tuple[str, str], cached_usage: None
) -> None:
    user, key = owner
    before = balance_micro(http, key)
    reply = sdk.chat.completions.with_raw_response.create(
        model="echo-cached", messages=[{"role": "user", "content": PROMPT}], max_tokens=100
    )
    completion = reply.parse()
    assert completion.usage is not None and completion.usage.prompt_tokens == words(PROMPT) == 40
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 24
    charged = before - balance_micro(http, key)
    assert charged == _expected_micro() == round(float(reply.headers["x-tollgate-cost"]) * 1_000_000)
    # What plain input and output would have cost differs: the split is really priced.
    assert charged != -(-(40 * INPUT + REPLY_TOKENS * OUTPUT) // 1000)
    meta = (completion.model_extra or {})["_metadata"]
    assert meta["tokens"] == {"input": 40, "cache_read": 24, "cache_write": 8, "output": 41, "reasoning": 30}
    row = _rows(http, key, model="echo-cached", limit="1")[0]
    assert (row["cache_read_tokens"], row["cache_write_tokens"], row["reasoning_tokens"]) == (24, 8, 30)
    assert row["cost_micro"] == charged and row["user_id"] == user


def test_a_stream_is_charged_for_the_same_split(
    sdk: openai.OpenAI, http: httpx.Client, owner: tuple[str, str], cached_usage: None
) -> None:
    key = owner[1]
    before = balance_micro(http, key)
    stream = sdk.chat.completions.create(
        model="echo-cached",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
        metadata={"agent": "streamer"},
    )
    meta = None
    for chunk in stream:
        if chunk.usage is not None:
            meta = (chunk.model_extra or {}).get("_metadata")
    assert meta is not None and meta["tokens"]["reasoning"] == 30
    assert before - balance_micro(http, key) == _expected_micro()
    row = _rows(http, key, **{"tag.agent": "streamer"})[0]
    assert (row["cache_read_tokens"], row["reasoning_tokens"], row["tags"]) == (24, 30, {"agent": "streamer"})


def test_user_key_and_tags_are_stored_filtered_and_grouped(
    sdk: openai.OpenAI, http: httpx.Client, owner: tuple[str, str], upstream: httpx.Client
) -> None:
    key = owner[1]
    for agent, end_user in (("planner", "alice"), ("planner", "bob"), ("coder", "alice")):
        sdk.chat.completions.create(
            model="echo-paid",
            messages=[{"role": "user", "content": f"hello from {agent}"}],
            user=end_user,
            metadata={"agent": agent, "run": "r1"},
            extra_headers={"X-Tollgate-Tags": "team=core,run=r2"},  # the header wins over metadata
        )
    # Tags are tollgate's: the provider got the end user (an OpenAI field) but never the metadata.
    fields = upstream.get("/_stats").json()["last_fields"]["demo-echo"]
    assert "user" in fields and "metadata" not in fields
    rows = _rows(http, key, **{"tag.agent": "planner", "tag.team": "core"})
    assert sorted(r["end_user"] for r in rows) == ["alice", "bob"]
    assert all(r["tags"] == {"agent": "planner", "run": "r2", "team": "core"} and r["key_id"] for r in rows)
    summary = http.get(
        "/v1/usage/summary", params={"group_by": "tag:agent", "tag.run": "r2"}, headers=bearer(key)
    ).json()
    assert [(g["key"], g["requests"]) for g in summary["data"]] == [("coder", 1), ("planner", 2)]
    by_user = http.get(
        "/v1/usage/summary", params={"group_by": "end_user", "model": "echo-paid"}, headers=bearer(key)
    ).json()
    assert [(g["key"], g["requests"]) for g in by_user["data"]] == [("alice", 2), ("bob", 1)]
    by_key = http.get("/v1/usage/summary", params={"group_by": "key"}, headers=bearer(key)).json()
    assert len(by_key["data"]) == 1 and by_key["data"][0]["key"] == rows[0]["key_id"]


def test_a_cache_hit_row_keeps_its_attribution(sdk: openai.OpenAI, http: httpx.Client, owner: tuple[str, str]) -> None:
    key = owner[1]
    body: dict[str, Any] = {"model": "echo-paid", "messages": [{"role": "user", "content": "cache me"}]}
    sdk.chat.completions.create(**body, temperature=0)
    hit = sdk.chat.completions.with_raw_response.create(
        **body, temperature=0, extra_headers={"X-Tollgate-Tags": "agent=cached"}
    )
    assert hit.headers["x-tollgate-cache"] == "hit"
    row = _rows(http, key, **{"tag.agent": "cached"})[0]
    assert row["cache_hit"] is True and row["cost_micro"] == 0


def test_no_user_reads_another_users_rows_through_a_filter(
    suite: Suite, http: httpx.Client, owner: tuple[str, str], keys: dict[str, str]
) -> None:
    victim, _ = owner
    attacker = create_key(suite, f"attacker-{uuid.uuid4().hex[:8]}")
    for params in ({"tag.agent": "planner"}, {"group_by": "user"}, {"group_by": "tag:agent", "end_user": "alice"}):
        reply = http.get("/v1/usage/summary", params=params, headers=bearer(attacker))
        assert reply.status_code == 200 and reply.json()["data"] == []
    assert _rows(http, attacker, **{"tag.agent": "planner"}) == []
    for who in (victim, "*"):
        assert http.get("/v1/usage", params={"user": who}, headers=bearer(attacker)).status_code == 403
        assert http.get("/v1/usage/summary", params={"user": who}, headers=bearer(attacker)).status_code == 403
    # An admin sees every user's rows.
    everyone = http.get(
        "/v1/usage/summary",
        params={"user": "*", "group_by": "user", "tag.agent": "planner"},
        headers=bearer(keys["admin_key"]),
    ).json()
    assert victim in [g["key"] for g in everyone["data"]]


@pytest.mark.parametrize(
    ("extra", "headers", "param"),
    [
        ({"metadata": {f"k{n}": "v" for n in range(17)}}, {}, "metadata"),
        ({"metadata": {"agent": "x" * 513}}, {}, "metadata.agent"),
        ({"metadata": {"agent": 7}}, {}, "metadata.agent"),
        ({"metadata": {"bad key": "v"}}, {}, "metadata"),
        ({"metadata": ["agent"]}, {}, "metadata"),
        ({"user": "u" * 257}, {}, "user"),
        ({}, {"X-Tollgate-Tags": "agent"}, "X-Tollgate-Tags"),
        ({}, {"X-Tollgate-Tags": "a=1,a=2"}, "X-Tollgate-Tags"),
        ({}, {"X-Tollgate-Tags": ",".join(f"t{n}=v" for n in range(17))}, "X-Tollgate-Tags"),
        ({}, {"X-Tollgate-Tags": "a=" + "v" * 9000}, "X-Tollgate-Tags"),
        (
            {"metadata": {f"m{n}": "v" for n in range(9)}},
            {"X-Tollgate-Tags": ",".join(f"h{n}=v" for n in range(8))},
            "metadata",
        ),
    ],
)
def test_bad_attribution_is_refused_before_any_call(
    http: httpx.Client,
    owner: tuple[str, str],
    upstream: httpx.Client,
    extra: dict[str, Any],
    headers: dict[str, str],
    param: str,
) -> None:
    key = owner[1]
    before, calls = balance_micro(http, key), upstream_count(upstream, "/v1/chat/completions", "demo-echo")
    body = {"model": "echo-paid", "messages": [{"role": "user", "content": "hi"}], **extra}
    reply = http.post("/v1/chat/completions", json=body, headers={**bearer(key), **headers})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param
    assert upstream_count(upstream, "/v1/chat/completions", "demo-echo") == calls
    assert balance_micro(http, key) == before


def test_bad_usage_filters_are_refused(http: httpx.Client, owner: tuple[str, str]) -> None:
    key = owner[1]
    for params, param in (
        ({"group_by": "tag:no spaces"}, "group_by"),
        ({"group_by": "week"}, "group_by"),
        ({"tag.bad key": "v"}, "tag"),
        ({"end_user": "x" * 300}, "end_user"),
    ):
        reply = http.get("/v1/usage/summary", params=params, headers=bearer(key))
        assert reply.status_code == 400 and reply.json()["error"]["param"] == param, reply.text
