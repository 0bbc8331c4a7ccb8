"""Gateway settings (`TOLLGATE_GATEWAY_*` and the shared `TOLLGATE_*`)."""

from __future__ import annotations

from services.runtime.settings import EdgeSettings


class GatewaySettings(EdgeSettings):
    gateway_port: int = 8080
    gateway_workers: int = 1
    # The gateway's identity towards the services (runtime/identity.py); embedded mode keeps one on disk.
    gateway_identity_key: str = ""
    max_body_bytes: int = 10 * 1024 * 1024
    request_timeout: float = 600.0
    models_cache_ttl: float = 5.0
    cors_origins: str = ""  # comma-separated allow-list; empty: no CORS headers
    # A console session ends after this many idle seconds (and 12 hours after sign-in in any case).
    console_session_ttl: float = 1800.0

    idempotency_ttl: float = 24 * 3600.0
    cache_enabled: bool = True
    cache_ttl: float = 300.0
    cache_max_entries: int = 10_000
