"""Gateway settings (`TOLLGATE_GATEWAY_*` and the shared `TOLLGATE_*`)."""

from __future__ import annotations

from services.runtime.settings import CommonSettings


class GatewaySettings(CommonSettings):
    gateway_port: int = 8080
    gateway_workers: int = 1
    # Prometheus `/metrics` on its own port, never on the public one; 0 leaves it off.
    gateway_metrics_port: int = 0
    # How long a successful authentication is reused: the delay before a revoked key is refused.
    auth_cache_ttl: float = 5.0
    # Failed authentications (a key presented and refused) per client address and minute before a 429.
    auth_failure_limit: int = 20
    # Proxies whose X-Forwarded-For names the client (comma-separated addresses or CIDRs, `*` for any).
    forwarded_allow_ips: str = "127.0.0.1"
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

    # Shared state of the gateway replicas (rate-limit windows, idempotency records, response cache).
    # Empty: in-process state, right for one gateway process (the embedded default).
    redis_url: str = ""
    redis_prefix: str = "tollgate:"

    # Rate limits per minute; 0 is unlimited. A key's own limits (set when it was created) win over the key defaults.
    rate_limit_key_rpm: int = 0
    rate_limit_key_tpm: int = 0
    rate_limit_user_rpm: int = 0
    rate_limit_user_tpm: int = 0

    idempotency_ttl: float = 24 * 3600.0
    idempotency_max_entries: int = 100_000  # in-process records (no Redis); apart from the cache's entries
    cache_enabled: bool = True
    cache_ttl: float = 300.0
    cache_max_entries: int = 10_000
