"""WatchProviders fan-out: a snapshot first, then changes; a subscriber that lags gets a new snapshot."""

from __future__ import annotations

import asyncio

from services.health.state import HealthState, ProviderStatus
from services.health.stream import Broadcaster


def status(name: str, state: HealthState = HealthState.HEALTHY) -> ProviderStatus:
    return ProviderStatus(name, f"http://{name}/v1", state, 1.0, 1.0, 0, "", False, 0.0, 0, 1.0, 1.0, 1.0, 0.0)


async def test_snapshot_then_changes() -> None:
    board = [status("a"), status("b")]
    broadcaster = Broadcaster(lambda: list(board))
    events = broadcaster.watch()
    first = await anext(events)
    assert first.snapshot and [s.provider for s in first.providers] == ["a", "b"]
    assert broadcaster.subscribers == 1
    broadcaster.publish([status("a", HealthState.DOWN)])
    second = await anext(events)
    assert not second.snapshot
    assert [(s.provider, s.state) for s in second.providers] == [("a", HealthState.DOWN)]
    await events.aclose()
    assert broadcaster.subscribers == 0


async def test_a_lagging_subscriber_gets_a_fresh_snapshot() -> None:
    board = [status("a")]
    broadcaster = Broadcaster(lambda: list(board), backlog=2)
    events = broadcaster.watch()
    await anext(events)
    for state in (HealthState.DOWN, HealthState.DEGRADED, HealthState.HEALTHY):
        broadcaster.publish([status("a", state)])
    board[0] = status("a", HealthState.HEALTHY)
    resync = await asyncio.wait_for(anext(events), 1)
    assert resync.snapshot
    assert [s.state for s in resync.providers] == [HealthState.HEALTHY]
    await events.aclose()


async def test_close_ends_every_subscription() -> None:
    broadcaster = Broadcaster(lambda: [status("a")])
    events = broadcaster.watch()
    await anext(events)
    broadcaster.publish([status("a", HealthState.DOWN)])
    broadcaster.close()
    assert [e async for e in events] == []
    assert broadcaster.subscribers == 0
