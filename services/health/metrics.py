"""What provider health shows Prometheus: each provider's state and latency, every probe and its time.

The state gauges are set from what this replica publishes to the routers, so Prometheus sees the state
the routers route by; with several replicas take the worst (`max`) per provider. Labels are catalog
provider names only, never a URL (it may carry credentials) or an error text.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from services.health.state import HealthState, ProviderStatus

PROVIDER_STATE = Gauge(
    "tollgate_provider_state",
    "1 for the state each provider is in (its worst target), 0 for the others",
    ["provider", "state"],
)
PROVIDER_LATENCY = Gauge(
    "tollgate_provider_latency_seconds",
    "Latency percentiles (p50, p90, p99) of each provider over the recent window (probes and the router's outcomes)",
    ["provider", "percentile"],
)
PROBES = Counter("tollgate_probes_total", "Active probes by provider and result (ok or failed)", ["provider", "result"])
PROBE_SECONDS = Histogram(
    "tollgate_probe_seconds",
    "Time one active probe took",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def probed(provider: str, ok: bool, latency_ms: float) -> None:
    PROBES.labels(provider, "ok" if ok else "failed").inc()
    PROBE_SECONDS.labels(provider).observe(latency_ms / 1000)


def published(statuses: Iterable[ProviderStatus]) -> None:
    """Set the gauges from a full snapshot: per provider its worst target (down over degraded over healthy)."""
    worst: dict[str, ProviderStatus] = {}
    for status in statuses:
        seen = worst.get(status.provider)
        if seen is None or _rank(status.state) > _rank(seen.state):
            worst[status.provider] = status
    for provider, status in worst.items():
        for state in HealthState:
            PROVIDER_STATE.labels(provider, state.name.lower()).set(1 if state is status.state else 0)
        for percentile, ms in (("p50", status.p50_ms), ("p90", status.p90_ms), ("p99", status.p99_ms)):
            PROVIDER_LATENCY.labels(provider, percentile).set(ms / 1000)


def _rank(state: HealthState) -> int:
    # Unknown (never checked) ranks below healthy: one target not yet probed does not hide another's outage.
    return {HealthState.UNKNOWN: 0, HealthState.HEALTHY: 1, HealthState.DEGRADED: 2, HealthState.DOWN: 3}[state]
