"""Hanging up at the worst moment: the provider call is cancelled at once and charged what the provider bills.

A client that goes away while the provider has its request pays the prompt (the provider processed it) and
nothing more for a non-stream call; the usage row says `cancelled`. Against the suite as real processes, with
a raw socket as the client so that the disconnect is exactly where the test puts it.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from services.launcher import Suite
from tests.e2e.support import balance_micro, bearer, cost_micro, create_key, reconcile, start_suite, words

PROMPT = "hang up on me"


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    running = start_suite(Path(tmp_path_factory.mktemp("disconnects")))
    yield running
    running.stop()
    report = reconcile(f"sqlite:///{running.data_dir / 'credits.db'}")
    assert report.returncode == 0, report.stdout + report.stderr


@pytest.fixture(scope="module")
def http(suite: Suite) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{suite.host}:{suite.ports.gateway}", timeout=30) as client:
        yield client


def _send_and_hang_up(suite: Suite, key: str, body: dict[str, object], after: float) -> None:
    raw = orjson.dumps(body)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {suite.host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nX-Power-Level: CUSTOM\r\nContent-Length: {len(raw)}\r\n\r\n"
    )
    with socket.create_connection((suite.host, suite.ports.gateway), timeout=10) as sock:
        sock.sendall(head.encode() + raw)
        time.sleep(after)


def _last_usage(http: httpx.Client, key: str, wait: float = 5.0) -> dict[str, object]:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        rows = http.get("/v1/usage", headers=bearer(key)).json()["data"]
        if rows:
            return dict(rows[0])
        time.sleep(0.05)
    raise AssertionError("no usage row was written")


def test_a_non_stream_call_is_cancelled_when_the_client_leaves_and_pays_its_prompt(
    suite: Suite, http: httpx.Client
) -> None:
    key = create_key(suite, f"leaver-{uuid.uuid4().hex[:8]}")
    before = balance_micro(http, key)
    began = time.monotonic()
    _send_and_hang_up(suite, key, {"model": "slow-paid", "messages": [{"role": "user", "content": PROMPT}]}, 0.5)
    row = _last_usage(http, key)
    # The upstream answers after 3 s: a row before that means the call was cut when the client left.
    assert time.monotonic() - began < 2.5, "the provider call ran to its end after the client had gone"
    assert row["status"] == "cancelled"
    assert row["completion_tokens"] == 0
    prompt = int(str(row["prompt_tokens"]))
    assert prompt >= words(PROMPT)  # the prompt the provider processed is paid for
    charged = before - balance_micro(http, key)
    assert charged == int(str(row["cost_micro"])) == cost_micro(prompt, 0, 0.01, 0.02) > 0


def test_a_call_never_sent_costs_nothing(suite: Suite, http: httpx.Client) -> None:
    key = create_key(suite, f"early-{uuid.uuid4().hex[:8]}")
    before = balance_micro(http, key)
    with socket.create_connection((suite.host, suite.ports.gateway), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode())
    time.sleep(0.5)
    assert balance_micro(http, key) == before
    assert http.get("/v1/usage", headers=bearer(key)).json()["data"] == []
