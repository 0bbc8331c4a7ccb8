"""Maintenance holds over the monitor: forced down and up override probes, survive a restart, are audited."""

from __future__ import annotations

import pytest

from services.demo_upstream.server import Upstream
from services.health.monitor import HealthMonitor
from services.health.state import HealthState, Outcome, ProviderStatus
from services.health.targets import Target
from services.runtime.errors import DomainError

from .conftest import FakeClock, MakeMonitor


def only(monitor: HealthMonitor, provider: str = "demo") -> ProviderStatus:
    return next(s for s in monitor.snapshot() if s.provider == provider)


async def test_forced_down_and_up_override_probes_and_are_audited(
    make_monitor: MakeMonitor, upstream: Upstream, clock: FakeClock
) -> None:
    targets = [Target("demo", upstream.base_url), Target("other", upstream.base_url + "/x")]
    monitor = await make_monitor(targets)
    await monitor.probe_round()
    assert only(monitor).state is HealthState.HEALTHY

    events = monitor.broadcaster.watch()
    await anext(events)  # the snapshot
    [status] = await monitor.set_maintenance("demo", "down", "vendor incident 42", "user admin-1")
    assert (status.state, status.forced, status.forced_reason) == (HealthState.DOWN, "down", "vendor incident 42")
    assert status.forced_by == "user admin-1" and status.forced_at == clock.now
    assert [s.forced for s in (await anext(events)).providers] == ["down"]  # routers hear of it at once
    clock.advance(10)
    await monitor.probe_round()  # a good probe does not lift it
    assert only(monitor).state is HealthState.DOWN

    upstream.control(status=500, times=-1)
    await monitor.set_maintenance("demo", "up", "known false alarm", "operator")
    clock.advance(10)
    await monitor.probe_round()
    for _ in range(6):
        await monitor.report("demo", upstream.base_url, Outcome(False, 1.0, 500, "boom"))
    assert only(monitor).state is HealthState.HEALTHY and only(monitor).forced == "up"

    await monitor.set_maintenance("demo", "auto", "", "operator")
    assert only(monitor).state is HealthState.DOWN and only(monitor).forced == ""
    log = await monitor.maintenance_log()
    assert [(c.state, c.actor) for c in log] == [("auto", "operator"), ("up", "operator"), ("down", "user admin-1")]
    assert [c.reason for c in await monitor.maintenance_log("demo", 1)] == [""]
    assert await monitor.maintenance_log("other") == []


async def test_a_hold_is_durable_and_followed_by_other_replicas(make_monitor: MakeMonitor, upstream: Upstream) -> None:
    first = await make_monitor([Target("demo", upstream.base_url)])
    await first.set_maintenance("demo", "down", "migrating", "operator")
    second = await make_monitor([Target("demo", upstream.base_url)])  # same database, like a restart
    assert only(second).forced == "down" and only(second).state is HealthState.DOWN


@pytest.mark.parametrize(
    ("provider", "state", "reason", "param"),
    [
        ("nope", "down", "x", "provider"),
        ("demo", "sideways", "x", "state"),
        ("demo", "down", "", "reason"),
        ("demo", "up", "   ", "reason"),
        ("demo", "down", "line\nbreak", "reason"),
        ("demo", "down", "x" * 501, "reason"),
    ],
)
async def test_bad_maintenance_requests_are_refused_naming_the_field(
    make_monitor: MakeMonitor, upstream: Upstream, provider: str, state: str, reason: str, param: str
) -> None:
    monitor = await make_monitor([Target("demo", upstream.base_url)])
    with pytest.raises(DomainError) as err:
        await monitor.set_maintenance(provider, state, reason, "operator")
    assert err.value.param == param
    assert await monitor.maintenance_log() == []


async def test_answered_calls_feed_a_moving_latency_average(make_monitor: MakeMonitor, upstream: Upstream) -> None:
    monitor = await make_monitor([Target("demo", upstream.base_url)], health_latency_ewma_weight=0.5)
    assert only(monitor).latency_ewma_ms == 0
    await monitor.report("demo", upstream.base_url, Outcome(True, 100.0, 200))
    assert only(monitor).latency_ewma_ms == 100.0
    await monitor.report("demo", upstream.base_url, Outcome(True, 300.0, 200))
    assert only(monitor).latency_ewma_ms == 200.0
    await monitor.report("demo", upstream.base_url, Outcome(False, 5000.0, 500, "x"))  # failures measure nothing
    assert only(monitor).latency_ewma_ms == 200.0
