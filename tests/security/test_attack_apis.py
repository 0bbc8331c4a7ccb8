"""The newest APIs attacked with a normal user key: `/v1/responses` on both paths (translated onto chat, passed
through to a `responses: true` provider), `/v1/messages` with `x-api-key`, stored responses across users and
paths, uploaded-file ids hidden in nested parts, errors quoting the platform key, Idempotency-Key replay across
routes. Against the suite as real processes (the shared `edge` suite)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.support import balance_micro, bearer, create_key
from tests.security.conftest import LEAKY_KEY, Edge

RESPONSES = "/v1/responses"
UPSTREAM_MODEL = "demo-echo"


def _user(edge: Edge, name: str) -> str:
    return create_key(edge.suite, f"{name}-{uuid.uuid4().hex[:8]}")


def _stats(edge: Edge) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(edge.upstream + "/_stats", timeout=10).json()
    return stats


def _sent(edge: Edge) -> dict[str, Any]:
    body: dict[str, Any] = _stats(edge)["last_bodies"][UPSTREAM_MODEL]
    return body


@pytest.mark.parametrize("model", ["echo-paid", "echo-responses"])
@pytest.mark.parametrize(
    "part",
    [
        {"type": "input_image", "image_url": "https://x.test/cat.png", "file_id": "file-platform-secret"},
        {"type": "input_file", "file_data": "data:text/plain;base64,aGk=", "file_id": "file-platform-secret"},
        {"type": "input_file", "file_data": "data:text/plain;base64,aGk=", "file_url": "https://x.test/f"},
    ],
)
def test_an_uploaded_file_id_hidden_beside_inline_data_never_reaches_the_provider(
    edge: Edge, http: httpx.Client, model: str, part: dict[str, Any]
) -> None:
    """A `file_id` (or `file_url`) reads what the platform's account holds at the provider: refused, even when the
    part also carries the inline data the rule asks for."""
    key = _user(edge, "filer")
    calls = _stats(edge)["total"]
    body = {"model": model, "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}, part]}]}
    reply = http.post(RESPONSES, json=body, headers=bearer(key))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] in ("input[0].content[1].file_id", "input[0].content[1].file_url")
    assert _stats(edge)["total"] == calls


def test_a_stored_response_is_the_owners_on_both_paths(edge: Edge, http: httpx.Client) -> None:
    owner, intruder = _user(edge, "owner"), _user(edge, "intruder")
    first = {"model": "echo-responses", "input": "passthrough secret"}
    passed = http.post(RESPONSES, json=first, headers=bearer(owner))
    assert passed.status_code == 200, passed.text
    rid = passed.json()["id"]
    assert rid.startswith("resp_") and len(rid) == len("resp_") + 48
    for path in (f"{RESPONSES}/{rid}", f"{RESPONSES}/{rid}/input_items"):
        assert http.get(path, headers=bearer(intruder)).status_code == 404
    assert http.delete(f"{RESPONSES}/{rid}", headers=bearer(intruder)).status_code == 404
    calls = _stats(edge)["total"]
    for model in ("echo-paid", "echo-responses"):
        stolen = {"model": model, "input": "repeat everything", "previous_response_id": rid}
        assert http.post(RESPONSES, json=stolen, headers=bearer(intruder)).status_code == 404
    assert _stats(edge)["total"] == calls
    # The owner continues it on the translated path; the provider gets the conversation, not gateway ids.
    more = {"model": "echo-paid", "input": "and then?", "previous_response_id": rid}
    continued = http.post(RESPONSES, json=more, headers=bearer(owner))
    assert continued.status_code == 200, continued.text
    assert "passthrough secret" in orjson.dumps(_sent(edge)["messages"]).decode()
    # And back onto the passthrough: stored ids stay the gateway's.
    again = {"model": "echo-responses", "input": "last", "previous_response_id": continued.json()["id"]}
    assert http.post(RESPONSES, json=again, headers=bearer(owner)).status_code == 200
    sent = _sent(edge)
    assert "previous_response_id" not in sent and sent["store"] is False
    assert all("id" not in item for item in sent["input"]), sent["input"]
    assert rid not in orjson.dumps(sent).decode()


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("path", "model", "extra"),
    [
        (RESPONSES, "leaky-model", {"input": "hi"}),
        (RESPONSES, "leaky-responses", {"input": "hi"}),
        ("/v1/messages", "leaky-model", {"max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}),
    ],
)
def test_an_upstream_error_quoting_the_platform_key_never_reaches_the_client(
    edge: Edge, path: str, model: str, extra: dict[str, Any], stream: bool
) -> None:
    key = _user(edge, "leak")
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"} if "messages" in path else bearer(key)
    with httpx.Client(base_url=edge.url, timeout=30) as client:
        reply = client.post(path, json={"model": model, "stream": stream, **extra}, headers=headers)
    assert reply.status_code in (200, 401, 502, 503), reply.text
    text = reply.text
    assert text, "an empty answer"
    assert LEAKY_KEY not in text and LEAKY_KEY[:16] not in text and LEAKY_KEY[-16:] not in text


def test_an_idempotency_key_is_not_replayed_across_routes(edge: Edge, http: httpx.Client) -> None:
    """The translated Responses body is a chat body: the same Idempotency-Key on /v1/chat/completions with that
    chat body must not be answered with the stored Responses answer (nor the reverse)."""
    key = _user(edge, "replayer")
    idem = {"Idempotency-Key": uuid.uuid4().hex, **bearer(key)}
    first = http.post(RESPONSES, json={"model": "echo-paid", "input": "hello"}, headers=idem)
    assert first.status_code == 200, first.text
    chat_body = {k: v for k, v in _sent(edge).items() if k not in ("stream", "stream_options")}
    second = http.post("/v1/chat/completions", json=chat_body, headers=idem)
    assert second.status_code == 422, second.text  # the fingerprint names the client API, not only the body
    assert second.json()["error"]["code"] == "idempotency_key_reused"


def test_count_tokens_is_free_and_never_reaches_the_provider(edge: Edge, http: httpx.Client) -> None:
    key = _user(edge, "counter")
    before, calls = balance_micro(http, key), _stats(edge)["total"]
    body = {"model": "echo-paid", "messages": [{"role": "user", "content": "count me " * 50}], "api_base": "x"}
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    reply = http.post("/v1/messages/count_tokens", json=body, headers=headers)
    assert reply.status_code in (200, 400), reply.text
    if reply.status_code == 200:
        assert reply.json()["input_tokens"] >= 100
    assert _stats(edge)["total"] == calls and balance_micro(http, key) == before


def _deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize("idempotent", [False, True])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        (RESPONSES, {"model": "echo-responses", "input": [{"role": "user", "content": "hi", "junk": _deep(300)}]}),
        (RESPONSES, {"model": "echo-paid", "input": "hi", "text": {"x": _deep(300)}}),
        (RESPONSES, {"model": "echo-paid", "input": "hi", "stream": True, "reasoning": {"summary": _deep(252)}}),
        (
            RESPONSES,
            {"model": "echo-paid", "input": "hi", "tools": [{"type": "function", "name": "f", "x": _deep(300)}]},
        ),
        (
            "/v1/messages",
            {
                "model": "echo-paid",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"name": "f", "input_schema": _deep(300)}],
            },
        ),
    ],
)
def test_input_nested_past_what_json_is_written_with_is_a_clear_400(
    edge: Edge, http: httpx.Client, path: str, body: dict[str, Any], idempotent: bool
) -> None:
    """Refused before the provider is called: the Responses answer echoes `text`, `reasoning` and `tools`, and
    one that cannot be written would be a 500 after the provider was paid."""
    key = _user(edge, "nester")
    before, calls = balance_micro(http, key), _stats(edge)["total"]
    headers = {**bearer(key), **({"Idempotency-Key": uuid.uuid4().hex} if idempotent else {})}
    reply = http.post(path, content=json.dumps(body).encode(), headers=headers)  # orjson writes 254 levels at most
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["message"]
    assert _stats(edge)["total"] == calls and balance_micro(http, key) == before


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("path", "model", "provider", "extra"),
    [
        (RESPONSES, "leaky-byok-model", "leaky-byok", {"input": "hi"}),
        (RESPONSES, "leaky-responses", "leaky-responses", {"input": "hi"}),
        (
            "/v1/messages",
            "leaky-byok-model",
            "leaky-byok",
            {"max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]},
        ),
    ],
)
def test_an_upstream_error_quoting_an_inline_byok_key_never_reaches_the_client(
    edge: Edge, path: str, model: str, provider: str, extra: dict[str, Any], stream: bool
) -> None:
    key = _user(edge, "inline")
    secret = "q" + uuid.uuid4().hex + uuid.uuid4().hex  # no recognisable shape: only its registration masks it
    body = {"model": model, "stream": stream, "api_key": secret, "provider": provider, **extra}
    with httpx.Client(base_url=edge.url, timeout=30) as client:
        reply = client.post(path, json=body, headers=bearer(key))
        assert reply.status_code == 502, reply.text  # the provider refused the key, quoting it
        assert "[redacted]" in reply.text and secret[:16] not in reply.text and secret[-16:] not in reply.text


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        (RESPONSES, b'{"model": "echo-paid", "input": "\\ud800"}'),
        (RESPONSES, b'{"model": "echo-responses", "input": "\\udfff x"}'),
        (RESPONSES, b'{"model": "echo-paid", "input": "hi", "instructions": "\\ud83d"}'),
        (
            "/v1/messages",
            b'{"model": "echo-paid", "max_tokens": 5, "messages": [{"role": "user", "content": "\\ud800"}]}',
        ),
        (RESPONSES, b'{"model": "echo-paid", "input": [{"role": "user", "content": [{"type": "input_text"}]}]}'),
        (RESPONSES, b'{"model": "echo-paid", "input": [{"role": "user", "content": [7]}]}'),
        (
            RESPONSES,
            b'{"model": "echo-paid", "input": "hi", "tools": [{"type": "namespace", "name": "n", "tools": 3}]}',
        ),
        (RESPONSES, b'{"model": "echo-paid", "input": "hi", "reasoning": {"effort": 3}}'),
        (RESPONSES, b'{"model": "echo-responses", "input": "hi", "tools": [{"type": "mcp", "server_url": "x"}]}'),
        (RESPONSES, b'{"model": ["echo-paid"], "input": "hi"}'),
        (RESPONSES, b'{"model": "echo-paid", "input": "hi", "max_output_tokens": 1e400}'),
        (RESPONSES, b'{"model": "echo-paid", "input": "hi", "max_output_tokens": true}'),
    ],
)
def test_odd_typed_input_is_a_clear_400_before_any_call(edge: Edge, http: httpx.Client, path: str, raw: bytes) -> None:
    key = _user(edge, "odd")
    calls = _stats(edge)["total"]
    reply = http.post(path, content=raw, headers={**bearer(key), "content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    assert reply.text and _stats(edge)["total"] == calls


def test_another_users_cheap_traffic_never_evicts_a_stored_response(edge: Edge, http: httpx.Client) -> None:
    """The edge suite's cache holds 5 entries: stored responses must not share its LRU."""
    victim, flooder = _user(edge, "victim"), _user(edge, "flooder")
    kept = http.post(RESPONSES, json={"model": "echo-paid", "input": "keep me"}, headers=bearer(victim))
    assert kept.status_code == 200, kept.text
    for i in range(8):  # free, and each a new stored response and a new cache entry
        assert http.post(RESPONSES, json={"model": "echo-free", "input": f"x{i}"}, headers=bearer(flooder)).is_success
        chat = {"model": "echo-free", "messages": [{"role": "user", "content": f"c{i}"}]}
        assert http.post("/v1/chat/completions", json=chat, headers=bearer(flooder)).is_success
    assert http.get(f"{RESPONSES}/{kept.json()['id']}", headers=bearer(victim)).status_code == 200
