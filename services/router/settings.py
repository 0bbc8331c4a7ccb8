"""The router's settings (`TOLLGATE_*`), on top of the shared ones."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field

from services.runtime.settings import EdgeSettings

DEMO_CATALOG = Path(__file__).resolve().parents[2] / "catalog" / "demo.yaml"


class RouterSettings(EdgeSettings):
    router_port: int = 50051
    catalog: Path = DEMO_CATALOG
    # The router's identity towards the services (runtime/identity.py); embedded mode keeps one on disk.
    # TOLLGATE_ROUTER_TOKEN, the shared secret it replaces, is still accepted as the router's secret.
    router_identity_key: str = Field(
        default="", validation_alias=AliasChoices("TOLLGATE_ROUTER_IDENTITY_KEY", "TOLLGATE_ROUTER_TOKEN")
    )
    default_power_level: str = ""  # empty: the catalog's default_power_level
    max_attempts: int = 3
    request_timeout_seconds: float = 300.0  # total deadline when the caller sets none
    hold_ttl_seconds: int = 900
    byok_cache_ttl: float = 5.0
    byok_fallback_to_platform: bool = False
    upstream_max_connections: int = 256
    latency_report_seconds: float = Field(default=5.0, ge=0)
    """How often at most the router reports an answered call's latency per endpoint to health, which orders
    equally suitable models by it (0: every call)."""
