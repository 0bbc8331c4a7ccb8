"""The health service's settings (`TOLLGATE_HEALTH_*`, plus the catalog path)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from services.runtime.settings import CommonSettings, fail, load

# The seeds' name for the probe interval, read when TOLLGATE_HEALTH_INTERVAL is unset.
LEGACY_INTERVAL = "LLM_HEALTH_CHECK_INTERVAL"


class HealthSettings(CommonSettings):
    health_port: int = 50054
    """gRPC port."""
    health_database_url: str = ""
    """Provider state and probe history. Empty: `sqlite:///<data_dir>/health.db`."""
    catalog: Path = Path("catalog/demo.yaml")
    """The model catalog whose providers are probed (the router's `TOLLGATE_CATALOG`)."""

    health_interval: float = Field(300.0, gt=0)
    """Seconds between active probes of a provider: one cheap, unbilled call (list models) per target, ± jitter
    (`LLM_HEALTH_CHECK_INTERVAL` is accepted when this is unset)."""
    health_jitter: float = Field(0.1, ge=0, le=0.5)
    """± fraction of random spread of the probe interval."""
    health_probe_timeout: float = Field(10.0, gt=0)
    """Probe timeout in seconds (a lower provider `timeout_s` wins)."""
    health_degraded_latency_ms: float = Field(5000.0, gt=0)
    """A probe slower than this marks the provider degraded."""
    health_latency_window: int = Field(50, ge=1)
    """Recent probes behind p50/p90/p99."""
    health_history_retention_hours: float = Field(168.0, gt=0)
    """Hours of probe history kept."""
    health_sync_seconds: float = Field(1.0, gt=0)
    """How often each replica re-reads the shared state to follow the others and ejections that ended."""

    health_eject_consecutive_failures: int = Field(5, ge=1)
    """Reported failures in a row that eject a provider (passive outlier ejection, Envoy's model)."""
    health_eject_base_seconds: float = Field(30.0, gt=0)
    """Seconds of one ejection, times the number of ejections so far."""
    health_eject_max_seconds: float = Field(300.0, gt=0)
    """Cap of one ejection."""
    health_eject_max_percent: int = Field(50, ge=0, le=100)
    """Most providers ejected at once, in percent (one always may be)."""

    def database_url(self) -> str:
        return self.health_database_url or f"sqlite:///{self.data_dir}/health.db"


def load_settings() -> HealthSettings:
    """The settings from the environment, or exit naming the bad variable."""
    legacy = os.environ.get(LEGACY_INTERVAL)
    if legacy and "TOLLGATE_HEALTH_INTERVAL" not in os.environ:
        os.environ["TOLLGATE_HEALTH_INTERVAL"] = legacy
    settings = load(HealthSettings)
    if settings.health_eject_max_seconds < settings.health_eject_base_seconds:
        fail("HEALTH_EJECT_MAX_SECONDS", "must be at least TOLLGATE_HEALTH_EJECT_BASE_SECONDS")
    return settings
