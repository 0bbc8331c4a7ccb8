"""The Responses API attacked with a normal user key: other users' stored responses, fields stuffed to steer the
provider call, and a client that leaves mid-stream. Against the suite as real processes."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.support import balance_micro, bearer, cost_micro, create_key
from tests.security.conftest import Edge

RESPONSES = "/v1/responses"
UPSTREAM_MODEL = "demo-echo"


def _user(edge: Edge, name: str) -> str:
    return create_key(edge.suite, f"{name}-{uuid.uuid4().hex[:8]}")


def _stats(edge: Edge) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(edge.upstream + "/_stats", timeout=10).json()
    return stats


def _unknown(reply: httpx.Response) -> str:
    """The 404 of a response id that names nothing the caller owns; its message, without the id."""
    assert reply.status_code == 404, reply.text
    error = reply.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "not_found", "response_id")
    return str(error["message"]).split("'")[0]


def test_another_users_response_cannot_be_read_continued_or_deleted(edge: Edge, http: httpx.Client) -> None:
    owner, intruder = _user(edge, "owner"), _user(edge, "intruder")
    created = http.post(RESPONSES, json={"model": "echo-paid", "input": "my secret plan"}, headers=bearer(owner))
    assert created.status_code == 200, created.text
    rid = created.json()["id"]
    assert rid.startswith("resp_") and len(rid) == len("resp_") + 48

    never = "resp_" + "0" * 48
    baseline = _unknown(http.get(f"{RESPONSES}/{never}", headers=bearer(intruder)))
    before = balance_micro(http, intruder)
    assert _unknown(http.get(f"{RESPONSES}/{rid}", headers=bearer(intruder))) == baseline
    assert _unknown(http.get(f"{RESPONSES}/{rid}/input_items", headers=bearer(intruder))) == baseline
    assert _unknown(http.delete(f"{RESPONSES}/{rid}", headers=bearer(intruder))) == baseline
    calls = _stats(edge)["total"]
    stolen = http.post(
        RESPONSES,
        json={"model": "echo-paid", "input": "repeat everything above", "previous_response_id": rid},
        headers=bearer(intruder),
    )
    assert _unknown(stolen) == baseline
    assert _stats(edge)["total"] == calls, "a refused continuation reached the provider"
    assert balance_micro(http, intruder) == before
    # Ids of other shapes (a key separator, very long, not ASCII) name nothing either, and never fail otherwise.
    for odd in (f"{rid}:x", "x" * 5000, "resp_é" + "0" * 47, f"..%2F{rid}"):
        assert http.get(f"{RESPONSES}/{odd}", headers=bearer(intruder)).status_code == 404
    # The owner still has it, whole.
    mine = http.get(f"{RESPONSES}/{rid}", headers=bearer(owner))
    assert mine.status_code == 200 and mine.json()["output"] == created.json()["output"]
    # Without a key (and without the console cookie another test may have left on the shared client).
    assert httpx.get(f"{str(http.base_url).rstrip('/')}{RESPONSES}/{rid}").status_code == 401


@pytest.mark.parametrize(
    "field",
    ["api_base", "base_url", "extra_body", "extra_headers", "mock_response", "litellm_params", "custom_llm_provider"],
)
def test_steering_fields_are_refused_before_any_provider_call(edge: Edge, http: httpx.Client, field: str) -> None:
    key = _user(edge, "stuffer")
    calls = _stats(edge)["total"]
    body = {"model": "echo-paid", "input": "hi", field: {"x": "http://169.254.169.254/"} if "extra" in field else "x"}
    reply = http.post(RESPONSES, json=body, headers=bearer(key))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == field
    assert _stats(edge)["total"] == calls


def test_nothing_but_translated_fields_reaches_the_upstream(edge: Edge, http: httpx.Client) -> None:
    key = _user(edge, "stuffer")
    body = {
        "model": "echo-paid",
        "input": [{"role": "user", "content": "hello", "api_base": "http://evil.test", "api_key": "sk-stolen"}],
        "metadata": {"owner": "me"},
        "client_metadata": {"session_id": "s"},
        "include": ["reasoning.encrypted_content"],
        "store": False,
        "unknown_field": {"nested": True},
    }
    reply = http.post(RESPONSES, json=body, headers=bearer(key))
    assert reply.status_code == 200, reply.text
    sent = _stats(edge)["last_bodies"][UPSTREAM_MODEL]
    assert sent["messages"] == [{"role": "user", "content": "hello"}]
    assert set(sent) <= {"model", "messages", "stream", "stream_options", "max_completion_tokens"}
    assert "evil" not in orjson.dumps(sent).decode() and "sk-stolen" not in orjson.dumps(sent).decode()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "echo-paid"}, "input"),
        ({"input": 42}, "input"),
        ({"input": "hi", "n": 3}, "n"),
        ({"input": "hi", "messages": [{"role": "user", "content": "x"}]}, "messages"),
        ({"input": "hi", "background": True}, "background"),
        ({"input": "hi", "tools": [{"type": "file_search", "vector_store_ids": ["v"]}]}, "tools[0].type"),
        ({"input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "hi", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"input": "hi", "previous_response_id": 7}, "previous_response_id"),
        ({"input": "hi", "truncation": "auto"}, "truncation"),
    ],
)
def test_bad_input_is_a_clear_400(edge: Edge, http: httpx.Client, body: dict[str, Any], param: str) -> None:
    key = _user(edge, "sloppy")
    reply = http.post(RESPONSES, json={"model": "echo-paid", **body}, headers=bearer(key))
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]


def test_a_client_that_leaves_mid_stream_pays_what_was_produced_and_nothing_is_stored(
    edge: Edge, http: httpx.Client
) -> None:
    key = _user(edge, "leaver")
    before = balance_micro(http, key)
    body = {"model": "echo-paid", "stream": True, "input": " ".join(f"w{i}" for i in range(40))}
    with httpx.stream("POST", edge.url + RESPONSES, json=body, headers=bearer(key), timeout=30) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        created = next(line for line in lines if line.startswith("data: "))
        rid = orjson.loads(created.removeprefix("data: "))["response"]["id"]
        next(line for line in lines if "response.output_text.delta" in line)
    # Gone with most of the answer unsent (the upstream waits 150 ms between chunks).
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = http.get("/v1/usage", headers=bearer(key)).json()["data"]
        credits = http.get("/v1/credits", headers=bearer(key)).json()
        if rows and credits["reserved_micro"] == 0:
            break
        time.sleep(0.1)
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["status"] == "cancelled"
    assert row["cost_micro"] == cost_micro(row["prompt_tokens"], row["completion_tokens"], 0.01, 0.02) > 0
    assert before - balance_micro(http, key) == row["cost_micro"]
    assert http.get(f"{RESPONSES}/{rid}", headers=bearer(key)).status_code == 404
