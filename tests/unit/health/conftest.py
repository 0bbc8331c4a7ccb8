"""Health test fixtures: an injectable clock, the demo upstream, monitors on a throwaway database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from services.demo_upstream.server import Upstream, start_upstream
from services.health.__main__ import MIGRATIONS, VERSION_TABLE
from services.health.monitor import HealthMonitor
from services.health.probes import Prober
from services.health.settings import HealthSettings
from services.health.store import HealthStore
from services.health.targets import Target
from services.runtime.db import create_engine, migrate


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


MakeMonitor = Callable[..., Awaitable[HealthMonitor]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = await start_upstream()
    yield server
    await server.close()


@pytest.fixture
async def make_monitor(tmp_path: Path, clock: FakeClock) -> AsyncIterator[MakeMonitor]:
    """Build started monitors over one SQLite file (or `url`), with a fake clock and no jitter."""
    monitors: list[HealthMonitor] = []

    async def make(targets: Sequence[Target], url: str = "", **overrides: Any) -> HealthMonitor:
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
