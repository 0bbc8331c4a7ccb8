"""Master-key rotation: rewrap stored provider keys to the active version, report, retire old versions.

Rotation is a sequence of small batches. Each row is read, opened and sealed again under the active
master key outside any lock, then written with a compare-and-swap on its revision: a row that a user
replaced or deleted meanwhile is left alone (a put always seals under the active key anyway). The only
state is the rows themselves — rows under an older version are what is left to do — so an interrupted
rotation resumes by simply running again, and traffic flows throughout.

The `master_keys` table records each version's check value. At start-up `reconcile` stops the service
when a configured key differs from the one recorded under its version, or when stored rows need a
version the ring lacks; a retired version may leave the configuration.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.keyvault import audit, envelope
from services.keyvault.masterkeys import KeyRing, MasterKeyError
from services.keyvault.schema import master_keys, now_ms, provider_keys
from services.runtime.errors import DomainError
from services.runtime.settings import PREFIX

log = logging.getLogger("tollgate.keyvault.rotation")


@dataclass(frozen=True)
class RotateResult:
    active_version: int
    rewrapped: int
    skipped: int
    failed: int
    remaining: int
    total: int
    cursor: int


@dataclass(frozen=True)
class VersionStatus:
    version: int
    rows: int
    active: bool
    configured: bool
    retired_at: int | None


@dataclass(frozen=True)
class VaultStatus:
    active_version: int
    versions: list[VersionStatus]
    total: int


async def reconcile(engine: AsyncEngine, ring: KeyRing) -> None:
    """Record the ring's versions and refuse a ring that cannot read what is stored (raises `MasterKeyError`)."""
    setting = f"{PREFIX}VAULT_KEYS"
    async with engine.begin() as conn:
        recorded = {r.version: r for r in (await conn.execute(select(master_keys))).all()}
        for version in sorted(ring.keys):
            known = recorded.get(version)
            if known is None:
                await conn.execute(
                    master_keys.insert().values(
                        version=version, check_value=ring.check_value(version), created_at=now_ms()
                    )
                )
            elif known.check_value != ring.check_value(version):
                raise MasterKeyError(setting, f"v{version} is not the key that v{version} was when first used")
        if (known := recorded.get(ring.active)) is not None and known.retired_at is not None:
            raise MasterKeyError(setting, f"the active key v{ring.active} was retired; make a new version first")
        used = (
            await conn.execute(
                select(provider_keys.c.master_key_version, func.count()).group_by(provider_keys.c.master_key_version)
            )
        ).all()
    missing = sorted(version for version, _rows in used if version not in ring.keys)
    if missing:
        raise MasterKeyError(
            setting,
            f"stored provider keys need master key v{missing[0]}, which is not configured; add it back "
            "(rotate, then retire it, before removing a version)",
        )


async def rotate(
    engine: AsyncEngine, ring: KeyRing, limit: int = 500, actor: str = "", after_id: int = 0
) -> RotateResult:
    """Rewrap up to `limit` rows not under the active version with ids above `after_id`.

    `cursor` in the result continues the pass; rows that cannot be opened are counted and passed over.
    """
    query = (
        select(
            provider_keys.c.id,
            provider_keys.c.user_id,
            provider_keys.c.provider,
            provider_keys.c.revision,
            provider_keys.c.sealed,
        )
        .where(provider_keys.c.master_key_version != ring.active, provider_keys.c.id > after_id)
        .order_by(provider_keys.c.id)
        .limit(max(1, limit))
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    rewrapped = skipped = failed = 0
    last_id = 0
    for row in rows:
        last_id = row.id
        try:
            sealed = envelope.reseal(ring, row.user_id, row.provider, row.sealed)
        except envelope.SealError:
            failed += 1
            continue
        async with engine.begin() as conn:
            result = await conn.execute(
                update(provider_keys)
                .where(provider_keys.c.id == row.id, provider_keys.c.revision == row.revision)
                .values(sealed=sealed, master_key_version=ring.active, revision=row.revision + 1)
            )
        if result.rowcount == 1:
            rewrapped += 1
        else:
            skipped += 1
    if rewrapped or failed:
        await audit.record_alone(
            engine,
            actor=actor,
            action="vault.rotate",
            outcome="ok" if not failed else "failed",
            detail=f"to=v{ring.active} rewrapped={rewrapped} skipped={skipped} failed={failed}",
        )
    status = await vault_status(engine, ring)
    remaining = sum(v.rows for v in status.versions if v.version != ring.active)
    return RotateResult(ring.active, rewrapped, skipped, failed, remaining, status.total, last_id)


async def vault_status(engine: AsyncEngine, ring: KeyRing) -> VaultStatus:
    async with engine.connect() as conn:
        counts: dict[int, int] = dict(
            (
                await conn.execute(
                    select(provider_keys.c.master_key_version, func.count()).group_by(
                        provider_keys.c.master_key_version
                    )
                )
            ).all()
        )
        recorded = {r.version: r.retired_at for r in (await conn.execute(select(master_keys))).all()}
    versions = sorted(set(counts) | set(recorded) | set(ring.keys), reverse=True)
    return VaultStatus(
        active_version=ring.active,
        versions=[
            VersionStatus(
                version=v,
                rows=int(counts.get(v, 0)),
                active=v == ring.active,
                configured=v in ring.keys,
                retired_at=recorded.get(v),
            )
            for v in versions
        ],
        total=int(sum(counts.values())),
    )


async def retire(engine: AsyncEngine, ring: KeyRing, version: int, actor: str = "") -> VersionStatus:
    """Mark `version` retired; refused while it is active or any row still uses it."""
    if version == ring.active:
        raise DomainError("conflict", f"v{version} is the active master key and cannot be retired", "version")
    async with engine.begin() as conn:
        known = (await conn.execute(select(master_keys).where(master_keys.c.version == version))).first()
        if known is None:
            raise DomainError("not_found", f"no master key v{version} was ever used", "version")
        rows = int(
            (
                await conn.execute(
                    select(func.count()).select_from(provider_keys).where(provider_keys.c.master_key_version == version)
                )
            ).scalar_one()
        )
        retired_at = known.retired_at or now_ms()
        if not rows:
            await conn.execute(
                update(master_keys).where(master_keys.c.version == version).values(retired_at=retired_at)
            )
            await audit.record(conn, actor=actor, action="vault.retire", outcome="ok", detail=f"v{version}")
    if rows:
        await audit.record_alone(
            engine, actor=actor, action="vault.retire", outcome="denied", detail=f"v{version} rows={rows}"
        )
        raise DomainError(
            "conflict", f"{rows} provider keys still use v{version}; run `tollgate vault rotate` first", "version"
        )
    return VersionStatus(version, 0, False, version in ring.keys, retired_at)
