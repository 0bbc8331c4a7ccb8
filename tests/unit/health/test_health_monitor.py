"""The monitor over SQLite and the demo upstream, with an injected clock: probes, outcomes, checks."""

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


def probes_made(upstream: Upstream) -> int:
    return int(upstream.stats["requests"].get("/v1/models -", 0))


async def test_a_failing_provider_goes_down_in_one_interval_and_recovers_through_half_open(
    make_monitor: MakeMonitor, upstream: Upstream, clock: FakeClock
) -> None:
    monitor = await make_monitor([Target("demo", upstream.base_url)])
    events = monitor.broadcaster.watch()
    assert (await anext(events)).providers[0].state is HealthState.UNKNOWN

    assert await monitor.probe_round() == 1
    assert only(monitor).state is HealthState.HEALTHY
    assert await monitor.probe_round() == 0  # not due again before the interval ends

    upstream.control(status=500, times=-1)
    clock.advance(10)
    assert await monitor.probe_round() == 1
    down = only(monitor)
    assert down.state is HealthState.DOWN and down.ejected
    assert down.last_error == "GET /v1/models answered HTTP 500"

    upstream.control(reset=True)
    clock.advance(10)
    await monitor.probe_round()
    half_open = only(monitor)
    assert half_open.state is HealthState.DEGRADED and not half_open.ejected
    clock.advance(10)
    await monitor.probe_round()
    assert only(monitor).state is HealthState.HEALTHY

    seen: list[HealthState] = []
    while len(seen) < 4:
        event = await anext(events)
        assert not event.snapshot
        seen.extend(s.state for s in event.providers)
    assert seen == [HealthState.HEALTHY, HealthState.DOWN, HealthState.DEGRADED, HealthState.HEALTHY]
    assert probes_made(upstream) == 4
    await events.aclose()


async def test_passive_ejection_after_five_failures_and_growing_back_off(
    make_monitor: MakeMonitor, upstream: Upstream, clock: FakeClock
) -> None:
    monitor = await make_monitor([Target("demo", upstream.base_url)])
    boom = Outcome(False, 12.0, 503, "upstream said no")
    for _ in range(4):
        await monitor.report("demo", upstream.base_url, boom)
    assert only(monitor).state is HealthState.DEGRADED
    assert not only(monitor).ejected
    await monitor.report("demo", "", boom)  # an empty base URL means the provider's own
    first = only(monitor)
    assert first.ejected and first.state is HealthState.DOWN
    assert first.ejected_until == pytest.approx(clock.now + 30)
    assert first.last_error == "HTTP 503: upstream said no"

    clock.advance(30)
    await monitor.sync()
    assert only(monitor).state is HealthState.DEGRADED  # half-open
    await monitor.report("demo", upstream.base_url, boom)
    second = only(monitor)
    assert second.ejected and second.ejections == 2
    assert second.ejected_until == pytest.approx(clock.now + 60)

    clock.advance(60)
    await monitor.report("demo", upstream.base_url, Outcome(True, 40.0))
    healed = only(monitor)
    assert not healed.ejected and healed.consecutive_failures == 0
    assert healed.state is HealthState.HEALTHY
    assert healed.last_failure > 0


async def test_the_maximum_ejection_percentage_keeps_the_last_provider_in(
    make_monitor: MakeMonitor, upstream: Upstream
) -> None:
    monitor = await make_monitor(
        [Target("a", upstream.base_url), Target("b", upstream.base_url)], health_eject_max_percent=50
    )
    boom = Outcome(False, 1.0, 500, "x")
    for provider in ("a", "b"):
        for _ in range(6):
            await monitor.report(provider, upstream.base_url, boom)
    assert only(monitor, "a").ejected
    b = only(monitor, "b")
    assert not b.ejected and b.consecutive_failures == 6 and b.state is HealthState.DEGRADED


async def test_check_now_probes_at_once_and_names_unknown_providers(
    make_monitor: MakeMonitor, upstream: Upstream
) -> None:
    monitor = await make_monitor([Target("demo", upstream.base_url), Target("other", "http://127.0.0.1:9/v1")])
    checked = await monitor.check_now(["demo"])
    assert [(s.provider, s.state) for s in checked] == [("demo", HealthState.HEALTHY)]
    assert checked[0].p50_ms > 0
    assert await monitor.probe_round() == 1  # only `other` was still due
    assert only(monitor, "other").state is HealthState.DOWN
    assert only(monitor, "other").last_error.startswith("cannot connect")
    with pytest.raises(DomainError) as err:
        await monitor.check_now(["nope"])
    assert err.value.code == "not_found"
    with pytest.raises(DomainError):
        await monitor.report("nope", "", Outcome(False))


async def test_history_is_kept_within_its_retention(
    make_monitor: MakeMonitor, upstream: Upstream, clock: FakeClock
) -> None:
    monitor = await make_monitor([Target("demo", upstream.base_url)], health_history_retention_hours=1.0)
    for _ in range(3):
        await monitor.probe_round()
        clock.advance(1800)
    key = ("demo", upstream.base_url)
    assert len(await monitor.store.history(key, 10)) == 3
    assert await monitor.store.prune(clock.now - 3600) == 1
    assert len(await monitor.store.history(key, 10)) == 2


async def test_the_platform_key_is_sent_and_never_reported(
    make_monitor: MakeMonitor, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-test-" + "k" * 32
    monkeypatch.setenv("DEMO_KEY", key)
    upstream.control(require_key="sk-other-" + "o" * 32)
    monitor = await make_monitor([Target("demo", upstream.base_url, "DEMO_KEY")])
    await monitor.probe_round()
    status = only(monitor)
    assert upstream.stats["last_authorization"]["-"] == f"Bearer {key}"
    assert status.state is HealthState.DOWN
    assert "rejected" in status.last_error and key not in status.last_error


async def test_a_down_provider_is_probed_again_when_its_ejection_ends(
    make_monitor: MakeMonitor, upstream: Upstream, clock: FakeClock
) -> None:
    monitor = await make_monitor([Target("demo", upstream.base_url)], health_interval=300.0)
    upstream.control(status=502, times=1)
    assert await monitor.probe_round() == 1
    assert only(monitor).state is HealthState.DOWN
    clock.advance(29)
    await monitor.sync()
    assert await monitor.probe_round() == 0
    clock.advance(1)  # the 30 s ejection ends: probe now, not after 300 s
    await monitor.sync()
    assert await monitor.probe_round() == 1
    assert only(monitor).state is HealthState.HEALTHY
    clock.advance(30)
    await monitor.sync()
    assert await monitor.probe_round() == 0  # healthy again: back to the full interval
