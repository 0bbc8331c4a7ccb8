"""keyvault's settings (`TOLLGATE_*` environment variables), on top of the common ones."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.runtime.settings import CommonSettings


class KeyvaultSettings(CommonSettings):
    keyvault_port: int = 50053
    # Empty: sqlite:///<data_dir>/keyvault.db (embedded); production needs a postgresql:// URL.
    keyvault_database_url: str = ""

    # Versioned master keys, "v2:<base64 32 bytes>,v1:<base64 32 bytes>": the first encrypts, all decrypt.
    vault_keys: str = ""
    # The seeds' Fernet key, accepted as a master-key source (version 1 unless TOLLGATE_VAULT_KEYS names one).
    byok_encryption_key: str = Field(default="", validation_alias="BYOK_ENCRYPTION_KEY")
    # The server pepper of the keyed hashes of gateway API keys.
    key_pepper: str = ""
    # Production's bootstrap admin key (tg-…), ensured at every start.
    admin_key: str = ""

    # `last_used` of a key is written at most this often (per key), off the request path.
    last_used_interval_seconds: float = 60.0
    rotate_batch: int = 500

    def database_url(self) -> str:
        return self.keyvault_database_url or f"sqlite:///{Path(self.data_dir) / 'keyvault.db'}"
