"""keyvault's settings (`TOLLGATE_*` environment variables), on top of the common ones."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.runtime.settings import CommonSettings


class KeyvaultSettings(CommonSettings):
    keyvault_port: int = 50053
    """gRPC port."""
    keyvault_database_url: str = ""
    """Keys and audit log. Empty: `sqlite:///<data_dir>/keyvault.db` (embedded); production needs a
    `postgresql://` URL."""

    vault_keys: str = ""
    """Versioned master keys, `v2:<base64 32 bytes>,v1:<base64 32 bytes>`: the first encrypts, all decrypt.
    Embedded mode generates a file once; required in production."""
    byok_encryption_key: str = Field(default="", validation_alias="BYOK_ENCRYPTION_KEY")
    """The seeds' Fernet key, accepted as a master-key source (version 1 unless `TOLLGATE_VAULT_KEYS` names one)."""
    key_pepper: str = ""
    """The server pepper of the keyed (HMAC) hashes of gateway API keys; embedded mode generates one; required in
    production. Changing it invalidates every issued API key."""
    admin_key: str = ""
    """Production's bootstrap admin key (`tg-` + at least 32 URL-safe characters), ensured at every start."""

    last_used_interval_seconds: float = 60.0
    """Least time between `last_used` writes of one key (off the request path)."""
    rotate_batch: int = 500
    """Rows rewrapped per rotation call."""

    def database_url(self) -> str:
        return self.keyvault_database_url or f"sqlite:///{Path(self.data_dir) / 'keyvault.db'}"
