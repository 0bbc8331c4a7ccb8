"""Budgets end to end, through the openai SDK: a key's monthly budget reached by waves of 50 concurrent
requests is never overspent, refusals are 402 `budget_exceeded` naming the budget, and each alert threshold
reaches a real webhook receiver exactly once with a valid signature. Users cannot set or delete budgets,
and see only the budgets that apply to them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.launcher import Suite
from tests.e2e.support import bearer, eventually, grpc_channel, reconcile, settled, start_suite

SECRET = "whsec-e2e-budget-signing-4b1d"
WORDS = 100
PROMPT = " ".join(["ab"] * WORDS)


class Receiver:
    """A budget webhook receiver that verifies each signature as a customer would."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.bad = 0
        self.lock = threading.Lock()

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        parts = dict(p.split("=", 1) for p in request.headers.get("x-tollgate-signature", "").split(",") if "=" in p)
        stamp = parts.get("t", "")
        expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        with self.lock:
            if not (stamp.isdigit() and abs(time.time() - int(stamp)) < 300) or not hmac.compare_digest(
                expected, parts.get("v1", "")
            ):
                self.bad += 1
                return Response(status_code=400)
            self.alerts.append(orjson.loads(body))
        return Response(status_code=204)


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    fake = Receiver()
    app = Starlette(routes=[Route("/budget-hook", fake.hook, methods=["POST"])])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, "the webhook receiver started")
    yield fake, f"http://127.0.0.1:{port}/budget-hook"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def budget_suite(tmp_path_factory: pytest.TempPathFactory, receiver: tuple[Receiver, str]) -> Iterator[Suite]:
    running = start_suite(
        Path(tmp_path_factory.mktemp("budgets")),
        TOLLGATE_CREDITS_BUDGET_WEBHOOK_URL=receiver[1],
        TOLLGATE_CREDITS_BUDGET_WEBHOOK_SECRET=SECRET,
        TOLLGATE_CREDITS_OUTBOX_INTERVAL_SECONDS="0.2",
        TOLLGATE_CREDITS_OUTBOX_MAX_BACKOFF_SECONDS="1",
    )
    yield running
    running.stop()
    report = reconcile(f"sqlite:///{running.data_dir / 'credits.db'}")
    assert report.returncode == 0, report.stdout + report.stderr
    assert running.log_dir is not None
    assert SECRET not in "".join(p.read_text(errors="replace") for p in running.log_dir.glob("*"))


@pytest.fixture(scope="module")
def gateway(budget_suite: Suite) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{budget_suite.host}:{budget_suite.ports.gateway}", timeout=30) as session:
        yield session


def new_key(suite: Suite, user: str) -> tuple[str, str]:
    from tollgate.keyvault.v1 import keyvault_pb2, keyvault_pb2_grpc

    with grpc_channel(suite, "keyvault") as chan:
        reply = keyvault_pb2_grpc.KeyVaultStub(chan).CreateApiKey(
            keyvault_pb2.CreateApiKeyRequest(user_id=user, scopes=["user"], actor="e2e"), timeout=10
        )
    return str(reply.api_key), str(reply.info.key_id)


def set_budget(http: httpx.Client, key: str, **body: Any) -> httpx.Response:
    return http.post("/v1/budgets", headers=bearer(key), json=body)


def budget_of(http: httpx.Client, admin: str, budget_id: str) -> dict[str, Any]:
    listed = http.get("/v1/budgets", headers=bearer(admin)).json()["data"]
    return next(b for b in listed if b["id"] == budget_id)


async def wave(suite: Suite, key: str, n: int) -> list[Any]:
    async with openai.AsyncOpenAI(base_url=suite.base_url, api_key=key, max_retries=0, timeout=60) as sdk:
        return await asyncio.gather(
            *(
                sdk.chat.completions.create(
                    model="echo-paid", messages=[{"role": "user", "content": PROMPT}], max_tokens=WORDS + 1
                )
                for _ in range(n)
            ),
            return_exceptions=True,
        )


def test_a_keys_monthly_budget_under_50_concurrent_requests(
    budget_suite: Suite, gateway: httpx.Client, receiver: tuple[Receiver, str]
) -> None:
    admin = budget_suite.bootstrap_keys()["admin_key"]
    key, key_id = new_key(budget_suite, f"spender-{uuid.uuid4().hex[:8]}")
    made = set_budget(
        gateway, admin, scope="key", scope_id=key_id, period="monthly", timezone="Europe/Paris", limit="0.08"
    )
    assert made.status_code == 201, made.text
    budget = made.json()
    assert budget["alert_percents"] == [50, 80, 100] and budget["limit_micro"] == 80_000

    served = 0
    refusals: list[openai.APIStatusError] = []
    for _ in range(10):
        results = asyncio.run(wave(budget_suite, key, 50))
        unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, openai.APIStatusError)]
        assert not unexpected, unexpected
        won = [r for r in results if not isinstance(r, Exception)]
        refusals += [r for r in results if isinstance(r, openai.APIStatusError)]
        served += len(won)
        if not won:
            break
    assert served > 0 and refusals
    first = refusals[0]
    assert first.status_code == 402
    error = first.response.json()["error"]
    assert (error["code"], error["type"]) == ("budget_exceeded", "insufficient_quota")
    for part in ("monthly", key_id, budget["id"], "0.080000", "resets at", "Europe/Paris"):
        assert part in error["message"], error["message"]
    assert {r.status_code for r in refusals} == {402}

    settled(gateway, key)
    after = budget_of(gateway, admin, budget["id"])
    usage = gateway.get("/v1/usage", params={"key": key_id, "limit": 1000}, headers=bearer(key)).json()["data"]
    charged = sum(row["cost_micro"] for row in usage if row["status"] == "ok")
    assert after["reserved_micro"] == 0
    assert after["spent_micro"] == charged <= after["limit_micro"]  # never overspent
    assert after["spent_micro"] >= 0.8 * after["limit_micro"]

    fake, _ = receiver

    def delivered() -> list[int]:
        with fake.lock:
            return sorted(a["threshold_percent"] for a in fake.alerts if a["budget_id"] == budget["id"])

    eventually(lambda: delivered() == [50, 80, 100], "each threshold's alert delivered")
    time.sleep(1.0)  # a few more dispatch rounds: nothing is sent twice
    assert delivered() == [50, 80, 100] and fake.bad == 0
    by_percent = {a["threshold_percent"]: a for a in fake.alerts if a["budget_id"] == budget["id"]}
    assert by_percent[100]["reason"] == "limit_reached" and by_percent[50]["scope_id"] == key_id


def test_users_cannot_set_or_delete_budgets_and_see_only_their_own(budget_suite: Suite, gateway: httpx.Client) -> None:
    admin = budget_suite.bootstrap_keys()["admin_key"]
    mallory_key, mallory_key_id = new_key(budget_suite, f"mallory-{uuid.uuid4().hex[:6]}")
    _victim_key, victim_key_id = new_key(budget_suite, f"victim-{uuid.uuid4().hex[:6]}")
    common = {"period": "daily", "timezone": "UTC", "limit": "1"}
    mine = set_budget(gateway, admin, scope="key", scope_id=mallory_key_id, **common).json()
    theirs = set_budget(gateway, admin, scope="key", scope_id=victim_key_id, **common).json()

    # Raising its own budget, or creating one, is refused; nothing changes.
    raised = set_budget(gateway, mallory_key, scope="key", scope_id=mallory_key_id, **{**common, "limit": "1000"})
    assert raised.status_code == 403, raised.text
    assert raised.json()["error"]["code"] == "permission_denied"
    assert budget_of(gateway, admin, mine["id"])["limit_micro"] == 1_000_000
    for budget_id in (mine["id"], theirs["id"]):
        gone = gateway.delete(f"/v1/budgets/{budget_id}", headers=bearer(mallory_key))
        assert gone.status_code == 403, gone.text
    # It sees the budget of its own key, not the victim's, whatever it filters on.
    seen = gateway.get("/v1/budgets", headers=bearer(mallory_key)).json()["data"]
    assert [b["id"] for b in seen] == [mine["id"]]
    probe = gateway.get(
        "/v1/budgets", params={"scope": "key", "scope_id": victim_key_id}, headers=bearer(mallory_key)
    ).json()["data"]
    assert probe == []


def test_bad_budgets_are_400_naming_the_field_and_deletes_work(budget_suite: Suite, gateway: httpx.Client) -> None:
    admin = budget_suite.bootstrap_keys()["admin_key"]
    base = {"scope": "team", "scope_id": "t-e2e", "period": "weekly", "timezone": "UTC", "limit": "5"}
    for change, param in (
        ({"limit": "-1"}, "limit"),
        ({"scope": "galaxy"}, "scope"),
        ({"period": "hourly"}, "period"),
        ({"timezone": ""}, "timezone"),
        ({"timezone": "Nowhere/Atlantis"}, "timezone"),
        ({"alert_percents": [0]}, "alert_percents"),
    ):
        refused = set_budget(gateway, admin, **{**base, **change})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == param
    assert [b for b in gateway.get("/v1/budgets", headers=bearer(admin)).json()["data"] if b["scope"] == "team"] == []
    made = set_budget(gateway, admin, **base).json()
    assert gateway.delete(f"/v1/budgets/{made['id']}", headers=bearer(admin)).json()["deleted"] is True
    assert gateway.delete(f"/v1/budgets/{made['id']}", headers=bearer(admin)).status_code == 404
