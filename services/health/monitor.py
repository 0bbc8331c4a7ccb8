"""The provider health monitor of one replica: probes what is due, records outcomes, follows the others.

Every replica keeps the records of all targets in memory (read from the shared database each sync tick)
and publishes the statuses that changed to its `WatchProviders` subscribers; the database row of a target
is the truth, and a replica probes a target only after taking that interval's lease on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable, Sequence

from services.health import metrics
from services.health.ejection import EjectionPolicy, ejection_allowed
from services.health.lock import claim_probe, reschedule
from services.health.probes import Clock, Prober, ProbeResult
from services.health.settings import HealthSettings
from services.health.state import (
    Outcome,
    ProviderStatus,
    TargetRecord,
    after_outcome,
    after_probe,
    assess,
    needs_recording,
)
from services.health.store import HealthStore
from services.health.stream import Broadcaster
from services.health.targets import Target
from services.runtime.errors import DomainError

log = logging.getLogger("tollgate.health")

_PRUNE_EVERY = 600.0


class HealthMonitor:
    def __init__(
        self,
        settings: HealthSettings,
        store: HealthStore,
        targets: Sequence[Target],
        prober: Prober,
        clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.targets = {t.key: t for t in targets}
        self.prober = prober
        self.clock = clock
        self.policy = EjectionPolicy(
            consecutive_failures=settings.health_eject_consecutive_failures,
            base_seconds=settings.health_eject_base_seconds,
            max_seconds=settings.health_eject_max_seconds,
            max_percent=settings.health_eject_max_percent,
        )
        self.tick = min(settings.health_sync_seconds, settings.health_interval / 4)
        self.broadcaster = Broadcaster(self.snapshot)
        self._records: dict[tuple[str, str], TargetRecord] = {k: TargetRecord(*k) for k in self.targets}
        self._published: dict[tuple[str, str], ProviderStatus] = {}
        self._inflight: dict[tuple[str, str], asyncio.Task[bool]] = {}
        self._next_prune = 0.0
        self._failing = False

    # what routers and operators read

    def snapshot(self) -> list[ProviderStatus]:
        now = self.clock()
        return [self._published.get(k) or self._assess(r, now) for k, r in self._records.items()]

    def _assess(self, record: TargetRecord, now: float) -> ProviderStatus:
        return assess(record, now, self.settings.health_degraded_latency_ms)

    def _refresh(self) -> None:
        now = self.clock()
        changed = []
        for key, record in self._records.items():
            status = self._assess(record, now)
            if self._published.get(key) != status:
                self._published[key] = status
                changed.append(status)
        self.broadcaster.publish(changed)
        metrics.published(self._published.values())

    def _adopt(self, records: Iterable[TargetRecord]) -> None:
        for record in records:
            if record.key in self.targets:
                self._records[record.key] = record
        self._refresh()

    # the loop

    async def start(self) -> None:
        await self.store.ensure(self.targets.values())
        await self.sync()

    async def sync(self) -> None:
        """Adopt what the database says (other replicas' probes and outcomes) and publish changes."""
        self._adopt(await self.store.load())

    async def run(self) -> None:
        while True:
            try:
                await self.sync()
                self.launch_due()
                await self._prune()
                if self._failing:
                    log.info("health database reachable again")
                self._failing = False
            except Exception as exc:
                if not self._failing:
                    log.warning("health round failed: %s", exc)
                self._failing = True
            await asyncio.sleep(self.tick)

    def launch_due(self) -> list[asyncio.Task[bool]]:
        """Start a probe of every target that is due and not already being probed here."""
        now = self.clock()
        launched = []
        for key, target in self.targets.items():
            if key in self._inflight or self._records[key].probe_due > now:
                continue
            task = asyncio.create_task(self._probe_if_claimed(target))
            self._inflight[key] = task
            task.add_done_callback(self._finished)
            launched.append(task)
        return launched

    def _finished(self, task: asyncio.Task[bool]) -> None:
        for key, running in list(self._inflight.items()):
            if running is task:
                del self._inflight[key]

    async def probe_round(self) -> int:
        """Probe every due target whose lease this replica wins; returns how many it probed."""
        return sum(await asyncio.gather(*self.launch_due()))

    def _next_due(self, now: float) -> float:
        spread = self.settings.health_jitter
        return now + self.settings.health_interval * (1 + random.uniform(-spread, spread))

    async def _probe_if_claimed(self, target: Target) -> bool:
        now = self.clock()
        due = self._next_due(now)
        try:
            if not await claim_probe(self.store.engine, target.key, now, due):
                return False
            self._records[target.key].probe_due = due
            result = await self._probe(target)
            if not result.ok:
                await self._probe_when_ejection_ends(target, due)
        except Exception as exc:
            log.warning("probe of %s failed to record: %s", target.provider, exc)
            return False
        return True

    async def _probe_when_ejection_ends(self, target: Target, due: float) -> None:
        # Like Envoy's unhealthy_interval: a down target is probed again as soon as its ejection ends,
        # so a short outage does not keep it out for a whole interval.
        ends = self._records[target.key].outlier.ejected_until
        if 0 < ends < due:
            await reschedule(self.store.engine, target.key, ends)
            self._records[target.key].probe_due = ends

    async def _probe(self, target: Target) -> ProbeResult:
        result = await self.prober.probe(target)
        metrics.probed(target.provider, result.ok, result.latency_ms)

        def change(record: TargetRecord, _ejected: int, _total: int) -> TargetRecord:
            return after_probe(record, result, self.policy)

        window = self.settings.health_latency_window
        record = await self.store.record_probe(target.key, result, change, self.targets.keys(), window)
        self._adopt([record])
        if not result.ok:
            log.warning("probe of %s failed: %s", target.provider, result.error)
        return result

    async def _prune(self) -> None:
        now = self.clock()
        if now < self._next_prune:
            return
        self._next_prune = now + _PRUNE_EVERY
        gone = await self.store.prune(now - self.settings.health_history_retention_hours * 3600)
        if gone:
            log.info("pruned %d probes past retention", gone)

    # what callers ask for

    def _resolve(self, provider: str, base_url: str) -> Target:
        target = self.targets.get((provider, base_url.rstrip("/")))
        if target is not None:
            return target
        for candidate in self.targets.values():
            if candidate.provider == provider:
                return candidate
        raise DomainError("not_found", f"unknown provider {provider!r}", "provider")

    async def report(self, provider: str, base_url: str, outcome: Outcome) -> None:
        """Record one attempt's outcome from a router; may eject or restore the target."""
        target = self._resolve(provider, base_url)
        now = self.clock()
        if not needs_recording(self._records[target.key], outcome, now):
            return

        def change(record: TargetRecord, ejected: int, total: int) -> TargetRecord:
            return after_outcome(record, outcome, now, self.policy, ejection_allowed(ejected, total, self.policy))

        record = await self.store.change(target.key, change, self.targets.keys(), now)
        self._adopt([record])

    async def check_now(self, providers: Sequence[str] = ()) -> list[ProviderStatus]:
        """Probe the named providers (all when empty) now, whatever their schedule, and return their state."""
        unknown = sorted(set(providers) - {t.provider for t in self.targets.values()})
        if unknown:
            raise DomainError("not_found", f"unknown provider {unknown[0]!r}", "providers")
        chosen = [t for t in self.targets.values() if not providers or t.provider in providers]

        async def check(target: Target) -> None:
            await self._probe(target)
            due = self._next_due(self.clock())
            await reschedule(self.store.engine, target.key, due)
            self._records[target.key].probe_due = due

        await asyncio.gather(*(check(t) for t in chosen))
        keys = {t.key for t in chosen}
        return [s for s in self.snapshot() if s.key in keys]

    async def aclose(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        for task in list(self._inflight.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.prober.aclose()
