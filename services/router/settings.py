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
    """The longest a hold may live; a hold lives as long as its request may, plus `hold_ttl_margin_seconds`."""
    hold_ttl_margin_seconds: int = 30
    """How long a hold outlives its request's deadline before credits' sweeper gives its funds back."""
    settle_journal_dir: Path | None = None
    """Folder of the journal of settles owed to credits (kept across restarts); unset: `<data_dir>/router`."""
    settle_retry_max_seconds: float = 10.0
    """The longest pause between repeats of a settle credits could not take."""
    byok_cache_ttl: float = 5.0
    byok_fallback_to_platform: bool = False
    upstream_max_connections: int = 256
