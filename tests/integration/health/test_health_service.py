"""`python -m services.health` as a real process on PostgreSQL, spoken to over real gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2 as grpc_health_pb2
from grpc_health.v1 import health_pb2_grpc as grpc_health_pb2_grpc

from services.demo_upstream.server import Upstream
from tollgate.health.v1 import health_pb2, health_pb2_grpc

from .conftest import StartHealth

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

State = health_pb2.State


async def next_state(
    events: AsyncIterator[health_pb2.ProviderEvent], timeout: float = 10.0
) -> health_pb2.ProviderState:
    event = await asyncio.wait_for(anext(events), timeout)
    assert not event.snapshot
    (state,) = event.providers
    return state


async def test_watch_sends_a_snapshot_then_down_within_an_interval_then_recovery(
    postgres_url: str, upstream: Upstream, start_health: StartHealth
) -> None:
    health = await start_health(postgres_url, upstream.base_url, interval=0.2)
    stub = health_pb2_grpc.ProviderHealthStub(health.channel)
    call = stub.WatchProviders(health_pb2.WatchProvidersRequest())
    events = aiter(call)
    first = await asyncio.wait_for(anext(events), 10)
    assert first.snapshot
    assert [(p.provider, p.base_url) for p in first.providers] == [("demo", upstream.base_url)]

    state = first.providers[0]
    while state.state != State.STATE_HEALTHY:
        state = await next_state(events)
    assert state.p50_ms > 0 and state.last_checked_unix_ms > 0

    upstream.control(status=503, times=-1)
    while state.state == State.STATE_HEALTHY:
        state = await next_state(events)
    assert state.state == State.STATE_DOWN and state.ejected
    assert state.last_error == "GET /v1/models answered HTTP 503"

    upstream.control(reset=True)
    while state.state == State.STATE_DOWN:
        state = await next_state(events)
    assert state.state == State.STATE_DEGRADED and not state.ejected  # half-open
    while state.state == State.STATE_DEGRADED:
        state = await next_state(events)
    assert state.state == State.STATE_HEALTHY
    call.cancel()


async def test_outcomes_eject_and_check_now_probes(
    postgres_url: str, upstream: Upstream, start_health: StartHealth
) -> None:
    health = await start_health(postgres_url, upstream.base_url, interval=300)
    router = health_pb2_grpc.ProviderHealthStub(health.channel)
    for _ in range(5):
        report = health_pb2.OutcomeReport(provider="demo", success=False, http_status=500, error="boom")
        await router.ReportOutcome(report, timeout=5)
    stub = health_pb2_grpc.ProviderHealthStub(health.operator)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ReportOutcome(report, timeout=5)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    (state,) = (await stub.ListProviders(health_pb2.ListProvidersRequest(), timeout=5)).providers
    assert state.ejected and state.state == State.STATE_DOWN and state.ejections == 1
    assert state.consecutive_failures == 5 and state.last_error == "HTTP 500: boom"

    (checked,) = (await stub.CheckNow(health_pb2.CheckNowRequest(providers=["demo"]), timeout=10)).providers
    assert not checked.ejected and checked.state == State.STATE_DEGRADED  # half-open after a good probe

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CheckNow(health_pb2.CheckNowRequest(providers=["nope"]), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def _admin(url: str, statement: str, *args: str) -> None:
    admin = url.rsplit("/", 1)[0] + "/postgres"
    conn = await asyncpg.connect(admin, timeout=5)
    try:
        await conn.execute(statement, *args)
    finally:
        await conn.close()


async def test_readiness_follows_the_database(postgres_url: str, upstream: Upstream, start_health: StartHealth) -> None:
    health = await start_health(postgres_url, upstream.base_url, interval=300)
    name = urlsplit(postgres_url).path.lstrip("/")
    watch = grpc_health_pb2_grpc.HealthStub(health.channel).Watch(grpc_health_pb2.HealthCheckRequest(service=""))
    statuses = aiter(watch)
    serving = grpc_health_pb2.HealthCheckResponse.SERVING
    not_serving = grpc_health_pb2.HealthCheckResponse.NOT_SERVING
    assert (await asyncio.wait_for(anext(statuses), 10)).status == serving

    # The database stops answering: no new connections, and the open ones are cut.
    await _admin(postgres_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    await _admin(postgres_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
    try:
        assert (await asyncio.wait_for(anext(statuses), 20)).status == not_serving
    finally:
        await _admin(postgres_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert (await asyncio.wait_for(anext(statuses), 20)).status == serving
    watch.cancel()
