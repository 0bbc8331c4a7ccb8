"""Provider state as routers and operators see it, derived from a target's stored record.

healthy: the last probe answered in time and nothing failed since; degraded: half-open, slow, or failing
below the ejection threshold; down: ejected; unknown: never probed and no outcome reported yet. An admin's
maintenance hold overrides all of it: held down is down, held up is healthy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum

from services.health.ejection import Circuit, EjectionPolicy, Outlier, record_failure, record_success
from services.health.maintenance import Hold
from services.health.probes import ProbeResult
from services.runtime.logging import redact

_MAX_ERROR = 300


class HealthState(IntEnum):
    # The values are those of tollgate.health.v1.State.
    UNKNOWN = 0
    HEALTHY = 1
    DEGRADED = 2
    DOWN = 3


@dataclass(slots=True)
class TargetRecord:
    """Everything stored about one target; times are wall-clock seconds, 0 meaning never."""

    provider: str
    base_url: str
    outlier: Outlier = field(default_factory=Outlier)
    latency_ms: float = 0.0
    last_checked: float = 0.0
    last_success: float = 0.0
    last_error: str = ""
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    probe_due: float = 0.0
    latency_ewma_ms: float = 0.0  # answered calls as routers report them; 0 until one is

    @property
    def key(self) -> tuple[str, str]:
        return (self.provider, self.base_url)


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    provider: str
    base_url: str
    state: HealthState
    latency_ms: float
    last_checked: float
    consecutive_failures: int
    last_error: str
    ejected: bool
    ejected_until: float
    ejections: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    last_failure: float
    latency_ewma_ms: float = 0.0
    forced: str = ""  # down | up while an admin holds the provider there
    forced_reason: str = ""
    forced_by: str = ""
    forced_at: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return (self.provider, self.base_url)


def assess(record: TargetRecord, now: float, degraded_latency_ms: float, hold: Hold | None = None) -> ProviderStatus:
    outlier = record.outlier
    circuit = outlier.circuit(now)
    if hold is not None:
        state = HealthState.DOWN if hold.state == "down" else HealthState.HEALTHY
    elif circuit is Circuit.OPEN:
        state = HealthState.DOWN
    elif circuit is Circuit.HALF_OPEN or outlier.consecutive_failures > 0:
        state = HealthState.DEGRADED
    elif record.last_checked == 0 and record.last_success == 0:
        state = HealthState.UNKNOWN
    elif record.last_checked > 0 and record.latency_ms > degraded_latency_ms:
        state = HealthState.DEGRADED
    else:
        state = HealthState.HEALTHY
    ejected = circuit is Circuit.OPEN
    return ProviderStatus(
        provider=record.provider,
        base_url=record.base_url,
        state=state,
        latency_ms=record.latency_ms,
        last_checked=record.last_checked,
        consecutive_failures=outlier.consecutive_failures,
        last_error=record.last_error,
        ejected=ejected,
        ejected_until=outlier.ejected_until if ejected else 0.0,
        ejections=outlier.ejections,
        p50_ms=record.p50_ms,
        p90_ms=record.p90_ms,
        p99_ms=record.p99_ms,
        last_failure=outlier.last_failure,
        latency_ewma_ms=record.latency_ewma_ms,
        forced=hold.state if hold is not None else "",
        forced_reason=hold.reason if hold is not None else "",
        forced_by=hold.actor if hold is not None else "",
        forced_at=hold.at if hold is not None else 0.0,
    )


def percentiles(samples: Sequence[float]) -> tuple[float, float, float]:
    """p50, p90 and p99 of `samples` (nearest rank); zeros when there are none."""
    if not samples:
        return (0.0, 0.0, 0.0)
    ordered = sorted(samples)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p * len(ordered)) - 1)]

    return (rank(0.50), rank(0.90), rank(0.99))


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's outcome as a router reports it."""

    success: bool
    latency_ms: float = 0.0
    http_status: int = 0
    error: str = ""


def describe_failure(http_status: int, error: str) -> str:
    text = redact(error.strip())[:_MAX_ERROR] or "failed"
    return f"HTTP {http_status}: {text}" if http_status else text


def after_probe(record: TargetRecord, result: ProbeResult, policy: EjectionPolicy) -> TargetRecord:
    now = result.checked
    if result.ok:
        outlier = record_success(record.outlier, now)
        return replace(record, outlier=outlier, latency_ms=result.latency_ms, last_checked=now, last_success=now)
    outlier = record_failure(record.outlier, now, policy, active=True, may_eject=True)
    error = describe_failure(0, result.error)
    return replace(record, outlier=outlier, latency_ms=result.latency_ms, last_checked=now, last_error=error)


def moving_latency(current: float, sample: float, weight: float) -> float:
    """The exponentially weighted moving average after `sample`; the first sample is taken as it is."""
    if sample <= 0:
        return current
    return sample if current <= 0 else current + weight * (sample - current)


def after_outcome(
    record: TargetRecord, outcome: Outcome, now: float, policy: EjectionPolicy, may_eject: bool, weight: float = 0.3
) -> TargetRecord:
    if outcome.success:
        ewma = moving_latency(record.latency_ewma_ms, outcome.latency_ms, weight)
        return replace(record, outlier=record_success(record.outlier, now), last_success=now, latency_ewma_ms=ewma)
    outlier = record_failure(record.outlier, now, policy, active=False, may_eject=may_eject)
    return replace(record, outlier=outlier, last_error=describe_failure(outcome.http_status, outcome.error))


def needs_recording(record: TargetRecord, outcome: Outcome, now: float) -> bool:
    """False for a success on a closed target with no failures that measured nothing: nothing would change."""
    if not outcome.success or outcome.latency_ms > 0:
        return True
    quiet = record.outlier.circuit(now) is Circuit.CLOSED and record.outlier.consecutive_failures == 0
    return not quiet or record.last_success == 0
