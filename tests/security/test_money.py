"""A user with a normal key tries to get completions without paying: replayed ids, other users' ids, racing.

Against the suite as real processes. After every attack the ledger reconciles, and it counts one usage row
per provider call, so a completion that slipped past the ledger would show.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.launcher import Suite
from tests.e2e.support import balance_micro, bearer, create_key, reconcile, settled, start_suite

PAID = {"model": "echo-paid", "messages": [{"role": "user", "content": "pay for me please"}], "max_tokens": 50}


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    running = start_suite(Path(tmp_path_factory.mktemp("money")))
    yield running
    running.stop()
    report = reconcile(f"sqlite:///{running.data_dir / 'credits.db'}")
    assert report.returncode == 0, report.stdout + report.stderr


@pytest.fixture(scope="module")
def http(suite: Suite) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{suite.host}:{suite.ports.gateway}", timeout=30) as client:
        yield client


def _drain(http: httpx.Client, admin: str, user: str, key: str) -> None:
    left = balance_micro(http, key)
    reply = http.post(
        "/v1/admin/credits",
        headers=bearer(admin),
        json={"user_id": user, "amount_micro": -left, "kind": "adjustment", "reason": "drain"},
    )
    assert reply.status_code == 201, reply.text
    assert balance_micro(http, key) == 0


def _usage_rows(http: httpx.Client, key: str) -> list[dict[str, object]]:
    settled(http, key)  # an answer's settle, and its usage row, land just after it
    reply = http.get("/v1/usage", headers=bearer(key), params={"limit": 500})
    assert reply.status_code == 200, reply.text
    rows: list[dict[str, object]] = reply.json()["data"]
    return rows


@pytest.mark.parametrize("stream", [False, True])
def test_a_replayed_request_id_at_zero_balance_buys_nothing(suite: Suite, http: httpx.Client, stream: bool) -> None:
    user = f"replayer-{uuid.uuid4().hex[:8]}"
    key = create_key(suite, user)
    rid = f"mine-{uuid.uuid4().hex}"
    body = {**PAID, "stream": stream}
    first = http.post("/v1/chat/completions", json=body, headers={**bearer(key), "X-Request-Id": rid})
    assert first.status_code == 200, first.text
    _drain(http, suite.bootstrap_keys()["admin_key"], user, key)
    calls_before = len(_usage_rows(http, key))
    for _ in range(3):
        again = http.post("/v1/chat/completions", json=body, headers={**bearer(key), "X-Request-Id": rid})
        assert again.status_code == 402, again.text
        assert "echo:" not in again.text
    assert balance_micro(http, key) == 0
    rows = _usage_rows(http, key)
    assert len(rows) == calls_before  # refused before any provider call: nothing to record


def test_another_users_request_id_is_only_a_correlation_id(suite: Suite, http: httpx.Client) -> None:
    victim, attacker = (create_key(suite, f"{who}-{uuid.uuid4().hex[:8]}") for who in ("victim", "attacker"))
    rid = f"shared-{uuid.uuid4().hex}"
    for key in (attacker, victim, attacker):
        before = balance_micro(http, key)
        reply = http.post("/v1/chat/completions", json=PAID, headers={**bearer(key), "X-Request-Id": rid})
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-request-id"] == rid
        assert before - balance_micro(http, key) == round(float(reply.headers["x-tollgate-cost"]) * 1_000_000) > 0


def test_every_paid_answer_has_its_charge_and_usage_row(suite: Suite, http: httpx.Client) -> None:
    user = f"counter-{uuid.uuid4().hex[:8]}"
    key = create_key(suite, user)
    start = balance_micro(http, key)
    costs = 0
    for n in range(6):
        body = {**PAID, "stream": n % 2 == 1, "messages": [{"role": "user", "content": f"request {n}"}]}
        reply = http.post("/v1/chat/completions", json=body, headers={**bearer(key), "X-Request-Id": "same-every-time"})
        assert reply.status_code == 200, reply.text
    rows = [r for r in _usage_rows(http, key) if r["status"] == "ok"]
    assert len(rows) == 6
    costs = sum(int(str(r["cost_micro"])) for r in rows)
    assert costs > 0 and start - balance_micro(http, key) == costs


def test_own_keys_are_refused_where_the_provider_checks_no_keys(suite: Suite, http: httpx.Client) -> None:
    key = create_key(suite, f"junk-byok-{uuid.uuid4().hex[:8]}")
    stored = http.post(
        "/v1/byok/keys", json={"provider": "fake-free", "api_key": "sk-junk-0000000000"}, headers=bearer(key)
    )
    assert stored.status_code == 400, stored.text
    assert stored.json()["error"]["param"] == "provider"
    inline = {**PAID, "model": "echo-free", "byok": True, "provider": "fake-free", "api_key": "sk-junk-0000000000"}
    refused = http.post("/v1/chat/completions", json=inline, headers=bearer(key))
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "api_key"
    assert "sk-junk" not in refused.text
