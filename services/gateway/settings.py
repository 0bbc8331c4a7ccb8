"""Gateway settings (`TOLLGATE_GATEWAY_*` and the shared `TOLLGATE_*`)."""

from __future__ import annotations

from services.runtime.settings import CommonSettings


class GatewaySettings(CommonSettings):
    gateway_port: int = 8080
    gateway_workers: int = 1
    # How long a successful authentication is reused: the delay before a revoked key is refused.
    auth_cache_ttl: float = 5.0
    max_body_bytes: int = 10 * 1024 * 1024
    request_timeout: float = 600.0
    models_cache_ttl: float = 5.0
    cors_origins: str = ""  # comma-separated allow-list; empty: no CORS headers
