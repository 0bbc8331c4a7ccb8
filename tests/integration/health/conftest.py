"""Health integration fixtures: the demo upstream, a fake clock, monitors sharing one PostgreSQL database,
and `python -m services.health` as a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2 as grpc_health_pb2
from grpc_health.v1 import health_pb2_grpc as grpc_health_pb2_grpc

from services.demo_upstream.server import Upstream, start_upstream
from services.health.__main__ import MIGRATIONS, VERSION_TABLE
from services.health.monitor import HealthMonitor
from services.health.probes import Prober
from services.health.settings import HealthSettings
from services.health.store import HealthStore
from services.health.targets import Target
from services.runtime.db import create_engine, migrate
from tests import identities

ROOT = Path(__file__).resolve().parents[3]


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


MakeMonitor = Callable[..., Awaitable[HealthMonitor]]


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = await start_upstream()
    yield server
    await server.close()


@pytest.fixture
async def make_monitor(tmp_path: Path) -> AsyncIterator[MakeMonitor]:
    """Build started monitors on `url` (each its own engine, as separate replicas would have)."""
    monitors: list[HealthMonitor] = []

    async def make(targets: Sequence[Target], url: str, clock: Callable[[], float], **overrides: Any) -> HealthMonitor:
        options: dict[str, Any] = {"data_dir": tmp_path, "health_interval": 10.0, "health_jitter": 0.0}
        settings = HealthSettings(**(options | overrides), health_database_url=url)
        engine = create_engine(settings.database_url())
        await migrate(engine, MIGRATIONS, VERSION_TABLE)
        monitor = HealthMonitor(settings, HealthStore(engine), targets, Prober(2.0, clock), clock)
        await monitor.start()
        monitors.append(monitor)
        return monitor

    yield make
    for monitor in monitors:
        await monitor.aclose()
        await monitor.store.engine.dispose()


class HealthProcess:
    def __init__(self, process: asyncio.subprocess.Process, address: str, log: Path) -> None:
        self.process = process
        self.address = address
        self.log = log
        self.channel = identities.aio_channel(address, "router")  # follows and feeds provider state
        self.operator = identities.aio_channel(address, "operator")  # reads it and probes on demand

    async def serving(self, timeout: float = 30.0) -> None:
        stub = grpc_health_pb2_grpc.HealthStub(self.channel)
        serving = grpc_health_pb2.HealthCheckResponse.SERVING
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.process.returncode is not None:
                raise AssertionError(f"health exited:\n{self.log.read_text()}")
            try:
                reply = await stub.Check(grpc_health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == serving:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"health did not become SERVING:\n{self.log.read_text()}")


StartHealth = Callable[..., Awaitable[HealthProcess]]


@pytest.fixture
async def start_health(tmp_path: Path) -> AsyncIterator[StartHealth]:
    """Start `python -m services.health` on a free port with a catalog of one provider at `base_url`."""
    from tests.conftest import free_port

    started: list[HealthProcess] = []

    async def start(database_url: str, base_url: str, interval: float) -> HealthProcess:
        catalog = tmp_path / "catalog.yaml"
        catalog.write_text(
            "version: 1\n"
            "providers:\n"
            "  demo: {api_base: '${HEALTH_TEST_UPSTREAM:-http://127.0.0.1:9/v1}', adapter: openai, free: true}\n"
            "models:\n"
            "  - {id: demo-echo, provider: demo, upstream: demo-echo, tier: FREE, price: {input: 0, output: 0},\n"
            "     context_window: 1000, capabilities: [chat], quality: 1}\n"
        )
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
        env.pop("LLM_HEALTH_CHECK_INTERVAL", None)
        env |= {
            "HEALTH_TEST_UPSTREAM": base_url,
            "TOLLGATE_CATALOG": str(catalog),
            "TOLLGATE_DATA_DIR": str(tmp_path / "data"),
            "TOLLGATE_HEALTH_PORT": str(port),
            "TOLLGATE_HEALTH_DATABASE_URL": database_url,
            "TOLLGATE_HEALTH_INTERVAL": str(interval),
            "TOLLGATE_HEALTH_JITTER": "0",
            "TOLLGATE_GRACE_SECONDS": "1",
            "TOLLGATE_LOG_FORMAT": "text",
            **identities.env(),
        }
        log = tmp_path / f"health-{port}.log"
        with log.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.health", cwd=ROOT, env=env, stdout=sink, stderr=sink
            )
        health = HealthProcess(process, f"127.0.0.1:{port}", log)
        started.append(health)
        await health.serving()
        return health

    yield start
    for health in started:
        await health.channel.close()
        await health.operator.close()
        if health.process.returncode is None:
            health.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(health.process.wait(), 15)
            except TimeoutError:
                health.process.kill()
                await health.process.wait()
