"""The edge under attack: slow and malformed clients, key guessing, odd JSON, cache poisoning, metrics.

Raw sockets play the clients an HTTP library would refuse to be: one that trickles its request a byte
at a time, one that puts control characters in a header, one that holds connections open.
"""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.support import balance_micro, bearer, create_key
from tests.security.conftest import BODY_TIMEOUT, CACHE_ENTRIES, HEADER_TIMEOUT, MAX_CONNECTIONS, Edge

CHAT = "/v1/chat/completions"
HELLO = {"model": "echo-free", "messages": [{"role": "user", "content": "hello there"}]}


def _connect(edge: Edge) -> socket.socket:
    return socket.create_connection((edge.suite.host, edge.suite.ports.gateway), timeout=10)


def _read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def _split(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def _openai_error(raw: bytes, status: int, code: str) -> dict[str, Any]:
    got, headers, body = _split(raw)
    assert got == status, raw[:300]
    assert headers["content-type"] == "application/json"
    error: dict[str, Any] = orjson.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    return error


def _request_head(path: str, key: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_a_trickled_body_is_cut_within_the_body_timeout(edge: Edge, keys: dict[str, str]) -> None:
    body = orjson.dumps(HELLO)
    with _connect(edge) as sock:
        sock.sendall(_request_head(CHAT, keys["demo_key"], len(body)))
        began = time.monotonic()
        answer = b""
        sock.setblocking(False)
        for byte in body:  # one byte every 0.2 s: the whole body would take len(body) / 5 seconds
            # Read what came before sending more: a byte sent after the gateway closed would draw a reset.
            try:
                chunk = sock.recv(65536)
                answer += chunk
                if not chunk:
                    break
            except BlockingIOError:
                pass
            if answer:
                continue
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.2)
        cut_after = time.monotonic() - began
    assert len(body) / 5 > BODY_TIMEOUT * 3
    assert cut_after < BODY_TIMEOUT + 1.5, f"connection held for {cut_after:.1f}s"
    _openai_error(answer, 408, "request_timeout")


def test_trickled_headers_are_cut_within_the_header_timeout(edge: Edge) -> None:
    with _connect(edge) as sock:
        began = time.monotonic()
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: gateway\r\nX-Slow: ")
        for byte in b"abcdefghijklmnopqrstuvwxyz":
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.3)
            if time.monotonic() - began > HEADER_TIMEOUT + 0.5:
                break
        answer = _read_all(sock)
        cut_after = time.monotonic() - began
    assert cut_after < HEADER_TIMEOUT + 1.5, f"connection held for {cut_after:.1f}s"
    _openai_error(answer, 408, "request_timeout")


def test_a_silent_connection_is_closed_within_the_header_timeout(edge: Edge) -> None:
    with _connect(edge) as sock:
        began = time.monotonic()
        assert _read_all(sock) == b""
        assert time.monotonic() - began < HEADER_TIMEOUT + 1.5


@pytest.mark.parametrize(
    "header",
    [
        b"X-Note: a\x01b",
        b"X-Note: a\x7fb",
        b"X-Note: a\x00b",
        b"X-Note: a\rb",
        b"Authorization: Bearer tg-abc\x01def",
        b"Authorization: Bearer tg-abc\x1b[31mred",
        b"Bad Name: value",
    ],
)
def test_a_control_character_in_a_header_is_an_openai_shaped_400(edge: Edge, header: bytes) -> None:
    with _connect(edge) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: gateway\r\n" + header + b"\r\n\r\n")
        _openai_error(_read_all(sock), 400, "invalid_request")


def test_oversized_headers_are_an_openai_shaped_431(edge: Edge) -> None:
    with _connect(edge) as sock:
        # Just past the limit, then silence: nothing is left unread when the gateway answers and closes.
        filler = b"".join(f"X-Filler-{i}: {'x' * 1000}\r\n".encode() for i in range(66))
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: gateway\r\n" + filler)
        _openai_error(_read_all(sock), 431, "headers_too_large")


@pytest.mark.parametrize("key", ["tg-abc\tdef", "tg-é-not-ascii", "tg-a b"])
def test_a_malformed_bearer_key_is_a_401(http: httpx.Client, key: str) -> None:
    reply = http.get("/v1/models", headers={b"Authorization": f"Bearer {key}".encode("latin-1")}, timeout=10)
    assert reply.status_code == 401, reply.text
    assert reply.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("api_key", ["sk-abc\r\nX-Injected: yes", "sk-abc\ndef", "sk-\x00abc", "sk-abc def"])
def test_a_provider_key_with_control_characters_is_a_400(edge: Edge, http: httpx.Client, api_key: str) -> None:
    user = create_key(edge.suite, f"ctl-{uuid.uuid4().hex[:8]}")
    inline = {**HELLO, "model": "echo-paid", "byok": True, "provider": "fake", "api_key": api_key}
    for path, body, key in (
        (CHAT, inline, user),
        ("/v1/byok/keys", {"provider": "fake", "api_key": api_key}, user),
    ):
        reply = http.post(path, json=body, headers=bearer(key))
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["param"] == "api_key"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": ["user"], "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": {"user": 1}, "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": ["text"], "text": "x"}]}]}, "messages[0].content[0].type"),
        ({"messages": [{"role": "user", "content": [{"type": {}, "text": "x"}]}]}, "messages[0].content[0].type"),
        (
            {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": ["json"]}},
            "response_format.type",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": {}}}, "response_format.type"),
    ],
)
def test_a_list_or_object_where_a_name_belongs_is_a_400_naming_it(
    http: httpx.Client, keys: dict[str, str], body: dict[str, Any], param: str
) -> None:
    reply = http.post(CHAT, json={"model": "echo-free", **body}, headers=bearer(keys["demo_key"]))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


def test_failed_authentications_are_limited_per_client_address(http: httpx.Client, keys: dict[str, str]) -> None:
    guesser, bystander = f"198.51.100.{uuid.uuid4().int % 250 + 1}", "203.0.113.9"
    wrong = [
        http.get("/v1/models", headers={**bearer(f"tg-guess-{i:04d}-{uuid.uuid4().hex}"), "X-Forwarded-For": guesser})
        for i in range(20)
    ]
    assert [r.status_code for r in wrong] == [401] * 20
    # Sending no key at all guesses nothing, and is not counted.
    assert http.get("/v1/models", headers={"X-Forwarded-For": bystander}).status_code == 401
    refused = http.get(
        "/v1/models", headers={**bearer("tg-guess-more-" + uuid.uuid4().hex), "X-Forwarded-For": guesser}
    )
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # Once over the limit, the address gets no answer about any key, a right one included...
    right = keys["admin_key"]
    assert http.get("/v1/models", headers={**bearer(right), "X-Forwarded-For": guesser}).status_code == 429
    # ...while other addresses are served.
    assert http.get("/v1/models", headers={**bearer(right), "X-Forwarded-For": bystander}).status_code == 200


def test_the_cache_key_includes_the_power_level_header(http: httpx.Client, keys: dict[str, str]) -> None:
    body = {"temperature": 0, "messages": [{"role": "user", "content": f"levels {uuid.uuid4()}"}]}
    eco = http.post(CHAT, json=body, headers={**bearer(keys["demo_key"]), "X-Power-Level": "eco"})
    precise = http.post(CHAT, json=body, headers={**bearer(keys["demo_key"]), "X-Power-Level": "precision"})
    assert eco.status_code == precise.status_code == 200, (eco.text, precise.text)
    assert eco.headers["x-tollgate-model"] == "echo-free"
    assert precise.headers["x-tollgate-cache"] == "miss"
    assert precise.headers["x-tollgate-model"] == "echo-paid"
    again = http.post(CHAT, json=body, headers={**bearer(keys["demo_key"]), "X-Power-Level": "PRECISION"})
    assert again.headers["x-tollgate-cache"] == "hit" and again.headers["x-tollgate-model"] == "echo-paid"


def test_cached_responses_never_evict_idempotency_records(edge: Edge, http: httpx.Client) -> None:
    key = create_key(edge.suite, f"evict-{uuid.uuid4().hex[:8]}")
    headers = {**bearer(key), "Idempotency-Key": f"keep-{uuid.uuid4()}"}
    body = {"model": "echo-paid", "messages": [{"role": "user", "content": "charge me once"}]}
    first = http.post(CHAT, json=body, headers=headers)
    assert first.status_code == 200, first.text
    balance = balance_micro(http, key)  # once the first answer's settle has landed
    for i in range(CACHE_ENTRIES * 3):
        filler = {"model": "echo-free", "temperature": 0, "messages": [{"role": "user", "content": f"fill {i}"}]}
        assert http.post(CHAT, json=filler, headers=bearer(key)).headers["x-tollgate-cache"] == "miss"
    again = http.post(CHAT, json=body, headers=headers)
    assert again.headers.get("idempotent-replayed") == "true"
    assert balance_micro(http, key) == balance


def test_metrics_are_served_on_their_own_port_only(edge: Edge, http: httpx.Client) -> None:
    public = http.get("/metrics")
    assert public.status_code == 404
    assert public.json()["error"]["code"] == "not_found"
    internal = httpx.get(f"http://{edge.suite.host}:{edge.metrics_port}/metrics", timeout=10)
    assert internal.status_code == 200
    assert "tollgate_http_requests_total" in internal.text


def test_a_process_over_its_connection_limit_answers_an_openai_shaped_503(edge: Edge) -> None:
    held = []
    try:
        for _ in range(MAX_CONNECTIONS + 5):  # each sends part of a request, so it counts until its deadline
            sock = _connect(edge)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n")
            held.append(sock)
        with _connect(edge) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
            answer = _read_all(sock)
    finally:
        for sock in held:
            sock.close()
    _openai_error(answer, 503, "service_unavailable")
    assert _split(answer)[1]["retry-after"] == "1"
    time.sleep(0.5)
    assert httpx.get(f"{edge.url}/health", timeout=10).status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "/v1/usage?before=%C2%B3",  # '³': str.isdigit() says yes, int() says no
        "/v1/usage/summary?since=%C2%B2",
        "/v1/credits/transactions?limit=%C2%B9",
        "/v1/credits/transactions?before=" + "9" * 40,
        "/v1/usage?since=" + "9" * 30,
    ],
)
def test_odd_numbers_in_a_query_are_a_400(http: httpx.Client, keys: dict[str, str], query: str) -> None:
    reply = http.get(query, headers=bearer(keys["admin_key"]))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] in ("before", "since", "limit")


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/admin/credits", {"user": "odd", "amount_micro": 2**70}, "amount_micro"),
        ("/v1/admin/credits", {"user": "odd", "amount": "1e400"}, "amount"),
        ("/v1/admin/credits", {"user": "odd", "amount": "Infinity"}, "amount"),
        ("/v1/admin/keys", {"user": "odd", "rpm_limit": 2**40}, "rpm_limit"),
        ("/v1/admin/keys", {"user": "odd", "expires_at": 1e20}, "expires_at"),
        ("/v1/admin/keys", {"user": "odd", "expires_in_days": 10**9}, "expires_in_days"),
    ],
)
def test_numbers_too_large_for_the_ledger_or_a_key_are_a_400(
    http: httpx.Client, keys: dict[str, str], path: str, body: dict[str, Any], param: str
) -> None:
    reply = http.post(path, json=body, headers=bearer(keys["admin_key"]))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


@pytest.mark.parametrize("key", ["tg-€", "tg-é", "tg-\u2028x"])
def test_a_console_sign_in_with_a_key_no_header_could_carry_is_a_plain_401(http: httpx.Client, key: str) -> None:
    reply = http.post("/console/session", json={"key": key}, headers={"X-Forwarded-For": "198.51.100.77"})
    assert reply.status_code == 401, reply.text
    assert reply.json()["error"]["code"] == "invalid_api_key"


def test_a_console_sign_in_takes_json_in_any_letter_case(http: httpx.Client, keys: dict[str, str]) -> None:
    reply = http.post(
        "/console/session",
        content=orjson.dumps({"key": keys["demo_key"]}),
        headers={"Content-Type": "Application/JSON"},
    )
    assert reply.status_code == 201, reply.text
