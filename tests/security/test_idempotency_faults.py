"""Idempotency-Key through faults: Redis paused or dead, a gateway killed mid-request.

Two gateways share a Redis of this module's own. A request carrying a key is refused (503, Retry-After)
while Redis is unreachable, never remembered in one process only, so it is neither run nor charged; a
claim whose gateway died lapses with the request's deadline; failed authentications count across both
gateways. The tests run in order: the last one kills Redis.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.gateway.edge import PENDING_MARGIN
from services.launcher import Suite, free_port
from tests.e2e.support import balance_micro, bearer, create_key, start_suite, upstream_count
from tests.security.conftest import CATALOG, Redis, start_redis

CHAT = "/v1/chat/completions"
REQUEST_TIMEOUT = 3.0
BODY = {"model": "echo-paid", "messages": [{"role": "user", "content": "exactly once"}]}


@dataclass
class Shared:
    suite: Suite
    redis: Redis
    gateways: list[str]
    extra: list[subprocess.Popen[bytes]]

    def start_gateway(self, name: str) -> str:
        port = free_port()
        assert self.suite.log_dir is not None
        with open(self.suite.log_dir / f"{name}.log", "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "services.gateway"],
                env={**self.suite.environment(), "TOLLGATE_GATEWAY_PORT": str(port)},
                stdout=out,
                stderr=out,
            )
        self.extra.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"gateway {name} did not start")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    redis = start_redis(tmp_path_factory.mktemp("redis"))
    tmp = Path(tmp_path_factory.mktemp("faults"))
    suite = start_suite(
        tmp,
        TOLLGATE_CATALOG=str(CATALOG),
        TOLLGATE_REDIS_URL=redis.url,
        TOLLGATE_REQUEST_TIMEOUT=str(REQUEST_TIMEOUT),
        TOLLGATE_RATE_LIMIT_KEY_RPM="1000",  # the limiter is active, and keeps its fallback to memory
    )
    world = Shared(suite, redis, [f"http://127.0.0.1:{suite.ports.gateway}"], [])
    try:
        world.gateways.append(world.start_gateway("gateway-2"))
        yield world
    finally:
        for process in world.extra:
            if process.poll() is None:
                process.terminate()
                process.wait(20)
        suite.stop()
        redis.kill()


@pytest.fixture(scope="module")
def upstream(shared: Shared) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{shared.suite.ports.upstream}", timeout=10) as client:
        yield client


def _refused(reply: httpx.Response) -> int:
    assert reply.status_code == 503, reply.text
    assert reply.json()["error"]["code"] == "service_unavailable"
    return int(reply.headers["retry-after"])


def test_failed_authentications_count_across_gateways(shared: Shared) -> None:
    address = f"192.0.2.{uuid.uuid4().int % 250 + 1}"
    statuses = [
        httpx.get(
            f"{shared.gateways[i % 2]}/v1/models",
            headers={**bearer(f"tg-guess-{uuid.uuid4().hex}"), "X-Forwarded-For": address},
            timeout=10,
        ).status_code
        for i in range(21)
    ]
    assert statuses == [401] * 20 + [429]


def test_a_claim_whose_gateway_died_lapses_with_the_request_deadline(shared: Shared) -> None:
    victim = shared.start_gateway("gateway-victim")
    key = create_key(shared.suite, f"killed-{uuid.uuid4().hex[:8]}")
    headers = {**bearer(key), "Idempotency-Key": f"killed-{uuid.uuid4()}"}
    slow = {**BODY, "model": "slow-echo", "power_level": "custom"}  # 1.5 s upstream: time to kill it

    def doomed() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{victim}{CHAT}", json=slow, headers=headers, timeout=10)

    caller = threading.Thread(target=doomed)
    claimed = time.monotonic()
    caller.start()
    time.sleep(0.5)
    shared.extra[-1].kill()  # SIGKILL mid-request: the claim is never settled
    caller.join()

    survivor = shared.gateways[0]
    in_flight = httpx.post(f"{survivor}{CHAT}", json=slow, headers=headers, timeout=10)
    assert in_flight.status_code == 409, in_flight.text
    lapse = REQUEST_TIMEOUT + PENDING_MARGIN
    while (reply := httpx.post(f"{survivor}{CHAT}", json=slow, headers=headers, timeout=10)).status_code == 409:
        assert time.monotonic() - claimed < lapse + 3, "the claim outlived its request's deadline"
        time.sleep(0.5)
    assert reply.status_code == 200, reply.text
    assert time.monotonic() - claimed >= lapse - 1
    # The finished request keeps its record for the idempotency TTL: a retry now is a replay.
    replayed = httpx.post(f"{shared.gateways[1]}{CHAT}", json=slow, headers=headers, timeout=10)
    assert replayed.headers.get("idempotent-replayed") == "true"


def test_a_paused_redis_refuses_keyed_requests_and_serves_the_rest(shared: Shared, upstream: httpx.Client) -> None:
    key = create_key(shared.suite, f"paused-{uuid.uuid4().hex[:8]}")
    headers = {**bearer(key), "Idempotency-Key": f"paused-{uuid.uuid4()}"}
    with httpx.Client(base_url=shared.gateways[0], timeout=10) as http:
        before, calls = balance_micro(http, key), upstream_count(upstream, CHAT, "demo-echo")
        shared.redis.pause()
        try:
            began = time.monotonic()
            wait = _refused(http.post(CHAT, json=BODY, headers=headers))
            assert time.monotonic() - began < 3 and 1 <= wait <= 5
            assert upstream_count(upstream, CHAT, "demo-echo") == calls
            assert balance_micro(http, key) == before
            unkeyed = http.post(CHAT, json=BODY, headers=bearer(key))
            assert unkeyed.status_code == 200, unkeyed.text  # the rate limiter falls back to memory
        finally:
            shared.redis.resume()
        time.sleep(wait)
        first = http.post(CHAT, json=BODY, headers=headers)
        assert first.status_code == 200, first.text
    again = httpx.post(f"{shared.gateways[1]}{CHAT}", json=BODY, headers=headers, timeout=10)
    assert again.headers.get("idempotent-replayed") == "true" and again.json() == first.json()
    assert upstream_count(upstream, CHAT, "demo-echo") == calls + 2  # the unkeyed request, then the keyed one


def test_a_dead_redis_refuses_keyed_requests_uncharged(shared: Shared, upstream: httpx.Client) -> None:
    key = create_key(shared.suite, f"dead-{uuid.uuid4().hex[:8]}")
    headers = {**bearer(key), "Idempotency-Key": f"dead-{uuid.uuid4()}"}
    with httpx.Client(base_url=shared.gateways[1], timeout=10) as http:
        before = balance_micro(http, key)
        calls = upstream_count(upstream, CHAT, "demo-echo")
        shared.redis.kill()
        for _ in range(3):  # during and after the outage: refused every time, never run
            _refused(http.post(CHAT, json=BODY, headers=headers))
        assert upstream_count(upstream, CHAT, "demo-echo") == calls
        assert balance_micro(http, key) == before
        assert http.post(CHAT, json=BODY, headers=bearer(key)).status_code == 200
