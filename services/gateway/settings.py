"""Gateway settings (`TOLLGATE_GATEWAY_*` and the shared `TOLLGATE_*`)."""

from __future__ import annotations

from services.runtime.settings import EdgeSettings


class GatewaySettings(EdgeSettings):
    gateway_port: int = 8080
    gateway_workers: int = 1
    # The gateway's identity towards the services (runtime/identity.py); embedded mode keeps one on disk.
    gateway_identity_key: str = ""
    # Prometheus `/metrics` on its own port, never on the public one; 0 leaves it off.
    gateway_metrics_port: int = 0
    # Failed authentications (a key presented and refused) per client address and minute before a 429.
    auth_failure_limit: int = 20
    # Proxies whose X-Forwarded-For names the client (comma-separated addresses or CIDRs, `*` for any).
    forwarded_allow_ips: str = ""  # empty: trust no proxy, every client is its connection's address
    max_body_bytes: int = 10 * 1024 * 1024
    request_timeout: float = 600.0

    # The edge against slow or greedy clients: time to send a request's headers, then its body; idle time
    # of a kept-alive connection; open connections per process (503 beyond).
    header_timeout: float = 10.0
    body_timeout: float = 15.0
    keep_alive_timeout: int = 5
    max_connections: int = 2048
    models_cache_ttl: float = 5.0
    cors_origins: str = ""  # comma-separated allow-list; empty: no CORS headers
    # A console session ends after this many idle seconds (and 12 hours after sign-in in any case).
    console_session_ttl: float = 1800.0

    idempotency_ttl: float = 24 * 3600.0
    idempotency_max_entries: int = 100_000  # in-process records (no Redis); apart from the cache's entries
    cache_enabled: bool = True
    cache_ttl: float = 300.0
    cache_max_entries: int = 10_000
    responses_ttl: float = 30 * 24 * 3600.0
    """Seconds a stored Responses API answer (`store: true`) can be read, continued or deleted."""
