"""The state gauges: one series a state per provider, set from its worst target; never a URL in a label."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest

from services.health import metrics
from services.health.state import HealthState, ProviderStatus


def status(provider: str, base_url: str, state: HealthState, p99_ms: float = 0.0) -> ProviderStatus:
    return ProviderStatus(provider, base_url, state, 10.0, 1.0, 0, "", False, 0.0, 0, 5.0, 8.0, p99_ms, 0.0)


def state_of(provider: str) -> dict[str, float]:
    return {
        state.name.lower(): REGISTRY.get_sample_value(
            "tollgate_provider_state", {"provider": provider, "state": state.name.lower()}
        )
        or 0.0
        for state in HealthState
    }


def test_the_worst_target_sets_the_providers_state() -> None:
    metrics.published(
        [
            status("metrics-a", "https://one.example/v1", HealthState.HEALTHY),
            status("metrics-a", "https://user:secret@two.example/v1", HealthState.DOWN, p99_ms=2500),
            status("metrics-b", "https://three.example/v1", HealthState.UNKNOWN),
            status("metrics-b", "https://four.example/v1", HealthState.DEGRADED),
        ]
    )
    assert state_of("metrics-a") == {"unknown": 0, "healthy": 0, "degraded": 0, "down": 1}
    # One target not yet checked does not hide what another shows.
    assert state_of("metrics-b") == {"unknown": 0, "healthy": 0, "degraded": 1, "down": 0}
    assert (
        REGISTRY.get_sample_value("tollgate_provider_latency_seconds", {"provider": "metrics-a", "percentile": "p99"})
        == 2.5
    )
    assert b"example" not in generate_latest(REGISTRY) and b"secret" not in generate_latest(REGISTRY)


def test_recovery_moves_the_one_to_healthy() -> None:
    metrics.published([status("metrics-c", "https://c.example/v1", HealthState.DOWN)])
    metrics.published([status("metrics-c", "https://c.example/v1", HealthState.HEALTHY)])
    assert state_of("metrics-c") == {"unknown": 0, "healthy": 1, "degraded": 0, "down": 0}


def test_probes_are_counted_by_result() -> None:
    metrics.probed("metrics-d", False, 1500.0)
    metrics.probed("metrics-d", True, 20.0)
    assert REGISTRY.get_sample_value("tollgate_probes_total", {"provider": "metrics-d", "result": "failed"}) == 1
    assert REGISTRY.get_sample_value("tollgate_probes_total", {"provider": "metrics-d", "result": "ok"}) == 1
    assert REGISTRY.get_sample_value("tollgate_probe_seconds_sum", {"provider": "metrics-d"}) == 1.52
