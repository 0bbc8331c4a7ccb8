"""The `ProviderHealth` gRPC servicer: unpack, call the monitor, pack."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any, TypeAlias

import grpc

from services.health.maintenance import Change
from services.health.monitor import HealthMonitor
from services.health.state import Outcome, ProviderStatus
from services.runtime import identity
from services.runtime.errors import rpc
from tollgate.health.v1 import health_pb2, health_pb2_grpc

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def to_proto(status: ProviderStatus) -> health_pb2.ProviderState:
    return health_pb2.ProviderState(
        provider=status.provider,
        base_url=status.base_url,
        state=f"STATE_{status.state.name}",
        latency_ms=status.latency_ms,
        last_checked_unix_ms=_ms(status.last_checked),
        consecutive_failures=status.consecutive_failures,
        last_error=status.last_error,
        ejected=status.ejected,
        ejected_until_unix_ms=_ms(status.ejected_until),
        ejections=status.ejections,
        p50_ms=status.p50_ms,
        p90_ms=status.p90_ms,
        p99_ms=status.p99_ms,
        last_failure_unix_ms=_ms(status.last_failure),
        latency_ewma_ms=status.latency_ewma_ms,
        forced=status.forced,
        forced_reason=status.forced_reason,
        forced_by=status.forced_by,
        forced_unix_ms=_ms(status.forced_at),
    )


def _change(change: Change) -> health_pb2.MaintenanceRecord:
    return health_pb2.MaintenanceRecord(
        id=change.id,
        provider=change.provider,
        state=change.state,
        reason=change.reason,
        actor=change.actor,
        at_unix_ms=_ms(change.at),
    )


def _actor(named: str) -> str:
    """Who is changing maintenance: the admin the gateway acts for, or the operator (as its CLI names itself)."""
    peer = identity.current()
    if peer is None:
        return "unknown"
    if peer.service == identity.GATEWAY:
        return f"user {peer.acting_user}" if peer.acting_user else "gateway"
    if peer.service == identity.OPERATOR and named:
        return "operator " + "".join(c for c in named if c.isprintable())[:100]
    return peer.service


def _reply(statuses: Iterable[ProviderStatus]) -> health_pb2.ListProvidersReply:
    return health_pb2.ListProvidersReply(providers=[to_proto(s) for s in statuses])


class ProviderHealthServicer(health_pb2_grpc.ProviderHealthServicer):
    def __init__(self, monitor: HealthMonitor) -> None:
        self.monitor = monitor

    @rpc
    async def ListProviders(
        self, request: health_pb2.ListProvidersRequest, context: Context
    ) -> health_pb2.ListProvidersReply:
        return _reply(self.monitor.snapshot())

    @rpc
    async def WatchProviders(
        self, request: health_pb2.WatchProvidersRequest, context: Context
    ) -> AsyncIterator[health_pb2.ProviderEvent]:
        async for event in self.monitor.broadcaster.watch():
            yield health_pb2.ProviderEvent(snapshot=event.snapshot, providers=[to_proto(s) for s in event.providers])

    @rpc
    async def ReportOutcome(self, request: health_pb2.OutcomeReport, context: Context) -> health_pb2.ReportAck:
        outcome = Outcome(request.success, request.latency_ms, request.http_status, request.error)
        await self.monitor.report(request.provider, request.base_url, outcome)
        return health_pb2.ReportAck()

    @rpc
    async def CheckNow(self, request: health_pb2.CheckNowRequest, context: Context) -> health_pb2.ListProvidersReply:
        return _reply(await self.monitor.check_now(list(request.providers)))

    @rpc
    async def SetMaintenance(
        self, request: health_pb2.SetMaintenanceRequest, context: Context
    ) -> health_pb2.ListProvidersReply:
        actor = _actor(request.actor)
        return _reply(await self.monitor.set_maintenance(request.provider, request.state, request.reason, actor))

    @rpc
    async def ListMaintenance(
        self, request: health_pb2.ListMaintenanceRequest, context: Context
    ) -> health_pb2.ListMaintenanceReply:
        changes = await self.monitor.maintenance_log(request.provider, request.limit or 100)
        return health_pb2.ListMaintenanceReply(records=[_change(c) for c in changes])
