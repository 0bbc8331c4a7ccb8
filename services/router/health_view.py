"""The router's local view of provider health, fed by health's `WatchProviders` stream.

No request ever waits on the health service: selection reads the last snapshot kept here, and outcomes
are queued and reported by a background task. When the stream breaks, the view keeps its last state and
reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

import grpc

from tollgate.health.v1 import health_pb2, health_pb2_grpc

log = logging.getLogger("tollgate.router.health")

STATE_NAMES = {
    health_pb2.STATE_UNKNOWN: "unknown",
    health_pb2.STATE_HEALTHY: "healthy",
    health_pb2.STATE_DEGRADED: "degraded",
    health_pb2.STATE_DOWN: "down",
}
# Selection order: healthy and unknown alike, then degraded, then down.
RANK = {"healthy": 0, "unknown": 0, "degraded": 1, "down": 2}


class HealthView:
    def __init__(
        self,
        channel: Callable[[], grpc.aio.Channel] | None = None,
        rpc_timeout: float = 5.0,
        queue_size: int = 10_000,
        latency_report_seconds: float = 5.0,
    ) -> None:
        self._channel = channel
        self._rpc_timeout = rpc_timeout
        self._latency_every = latency_report_seconds
        self.states: dict[str, health_pb2.ProviderState] = {}
        self._last_ok: dict[tuple[str, str], bool] = {}
        self._latency_due: dict[tuple[str, str], float] = {}
        self._reports: asyncio.Queue[health_pb2.OutcomeReport] = asyncio.Queue(queue_size)

    # reading (the hot path)

    def state(self, provider: str) -> str:
        found = self.states.get(provider)
        if found is None:
            return "unknown"
        return "down" if found.ejected else STATE_NAMES.get(found.state, "unknown")

    def latency(self, provider: str) -> float:
        """Health's moving average of the provider's answered calls, in ms; 0 until measured."""
        found = self.states.get(provider)
        return found.latency_ewma_ms if found is not None else 0.0

    def forced(self, provider: str) -> str:
        found = self.states.get(provider)
        return found.forced if found is not None else ""

    def badness(self, provider: str) -> tuple[int, int]:
        """Sort key among unhealthy providers: state first, then consecutive failures."""
        found = self.states.get(provider)
        return RANK[self.state(provider)], found.consecutive_failures if found is not None else 0

    def apply(self, event: health_pb2.ProviderEvent) -> None:
        if event.snapshot:
            self.states = {p.provider: p for p in event.providers}
        else:
            for p in event.providers:
                self.states[p.provider] = p

    def report(self, provider: str, base_url: str, success: bool, latency_ms: float, status: int, error: str) -> None:
        """Queue one outcome for health; dropped (never blocking) when the queue is full.

        A success is news after a failure or while health does not call the provider healthy; otherwise one
        success per `latency_report_seconds` carries its latency for health's moving average, so steady
        success costs at most one call per interval; every failure, and the first success after it, is sent.
        """
        endpoint = (provider, base_url)
        now = time.monotonic()
        latency_due = now >= self._latency_due.get(endpoint, 0.0)
        if success and self._last_ok.get(endpoint) and self.state(provider) == "healthy" and not latency_due:
            return
        self._last_ok[endpoint] = success
        if success:
            self._latency_due[endpoint] = now + self._latency_every
        report = health_pb2.OutcomeReport(
            provider=provider,
            base_url=base_url,
            success=success,
            latency_ms=latency_ms,
            http_status=status,
            error=error,
        )
        with contextlib.suppress(asyncio.QueueFull):
            self._reports.put_nowait(report)

    # background work

    async def watch(self) -> None:
        """Follow `WatchProviders` forever, reconnecting with capped, jittered backoff.

        The cap is short: until the stream is back, the router routes on a stale view.
        """
        if self._channel is None:
            return
        delay = 0.2
        while True:
            try:
                stub = health_pb2_grpc.ProviderHealthStub(self._channel())
                async for event in stub.WatchProviders(health_pb2.WatchProvidersRequest()):
                    self.apply(event)
                    delay = 0.2
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                log.debug("health stream ended: %s", exc.code().name)
            except Exception as exc:
                log.warning("health stream failed: %s", type(exc).__name__)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)

    async def send_reports(self) -> None:
        """Deliver queued outcomes to health, several at a time, off the request path."""
        if self._channel is None:
            return
        while True:
            batch = [await self._reports.get()]
            while not self._reports.empty() and len(batch) < 64:
                batch.append(self._reports.get_nowait())
            stub = health_pb2_grpc.ProviderHealthStub(self._channel())
            results = await asyncio.gather(
                *(stub.ReportOutcome(r, timeout=self._rpc_timeout) for r in batch), return_exceptions=True
            )
            failed = sum(isinstance(r, BaseException) for r in results)
            if failed:
                log.debug("%d of %d outcome reports not delivered", failed, len(batch))
