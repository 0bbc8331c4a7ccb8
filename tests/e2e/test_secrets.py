"""Secrets never leak, and users' own keys (BYOK) work end to end through the official SDK.

Canaries — a platform provider key, a stored BYOK key, an inline BYOK key and gateway keys — are planted,
used on success and failure paths, and then searched for in every service's log output, every response
body and header, and `/metrics`: only their masked forms may appear.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

import httpx
import openai
import pytest

from services.launcher import Suite, free_port
from tests.e2e.support import PLATFORM_KEY, balance_micro, bearer, create_key, settled, start_suite

BYOK_KEY = "sk-canary-byok-" + uuid.uuid4().hex
INLINE_KEY = "sk-canary-inline-" + uuid.uuid4().hex
WRONG_GATEWAY_KEY = "tg-canary-wrong-" + uuid.uuid4().hex


class _Response(Protocol):
    """What the recorder reads of a response, from httpx or from the SDK's own HTTP client."""

    @property
    def text(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    def read(self) -> bytes: ...


class Recorder:
    """Everything the suite said back to clients."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, response: _Response) -> None:
        response.read()
        self.seen.append(response.text)
        self.seen.extend(f"{k}: {v}" for k, v in response.headers.items())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Suite, Path]]:
    tmp = Path(tmp_path_factory.mktemp("secrets"))
    suite = start_suite(tmp, TOLLGATE_GATEWAY_METRICS_PORT=str(free_port()))
    yield suite, tmp / "logs"
    suite.stop()


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def user_key(world: tuple[Suite, Path]) -> str:
    return create_key(world[0], f"byok-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def http(world: tuple[Suite, Path], recorder: Recorder) -> Iterator[httpx.Client]:
    suite = world[0]
    with httpx.Client(
        base_url=f"http://{suite.host}:{suite.ports.gateway}", timeout=30, event_hooks={"response": [recorder]}
    ) as client:
        yield client


def test_stored_byok_key_reaches_the_provider_and_is_not_charged(
    world: tuple[Suite, Path], http: httpx.Client, recorder: Recorder, user_key: str
) -> None:
    suite = world[0]
    stored = http.post(
        "/v1/byok/keys", json={"provider": "fake", "api_key": BYOK_KEY, "label": "mine"}, headers=bearer(user_key)
    )
    assert stored.status_code == 201, stored.text
    assert stored.json()["masked_key"].endswith(BYOK_KEY[-4:])
    listed = http.get("/v1/byok/keys", headers=bearer(user_key)).json()["data"]
    assert [k["provider"] for k in listed] == ["fake"]

    before = balance_micro(http, user_key)
    with openai.OpenAI(
        base_url=suite.base_url,
        api_key=user_key,
        max_retries=0,
        http_client=openai.DefaultHttpxClient(event_hooks={"response": [recorder]}),
    ) as client:
        completion = client.chat.completions.create(model="echo-paid", messages=[{"role": "user", "content": "mine"}])
    assert completion.choices[0].message.content == "echo: mine"
    raw = completion.model_extra or {}
    assert raw["_metadata"]["byok"] is True
    assert balance_micro(http, user_key) == before
    upstream = httpx.get(f"{suite.upstream_url.rsplit('/v1', 1)[0]}/_stats").json()
    assert upstream["last_authorization"]["demo-echo"] == f"Bearer {BYOK_KEY}"
    settled(http, user_key)
    usage = http.get("/v1/usage", headers=bearer(user_key)).json()["data"]
    assert any(row["byok"] and row["model"] == "echo-paid" for row in usage)

    tested = http.post("/v1/byok/keys/fake/test", headers=bearer(user_key))
    assert tested.status_code == 200 and tested.json()["valid"] is True


def test_a_rejected_byok_key_is_reported_clearly(world: tuple[Suite, Path], http: httpx.Client, user_key: str) -> None:
    suite = world[0]
    control = f"{suite.upstream_url.rsplit('/v1', 1)[0]}/_control"
    httpx.post(control, json={"model": "demo-echo", "require_key": "sk-only-this-one-works"}).raise_for_status()
    try:
        before = balance_micro(http, user_key)
        reply = http.post(
            "/v1/chat/completions",
            headers=bearer(user_key),
            json={"model": "echo-paid", "messages": [{"role": "user", "content": "mine"}]},
        )
        assert reply.status_code == 502, reply.text
        error = reply.json()["error"]
        assert error["code"] == "provider_auth_failed"
        assert "key" in error["message"].lower()
        assert balance_micro(http, user_key) == before
    finally:
        httpx.post(control, json={"model": "demo-echo", "require_key": ""}).raise_for_status()


def test_inline_byok_key_serves_one_request_uncharged(world: tuple[Suite, Path], http: httpx.Client) -> None:
    suite = world[0]
    key = create_key(suite, f"inline-{uuid.uuid4().hex[:8]}")
    before = balance_micro(http, key)
    reply = http.post(
        "/v1/chat/completions",
        headers=bearer(key),
        json={
            "model": "echo-paid",
            "messages": [{"role": "user", "content": "inline"}],
            "byok": True,
            "provider": "fake",
            "api_key": INLINE_KEY,
        },
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["_metadata"]["byok"] is True
    assert balance_micro(http, key) == before
    upstream = httpx.get(f"{suite.upstream_url.rsplit('/v1', 1)[0]}/_stats").json()
    assert upstream["last_authorization"]["demo-echo"] == f"Bearer {INLINE_KEY}"
    assert http.get("/v1/byok/keys", headers=bearer(key)).json()["data"] == []


def test_failure_paths_with_secrets_in_play(http: httpx.Client, user_key: str) -> None:
    assert http.get("/v1/models", headers=bearer(WRONG_GATEWAY_KEY)).status_code == 401
    assert (
        http.post(
            "/v1/chat/completions",
            headers=bearer(user_key),
            json={"model": "unreachable", "power_level": "custom", "messages": [{"role": "user", "content": "x"}]},
        ).status_code
        >= 500
    )
    assert (
        http.post(
            "/v1/chat/completions",
            headers=bearer(user_key),
            json={
                "model": "nope",
                "messages": [{"role": "user", "content": "x"}],
                "byok": True,
                "provider": "fake",
                "api_key": INLINE_KEY,
            },
        ).status_code
        == 404
    )
    assert (
        http.post(
            "/v1/byok/keys", headers=bearer(user_key), json={"provider": "no-such", "api_key": BYOK_KEY}
        ).status_code
        == 400
    )


def test_no_canary_appears_anywhere(
    world: tuple[Suite, Path], http: httpx.Client, recorder: Recorder, user_key: str
) -> None:
    suite, logs = world
    metrics_port = suite.environment()["TOLLGATE_GATEWAY_METRICS_PORT"]
    recorder.seen.append(httpx.get(f"http://{suite.host}:{metrics_port}/metrics", timeout=10).text)
    canaries = {
        "platform key": PLATFORM_KEY,
        "stored BYOK key": BYOK_KEY,
        "inline BYOK key": INLINE_KEY,
        "wrong gateway key": WRONG_GATEWAY_KEY,
        "gateway key": user_key,
        **{name: value for name, value in suite.bootstrap_keys().items() if value.startswith("tg-")},
    }
    texts = {f"log {path.name}": path.read_text(errors="replace") for path in logs.glob("*.log")}
    texts |= {f"response {i}": text for i, text in enumerate(recorder.seen)}
    assert len(texts) > 10
    leaks = [f"{what} in {where}" for where, text in texts.items() for what, value in canaries.items() if value in text]
    assert leaks == []
