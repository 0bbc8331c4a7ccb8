"""Gateway settings (`TOLLGATE_GATEWAY_*` and the shared `TOLLGATE_*`)."""

from __future__ import annotations

from services.runtime.settings import EdgeSettings


class GatewaySettings(EdgeSettings):
    gateway_port: int = 8080
    """HTTP port."""
    gateway_workers: int = 1
    """uvicorn worker processes (they share limits and caches through Redis)."""
    gateway_identity_key: str = ""
    """The gateway's identity secret (at least 32 characters) towards the services (runtime/identity.py); embedded
    mode generates one and keeps it on disk; required in production."""
    gateway_metrics_port: int = 0
    """Prometheus `/metrics` on its own port, never on the public one; 0 leaves it off."""
    gateway_metrics_dir: str = ""
    """Where the workers of a gateway with `TOLLGATE_GATEWAY_WORKERS` above 1 keep their metric files: a fresh
    sub-folder is made there at each start and removed at exit. Empty: the system's temporary folder."""
    auth_failure_limit: int = 20
    """Failed authentications (a key presented and refused) per client address and minute before a 429
    (0: no limit)."""
    forwarded_allow_ips: str = ""
    """Proxies whose `X-Forwarded-For` names the client (comma-separated addresses or CIDRs, `*` for any). Empty:
    trust no proxy, every client is its connection's address."""
    max_body_bytes: int = 10 * 1024 * 1024
    """Largest request body in bytes (413 beyond)."""
    request_timeout: float = 600.0
    """Deadline of a completion in seconds, end to end."""

    header_timeout: float = 10.0
    """Seconds from a request's first byte to the end of its headers (408 beyond; 0: none)."""
    body_timeout: float = 15.0
    """Seconds for a request's body after its headers (408 beyond; 0: none)."""
    keep_alive_timeout: int = 5
    """Seconds an idle kept-alive connection stays open."""
    max_connections: int = 2048
    """Open connections per gateway process (503 beyond; 0: no limit)."""
    models_cache_ttl: float = 5.0
    """Seconds the model list is reused."""
    parallel_lease_seconds: float = 30.0
    """Lease of a request in flight on its key's `max_parallel` cap, renewed every third of it while the request
    runs: a gateway that dies mid-request frees its slots within this time."""
    cors_origins: str = ""
    """Comma-separated CORS allow-list; empty: no CORS headers."""
    console_session_ttl: float = 1800.0
    """Idle seconds before a console session ends (and 12 hours after sign-in in any case)."""

    idempotency_ttl: float = 24 * 3600.0
    """Seconds an `Idempotency-Key`'s response is remembered."""
    idempotency_max_entries: int = 100_000
    """In-process idempotency records (no Redis), apart from the cache's entries; stored Responses answers and
    console sessions are kept up to as many again, apart from both."""
    cache_enabled: bool = True
    """The response cache."""
    cache_ttl: float = 300.0
    """Seconds a cached response lives."""
    cache_max_entries: int = 10_000
    """Size of the in-process response cache."""
    responses_ttl: float = 30 * 24 * 3600.0
    """Seconds a stored Responses API answer (`store: true`) can be read, continued or deleted."""
