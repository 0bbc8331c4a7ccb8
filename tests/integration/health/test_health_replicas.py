"""Two health replicas on one PostgreSQL database: one probe per target per interval, shared ejection."""

from __future__ import annotations

import asyncio

import pytest

from services.demo_upstream.server import Upstream
from services.health.state import HealthState, Outcome
from services.health.targets import Target

from .conftest import FakeClock, MakeMonitor

pytestmark = pytest.mark.postgres


def probes_made(upstream: Upstream) -> int:
    return int(upstream.stats["requests"].get("/v1/models -", 0))


async def test_two_replicas_make_one_probe_per_target_per_interval(
    postgres_url: str, upstream: Upstream, make_monitor: MakeMonitor
) -> None:
    clock = FakeClock()
    targets = [Target("a", upstream.base_url), Target("b", upstream.base_url)]
    first = await make_monitor(targets, postgres_url, clock)
    second = await make_monitor(targets, postgres_url, clock)
    for interval in range(1, 6):
        made = await asyncio.gather(first.probe_round(), second.probe_round())
        assert sum(made) == 2  # one probe of each of the two targets, by whichever replica won
        assert probes_made(upstream) == 2 * interval
        clock.advance(4)  # still inside the interval: nobody probes
        await second.sync()
        await first.sync()
        assert sum(await asyncio.gather(first.probe_round(), second.probe_round())) == 0
        clock.advance(6)
    await first.sync()
    await second.sync()
    assert first.snapshot() == second.snapshot()
    assert {s.state for s in first.snapshot()} == {HealthState.HEALTHY}


async def test_running_replicas_do_not_multiply_probes(
    postgres_url: str, upstream: Upstream, make_monitor: MakeMonitor
) -> None:
    import time

    interval = 0.3
    targets = [Target("demo", upstream.base_url)]
    replicas = [await make_monitor(targets, postgres_url, time.time, health_interval=interval) for _ in range(2)]
    started = time.monotonic()
    loops = [asyncio.create_task(r.run()) for r in replicas]
    await asyncio.sleep(1.5)
    for loop in loops:
        loop.cancel()
    await asyncio.gather(*loops, return_exceptions=True)
    elapsed = time.monotonic() - started
    # Without the lease each replica would probe once per interval on its own (about twice this).
    assert 1 <= probes_made(upstream) <= int(elapsed / interval) + 1


async def test_replicas_count_failures_together(
    postgres_url: str, upstream: Upstream, make_monitor: MakeMonitor
) -> None:
    clock = FakeClock()
    targets = [Target("demo", upstream.base_url)]
    first = await make_monitor(targets, postgres_url, clock)
    second = await make_monitor(targets, postgres_url, clock)
    boom = Outcome(False, 5.0, 502, "bad gateway")
    for i in range(5):  # the router's calls spread over both replicas
        await (first if i % 2 else second).report("demo", upstream.base_url, boom)
    await first.sync()
    for replica in (first, second):
        status = replica.snapshot()[0]
        assert status.ejected and status.state is HealthState.DOWN and status.consecutive_failures == 5
