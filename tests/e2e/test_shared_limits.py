"""Two gateway replicas share Redis: limits hold exactly across both; when Redis dies, requests keep flowing."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.launcher import Suite, free_port
from tests.e2e.support import bearer, create_key, start_suite

BODY = {"model": "echo-free", "messages": [{"role": "user", "content": "hi"}]}


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A Redis of this test's own, so that killing it touches nothing else."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; it is needed to test the Redis fallback")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path_factory.mktemp("redis")),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    import redis

    while True:
        try:
            redis.Redis(port=port).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield proc, port
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory, private_redis: tuple[subprocess.Popen[bytes], int]
) -> Iterator[tuple[Suite, list[str]]]:
    _, port = private_redis
    tmp = Path(tmp_path_factory.mktemp("replicas"))
    suite = start_suite(
        tmp, TOLLGATE_REDIS_URL=f"redis://127.0.0.1:{port}/0", TOLLGATE_GATEWAY_METRICS_PORT=str(free_port())
    )
    env = suite.environment_for("gateway")
    second_port = free_port()
    env["TOLLGATE_GATEWAY_PORT"] = str(second_port)
    env["TOLLGATE_GATEWAY_METRICS_PORT"] = str(free_port())
    with open(tmp / "logs" / "gateway-2.log", "ab") as log:
        second = subprocess.Popen([sys.executable, "-m", "services.gateway"], env=env, stdout=log, stderr=log)
    try:
        _wait_http(f"http://127.0.0.1:{second_port}/health")
        yield suite, [f"http://127.0.0.1:{suite.ports.gateway}", f"http://127.0.0.1:{second_port}"]
    finally:
        second.terminate()
        second.wait(20)
        suite.stop()


def test_limit_is_exact_across_two_gateways(replicas: tuple[Suite, list[str]]) -> None:
    suite, gateways = replicas
    key = create_key(suite, f"shared-{uuid.uuid4().hex[:8]}", rpm=10)
    statuses = [
        httpx.post(f"{gateways[i % 2]}/v1/chat/completions", json=BODY, headers=bearer(key), timeout=30).status_code
        for i in range(20)
    ]
    assert statuses.count(200) == 10
    assert statuses.count(429) == 10


def test_parallel_cap_is_exact_across_two_gateways(replicas: tuple[Suite, list[str]]) -> None:
    """A key capped at 2 in flight, 6 slow requests at once spread over both replicas: exactly 2 run."""
    import concurrent.futures

    suite, gateways = replicas
    user = f"par-{uuid.uuid4().hex[:8]}"
    admin = bearer(suite.bootstrap_keys()["admin_key"])
    made = httpx.post(
        f"{gateways[0]}/v1/admin/keys", json={"user_id": user, "max_parallel": 2}, headers=admin, timeout=30
    )
    assert made.status_code == 201, made.text
    granted = httpx.post(f"{gateways[0]}/v1/admin/credits", json={"user": user, "amount": 5}, headers=admin)
    assert granted.status_code in (200, 201), granted.text
    slow = {"model": "slow-paid", "messages": [{"role": "user", "content": "hi"}]}

    def send(i: int) -> int:
        url = f"{gateways[i % 2]}/v1/chat/completions"
        return httpx.post(url, json=slow, headers=bearer(made.json()["key"]), timeout=30).status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(send, range(6)))
    assert sorted(statuses) == [200, 200, 429, 429, 429, 429], statuses
    assert send(0) == 200 and send(1) == 200  # every slot came back


def test_requests_keep_flowing_when_redis_dies(
    replicas: tuple[Suite, list[str]], private_redis: tuple[subprocess.Popen[bytes], int]
) -> None:
    suite, gateways = replicas
    key = create_key(suite, f"noredis-{uuid.uuid4().hex[:8]}", rpm=1000)
    proc, _ = private_redis
    proc.kill()
    proc.wait()
    statuses = [
        httpx.post(f"{gateways[i % 2]}/v1/chat/completions", json=BODY, headers=bearer(key), timeout=30).status_code
        for i in range(6)
    ]
    assert statuses == [200] * 6
    metrics_port = suite.environment()["TOLLGATE_GATEWAY_METRICS_PORT"]
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    fallback = [line for line in metrics.splitlines() if line.startswith("tollgate_store_fallback_total{")]
    assert fallback and sum(float(line.rsplit(" ", 1)[1]) for line in fallback) > 0
