"""Users' own provider keys (BYOK): one per user and provider, sealed at rest, plaintext only towards the router.

Every call names the user it acts on and touches that user's rows only. Lists show the masked form
(`sk-…abcd`) and a fingerprint (a keyed hash prefix); the plaintext leaves only through `reveal`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.keyvault import audit, envelope
from services.keyvault.apikeys import check_user_id
from services.keyvault.last_used import LastUsed
from services.keyvault.masterkeys import KeyRing
from services.keyvault.schema import now_ms, provider_keys
from services.runtime.errors import DomainError

log = logging.getLogger("tollgate.keyvault.byok")

_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,99}$")
_KNOWN_PREFIXES = ("sk-ant-", "sk-or-", "sk-proj-", "sk-", "gsk_", "xai-", "hf_", "fw_", "r8_", "pk-", "AIza", "nvapi-")
MAX_KEY_LENGTH = 4096


@dataclass(frozen=True)
class ProviderKeyInfo:
    key_id: str
    user_id: str
    provider: str
    masked: str
    label: str
    created_at: int
    last_used_at: int | None
    fingerprint: str
    master_key_version: int


@dataclass(frozen=True)
class ProviderKeySecret:
    key_id: str
    api_key: str


def mask(key: str) -> str:
    """`sk-…abcd`: the first 3 characters of a known prefix and the last 4; less for short keys."""
    head = next((key[:3] for prefix in _KNOWN_PREFIXES if key.startswith(prefix)), "")
    tail = key[-4:] if len(key) >= 16 else ""
    return f"{head}…{tail}"


def _info(row: Row[tuple[object, ...]]) -> ProviderKeyInfo:
    m = row._mapping
    return ProviderKeyInfo(
        key_id=m["key_id"],
        user_id=m["user_id"],
        provider=m["provider"],
        masked=m["masked"],
        label=m["label"],
        created_at=m["created_at"],
        last_used_at=m["last_used_at"],
        fingerprint=m["fingerprint"],
        master_key_version=m["master_key_version"],
    )


def check_provider(provider: str) -> str:
    if not _PROVIDER.match(provider):
        raise DomainError("invalid_request", "provider must be a provider name such as openai", "provider")
    return provider


class ProviderKeys:
    """The BYOK store."""

    def __init__(self, engine: AsyncEngine, ring: KeyRing, pepper: str, last_used: LastUsed) -> None:
        self.engine = engine
        self.ring = ring
        self.pepper = pepper
        self.last_used = last_used

    def fingerprint(self, key: str) -> str:
        return hmac.new(self.pepper.encode(), b"byok\x00" + key.encode(), hashlib.sha256).hexdigest()[:16]

    async def put(self, user_id: str, provider: str, api_key: str, label: str = "") -> ProviderKeyInfo:
        """Store (or replace) the user's key for `provider`, sealed under the active master key."""
        check_user_id(user_id)
        check_provider(provider)
        api_key = api_key.strip()
        if not api_key:
            raise DomainError("invalid_request", "api_key is required", "api_key")
        if len(api_key) > MAX_KEY_LENGTH or any(ch.isspace() or not ch.isprintable() for ch in api_key):
            raise DomainError("invalid_request", "api_key is not a valid provider key", "api_key")
        if len(label) > 200:
            raise DomainError("invalid_request", "label is longer than 200 characters", "label")
        values = {
            "key_id": "pv_" + secrets.token_hex(8),
            "label": label,
            "masked": mask(api_key),
            "fingerprint": self.fingerprint(api_key),
            "master_key_version": self.ring.active,
            "sealed": envelope.seal(self.ring, user_id, provider, api_key),
            "created_at": now_ms(),
            "last_used_at": None,
        }
        mine = (provider_keys.c.user_id == user_id) & (provider_keys.c.provider == provider)
        for _attempt in range(3):
            try:
                async with self.engine.begin() as conn:
                    replaced = await conn.execute(
                        update(provider_keys).where(mine).values(revision=provider_keys.c.revision + 1, **values)
                    )
                    if replaced.rowcount == 0:
                        await conn.execute(
                            provider_keys.insert().values(user_id=user_id, provider=provider, revision=1, **values)
                        )
                    await audit.record(
                        conn,
                        actor=user_id,
                        action="provider_key.replace" if replaced.rowcount else "provider_key.put",
                        outcome="ok",
                        user_id=user_id,
                        key_id=str(values["key_id"]),
                        fingerprint=str(values["fingerprint"]),
                        detail=f"provider={provider}",
                    )
                    row = (await conn.execute(select(provider_keys).where(mine))).one()
                return _info(row)
            except IntegrityError:
                continue  # a concurrent first put for the same provider: the next round replaces it
        raise DomainError("conflict", "the key was changed concurrently; try again", "provider")

    async def list(self, user_id: str) -> list[ProviderKeyInfo]:
        check_user_id(user_id)
        query = select(provider_keys).where(provider_keys.c.user_id == user_id).order_by(provider_keys.c.provider)
        async with self.engine.connect() as conn:
            return [_info(row) for row in (await conn.execute(query)).all()]

    async def delete(self, user_id: str, provider: str) -> bool:
        check_user_id(user_id)
        check_provider(provider)
        mine = (provider_keys.c.user_id == user_id) & (provider_keys.c.provider == provider)
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(provider_keys.c.key_id, provider_keys.c.fingerprint).where(mine))).first()
            if row is None:
                return False
            await conn.execute(delete(provider_keys).where(mine))
            await audit.record(
                conn,
                actor=user_id,
                action="provider_key.delete",
                outcome="ok",
                user_id=user_id,
                key_id=row.key_id,
                fingerprint=row.fingerprint,
                detail=f"provider={provider}",
            )
        return True

    async def reveal(self, user_id: str, provider: str) -> ProviderKeySecret | None:
        """The plaintext of the user's key for `provider` (router only), or None when there is none."""
        query = select(provider_keys.c.key_id, provider_keys.c.sealed, provider_keys.c.fingerprint).where(
            (provider_keys.c.user_id == user_id) & (provider_keys.c.provider == provider)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        try:
            plaintext = envelope.open_sealed(self.ring, user_id, provider, row.sealed)
        except envelope.SealError as exc:
            await audit.record_alone(
                self.engine,
                actor="router",
                action="provider_key.reveal",
                outcome="failed",
                user_id=user_id,
                key_id=row.key_id,
                fingerprint=row.fingerprint,
                detail=str(exc),
            )
            raise DomainError("internal_error", "the stored provider key cannot be decrypted") from None
        self.last_used.touch(row.key_id, now_ms())
        return ProviderKeySecret(key_id=row.key_id, api_key=plaintext)
