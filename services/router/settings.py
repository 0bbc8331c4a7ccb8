"""The router's settings (`TOLLGATE_*`), on top of the shared ones."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field

from services.runtime.settings import EdgeSettings

DEMO_CATALOG = Path(__file__).resolve().parents[2] / "catalog" / "demo.yaml"


class RouterSettings(EdgeSettings):
    router_port: int = 50051
    """gRPC port."""
    catalog: Path = DEMO_CATALOG
    """The model catalog (YAML); the default is `catalog/demo.yaml`, the full one `catalog/default.yaml`."""
    router_identity_key: str = Field(
        default="", validation_alias=AliasChoices("TOLLGATE_ROUTER_IDENTITY_KEY", "TOLLGATE_ROUTER_TOKEN")
    )
    """The router's identity secret towards credits, keyvault and health (runtime/identity.py); embedded mode
    generates one and keeps it on disk; required in production. `TOLLGATE_ROUTER_TOKEN`, the shared secret it
    replaces, is accepted as its alias."""
    default_power_level: str = ""
    """Power level when a request names none; empty: the catalog's `default_power_level`."""
    max_attempts: int = 3
    """Provider attempts per request."""
    request_timeout_seconds: float = 300.0
    """Total deadline of a request when the caller sets none."""
    hold_ttl_seconds: int = 900
    """The longest a hold may live; a hold lives as long as its request may, plus `hold_ttl_margin_seconds`."""
    hold_ttl_margin_seconds: int = 30
    """How long a hold outlives its request's deadline before credits' sweeper gives its funds back."""
    settle_journal_dir: Path | None = None
    """Folder of the journal of settles owed to credits (kept across restarts); unset: `<data_dir>/router`."""
    settle_retry_max_seconds: float = 10.0
    """The longest pause between repeats of a settle credits could not take."""
    settle_after_answer: bool = True
    """Send the answer once its settle is in the journal (and, with `settle_journal_sync`, on disk), and settle
    with credits meanwhile; the hold covers the request until the settle lands. Off: settle, then answer."""
    settle_journal_sync: bool = False
    """fdatasync the journal before an answer goes out ahead of its settle (one sync for all the settles written
    meanwhile), so that a machine that dies in between cannot lose the charge either; off: a killed router
    cannot lose it, a crashed machine can. Worth it only with the journal on a volume that outlives the machine
    (`settle_journal_dir`); it costs one fdatasync per answer under load (docs/performance.md)."""
    byok_cache_ttl: float = 5.0
    """Seconds a user's provider-key lookup is reused."""
    byok_fallback_to_platform: bool = False
    """When a user's own key is rejected (401/402/403), retry with the platform key."""
    deployment_cooldown_seconds: float = Field(default=10.0, ge=0)
    """How long a deployment whose call failed (unreachable, timed out, 429, 5xx) is skipped while another
    deployment of its model may serve (services/router/deployments.py)."""
    upstream_max_connections: int = 256
    """Pooled connections per provider."""
    latency_report_seconds: float = Field(default=5.0, ge=0)
    """How often at most the router reports an answered call's latency per endpoint to health, which orders
    equally suitable models by it (0: every call)."""
