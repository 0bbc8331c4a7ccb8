"""Who may call what: every route, called with no key, the user's key, another user's key and an admin key."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from services.launcher import Suite
from tests.e2e.support import bearer, create_key

CHAT = {"model": "echo-free", "messages": [{"role": "user", "content": "hi"}]}
NONE, USER, OTHER, ADMIN = "none", "user", "other", "admin"

# (method, path, json body, {caller: expected status}); "user" owns the resources named in the path/query.
MATRIX: list[tuple[str, str, dict[str, Any] | None, dict[str, int]]] = [
    ("POST", "/v1/chat/completions", CHAT, {NONE: 401, USER: 200, OTHER: 200, ADMIN: 200}),
    ("POST", "/api/v1/llm/chat/completions", CHAT, {NONE: 401, USER: 200, OTHER: 200, ADMIN: 200}),
    ("POST", "/v1/completions", {"model": "echo-free", "prompt": "x"}, {NONE: 401, USER: 200, OTHER: 200, ADMIN: 200}),
    ("POST", "/v1/embeddings", {"model": "echo-embed", "input": "x"}, {NONE: 401, USER: 200, OTHER: 200, ADMIN: 200}),
    ("GET", "/v1/models", None, {NONE: 401, USER: 200, OTHER: 200, ADMIN: 200}),
    ("GET", "/v1/models/echo-paid", None, {NONE: 401, USER: 200, OTHER: 200, ADMIN: 200}),
    ("POST", "/v1/models/select", {"messages": CHAT["messages"]}, {NONE: 401, USER: 200, OTHER: 200, ADMIN: 200}),
    ("GET", "/v1/credits", None, {NONE: 401, USER: 200, OTHER: 200, ADMIN: 200}),
    ("GET", "/v1/credits?user={user}", None, {NONE: 401, USER: 200, OTHER: 403, ADMIN: 200}),
    ("GET", "/api/v1/llm/credits/balance", None, {NONE: 401, USER: 200, OTHER: 200, ADMIN: 200}),
    ("GET", "/v1/credits/transactions?user={user}", None, {NONE: 401, USER: 200, OTHER: 403, ADMIN: 200}),
    ("GET", "/v1/usage?user={user}", None, {NONE: 401, USER: 200, OTHER: 403, ADMIN: 200}),
    ("GET", "/v1/usage/summary?user={user}", None, {NONE: 401, USER: 200, OTHER: 403, ADMIN: 200}),
    ("POST", "/v1/admin/credits", {"user": "{user}", "amount": 1}, {NONE: 401, USER: 403, OTHER: 403, ADMIN: 201}),
    (
        "POST",
        "/api/v1/llm/credits/add",
        {"user": "{user}", "amount": 1},
        {NONE: 401, USER: 403, OTHER: 403, ADMIN: 201},
    ),
    ("GET", "/v1/byok/keys", None, {NONE: 401, USER: 200, OTHER: 200, ADMIN: 200}),
    ("GET", "/v1/admin/keys", None, {NONE: 401, USER: 403, OTHER: 403, ADMIN: 200}),
    (
        "POST",
        "/v1/admin/keys",
        {"user": "matrix-made", "scopes": ["user"]},
        {NONE: 401, USER: 403, OTHER: 403, ADMIN: 201},
    ),
    ("GET", "/v1/providers", None, {NONE: 401, USER: 200, OTHER: 200, ADMIN: 200}),
    ("GET", "/v1/providers/health", None, {NONE: 401, USER: 200, OTHER: 200, ADMIN: 200}),
    ("POST", "/v1/admin/providers/health/check", {}, {NONE: 401, USER: 403, OTHER: 403, ADMIN: 200}),
    ("GET", "/health", None, {NONE: 200, USER: 200, OTHER: 200, ADMIN: 200}),
    ("GET", "/health/ready", None, {NONE: 200, USER: 200, OTHER: 200, ADMIN: 200}),
    # Metrics are on their own port (TOLLGATE_GATEWAY_METRICS_PORT), never on the public one.
    ("GET", "/metrics", None, {NONE: 404, USER: 404, OTHER: 404, ADMIN: 404}),
    ("GET", "/openapi.json", None, {NONE: 200, USER: 200, OTHER: 200, ADMIN: 200}),
]


@pytest.fixture(scope="module")
def callers(suite: Suite, keys: dict[str, str]) -> dict[str, dict[str, str]]:
    user = f"owner-{uuid.uuid4().hex[:8]}"
    return {
        NONE: {},
        USER: {"user": user, **bearer(create_key(suite, user))},
        OTHER: bearer(create_key(suite, f"other-{uuid.uuid4().hex[:8]}")),
        ADMIN: bearer(keys["admin_key"]),
    }


def _fill(value: Any, user: str) -> Any:
    if isinstance(value, str):
        return value.replace("{user}", user)
    if isinstance(value, dict):
        return {k: _fill(v, user) for k, v in value.items()}
    return value


@pytest.mark.parametrize(("method", "path", "body", "expected"), MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
@pytest.mark.parametrize("caller", [NONE, USER, OTHER, ADMIN])
def test_route_by_caller(
    http: httpx.Client,
    callers: dict[str, dict[str, str]],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    expected: dict[str, int],
    caller: str,
) -> None:
    owner = callers[USER]["user"]
    headers = {k: v for k, v in callers[caller].items() if k != "user"}
    reply = http.request(method, _fill(path, owner), json=_fill(body, owner), headers=headers)
    assert reply.status_code == expected[caller], reply.text
    if reply.status_code >= 400:
        assert set(reply.json()["error"]) >= {"message", "type", "param", "code"}


def test_a_user_cannot_touch_another_users_byok_keys(http: httpx.Client, callers: dict[str, dict[str, str]]) -> None:
    owner = {k: v for k, v in callers[USER].items() if k != "user"}
    stored = http.post("/v1/byok/keys", json={"provider": "fake", "api_key": "sk-owner-" + "a" * 24}, headers=owner)
    assert stored.status_code == 201, stored.text
    other = callers[OTHER]
    assert http.get("/v1/byok/keys", headers=other).json()["data"] == []
    assert http.delete("/v1/byok/keys/fake", headers=other).status_code == 404
    assert [k["provider"] for k in http.get("/v1/byok/keys", headers=owner).json()["data"]] == ["fake"]
    assert http.delete("/v1/byok/keys/fake", headers=owner).status_code == 200
