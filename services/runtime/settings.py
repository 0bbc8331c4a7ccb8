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
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)

    mode: Mode = Mode.EMBEDDED
    data_dir: Path = Path("data")
    log_level: str = "INFO"
    log_format: str = "json"  # json | text
    host: str = "127.0.0.1"

    router_addr: str = "127.0.0.1:50051"
    credits_addr: str = "127.0.0.1:50052"
    keyvault_addr: str = "127.0.0.1:50053"
    health_addr: str = "127.0.0.1:50054"

    # Prometheus `/metrics` of each gRPC service over HTTP; 0 leaves it off.
    router_metrics_port: int = 0
    credits_metrics_port: int = 0
    keyvault_metrics_port: int = 0
    health_metrics_port: int = 0

    tracing: bool = False
    otlp_endpoint: str = ""  # e.g. http://otel-collector:4318/v1/traces

    grace_seconds: float = 10.0
    rpc_timeout_seconds: float = 5.0

    # Public keys of the callers a service verifies (runtime/identity.py); not secret. Several, comma-separated,
    # while rotating. Empty in embedded mode: read from the data folder.
    gateway_identity_public_key: str = ""
    router_identity_public_key: str = ""
    operator_identity_public_key: str = ""

    @property
    def production(self) -> bool:
        return self.mode is Mode.PRODUCTION


class EdgeSettings(CommonSettings):
    """Settings of the services that take callers' own API keys: the gateway (HTTP) and the router (gRPC)."""

    # How long a successful authentication is reused: the delay before a revoked key is refused.
    auth_cache_ttl: float = 5.0
    # Shared state of the replicas (rate-limit windows; the gateway's idempotency records and response cache).
    # Empty: in-process state, right for one process (the embedded default).
    redis_url: str = ""
    redis_prefix: str = "tollgate:"
    # Rate limits per minute; 0 is unlimited. A key's own limits (set when it was created) win over the key defaults.
    rate_limit_key_rpm: int = 0
    rate_limit_key_tpm: int = 0
    rate_limit_user_rpm: int = 0
    rate_limit_user_tpm: int = 0


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
