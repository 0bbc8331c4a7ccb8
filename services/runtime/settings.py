"""Settings from `TOLLGATE_*` environment variables, shared by every service.

Each service subclasses `CommonSettings` with its own fields. A bad value stops start-up with one
line naming the variable, never a traceback and never a guessed default for a secret.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "TOLLGATE_"


class Mode(StrEnum):
    EMBEDDED = "embedded"
    PRODUCTION = "production"


class CommonSettings(BaseSettings):
    # Each field's docstring is its description: the configuration reference of the docs is generated from them.
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True, use_attribute_docstrings=True)

    mode: Mode = Mode.EMBEDDED
    """`embedded` (SQLite, generated secrets) or `production` (PostgreSQL, secrets required)."""
    data_dir: Path = Path("data")
    """Embedded mode's folder: SQLite files, generated secrets, `bootstrap-keys.json`."""
    log_level: str = "INFO"
    """Log level."""
    log_format: str = "json"
    """`json` or `text` (for humans)."""
    host: str = "127.0.0.1"
    """Address every service listens on (`0.0.0.0` in containers)."""

    router_addr: str = "127.0.0.1:50051"
    """Where callers find the router (`dns:///router:50051` for several replicas)."""
    credits_addr: str = "127.0.0.1:50052"
    """Where callers find credits."""
    keyvault_addr: str = "127.0.0.1:50053"
    """Where callers find keyvault."""
    health_addr: str = "127.0.0.1:50054"
    """Where callers find health."""

    router_metrics_port: int = 0
    """Prometheus `/metrics` port of the router over HTTP; 0 leaves it off."""
    credits_metrics_port: int = 0
    """Prometheus `/metrics` port of credits over HTTP; 0 leaves it off."""
    keyvault_metrics_port: int = 0
    """Prometheus `/metrics` port of keyvault over HTTP; 0 leaves it off."""
    health_metrics_port: int = 0
    """Prometheus `/metrics` port of health over HTTP; 0 leaves it off."""

    tracing: bool = False
    """Emit OpenTelemetry spans."""
    otlp_endpoint: str = ""
    """OTLP/HTTP traces endpoint, e.g. `http://otel-collector:4318/v1/traces`."""

    grace_seconds: float = 10.0
    """Drain time after SIGTERM (NOT_SERVING at once, in-flight calls finish)."""
    rpc_timeout_seconds: float = 5.0
    """Deadline of internal calls that are not completions."""

    gateway_identity_public_key: str = ""
    """Public key(s) of the gateway's identity, for the services that accept it (comma-separated while rotating);
    not secret. Empty in embedded mode: read from the data folder; required in production where a service's rules
    name the gateway."""
    router_identity_public_key: str = ""
    """Public key(s) of the router's identity, for the services that accept it (comma-separated while rotating);
    not secret. Empty in embedded mode: read from the data folder; required in production where a service's rules
    name the router."""
    operator_identity_public_key: str = ""
    """Public key(s) of the operator's identity (the `tollgate` CLI), for the services that accept it
    (comma-separated while rotating); not secret. Empty in embedded mode: read from the data folder; required in
    production where a service's rules name the operator."""

    @property
    def production(self) -> bool:
        return self.mode is Mode.PRODUCTION


class EdgeSettings(CommonSettings):
    """Settings of the services that take callers' own API keys: the gateway (HTTP) and the router (gRPC)."""

    auth_cache_ttl: float = 5.0
    """Seconds a successful authentication is reused: the delay before a revoked key is refused."""
    redis_url: str = ""
    """Redis shared by the replicas: rate-limit windows (shared by HTTP and the native gRPC API), the gateway's
    idempotency records and response cache. Empty: in-process state, right for one process (the embedded
    default). `make run PROFILE=prod` reads it too (default `redis://127.0.0.1:6379/0`)."""
    redis_prefix: str = "tollgate:"
    """Prefix of the Redis keys."""
    rate_limit_key_rpm: int = 0
    """Default requests per minute of one API key (0: unlimited; a key's own limits, set when it was created, win)."""
    rate_limit_key_tpm: int = 0
    """Default tokens per minute of one API key (0: unlimited; a key's own limits win)."""
    rate_limit_user_rpm: int = 0
    """Requests per minute of one user over all their keys (0: unlimited)."""
    rate_limit_user_tpm: int = 0
    """Tokens per minute of one user over all their keys (0: unlimited)."""


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S]) -> S:
    """Build settings from the environment or exit with one clear line."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        problems = "; ".join(
            f"{prefix}{str(err['loc'][0]).upper() if err['loc'] else '?'}: {err['msg']}" for err in exc.errors()
        )
        sys.exit(f"tollgate: invalid configuration: {problems}")


def fail(setting: str, why: str) -> None:
    """Stop start-up because of one setting."""
    sys.exit(f"tollgate: invalid configuration: {PREFIX}{setting}: {why}")
