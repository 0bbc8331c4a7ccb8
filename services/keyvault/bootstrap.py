"""Start-up of keyvault: resolve its secrets, open and migrate the database, check the master keys against
what is stored, make sure an admin key exists, and assemble the servicer.

Secrets come from settings; in embedded mode the missing ones are generated once into the data
folder (0600) and reused. Production refuses to start without them, naming the variable.
Embedded first start (no API key stored at all) creates an admin key and a demo user key and writes
them to `<data_dir>/bootstrap-keys.json` (0600) for the launcher to print.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from services.keyvault import apikeys, rotation
from services.keyvault.apikeys import ApiKeys
from services.keyvault.byok import ProviderKeys
from services.keyvault.last_used import LastUsed
from services.keyvault.masterkeys import KeyRing, MasterKeyError, load_keyring
from services.keyvault.schema import api_keys, provider_keys
from services.keyvault.servicer import KeyVaultServicer
from services.keyvault.settings import KeyvaultSettings
from services.keyvault.teams import Teams
from services.runtime.db import create_engine, migrate
from services.runtime.logging import register_secret
from services.runtime.secrets import persistent_secret
from services.runtime.settings import PREFIX, fail

log = logging.getLogger("tollgate.keyvault")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "keyvault_alembic_version"
BOOTSTRAP_FILE = "bootstrap-keys.json"
DEMO_USER = "demo"


@dataclass(frozen=True)
class Secrets:
    ring: KeyRing
    pepper: str
    admin_key: str


@dataclass
class Keyvault:
    engine: AsyncEngine
    servicer: KeyVaultServicer
    last_used: list[LastUsed]


def exit_on(exc: MasterKeyError) -> None:
    raise SystemExit(f"tollgate: invalid configuration: {exc}")


def resolve_secrets(settings: KeyvaultSettings) -> Secrets:
    """Every secret keyvault needs, or exit with one line naming the setting."""
    try:
        ring = load_keyring(settings.vault_keys, settings.byok_encryption_key, settings.production, settings.data_dir)
    except MasterKeyError as exc:
        exit_on(exc)
        raise
    admin_key = settings.admin_key.strip()
    if settings.production and not admin_key:
        fail(
            "ADMIN_KEY",
            "required in production; generate one with: "
            "python -c 'import secrets; print(\"tg-\" + secrets.token_urlsafe(32))'",
        )
    if admin_key and not apikeys.well_formed(admin_key):
        fail("ADMIN_KEY", "must be tg- followed by at least 32 URL-safe characters")
    if admin_key:
        register_secret(admin_key)
    if settings.production and not settings.keyvault_database_url:
        fail("KEYVAULT_DATABASE_URL", "required in production (a postgresql:// URL)")
    pepper = persistent_secret(settings, settings.key_pepper, "KEY_PEPPER", "key-pepper")
    return Secrets(ring=ring, pepper=pepper, admin_key=admin_key)


def write_bootstrap_file(path: Path, admin_key: str, demo_key: str) -> None:
    """Write the bootstrap keys atomically with 0600 permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps({"admin_key": admin_key, "demo_key": demo_key, "demo_user": DEMO_USER}))
        fh.write(b"\n")
    os.replace(tmp, path)


async def bootstrap_keys(settings: KeyvaultSettings, keys: ApiKeys, admin_key: str) -> None:
    if not settings.production and await keys.count() == 0:
        admin, demo = admin_key or apikeys.generate(), apikeys.generate()
        # The file first: keys in the database that nobody can read would be useless.
        write_bootstrap_file(Path(settings.data_dir) / BOOTSTRAP_FILE, admin, demo)
        await keys.create("admin", ("admin", "user"), name="bootstrap admin", actor="bootstrap", key=admin)
        await keys.create(DEMO_USER, ("user",), name="demo", actor="bootstrap", key=demo)
        log.warning("created an admin key and a demo key (embedded first start); see %s", BOOTSTRAP_FILE)
    if admin_key and await keys.ensure_admin(admin_key):
        log.info("bootstrap admin key from %sADMIN_KEY stored", PREFIX)


async def open_keyvault(settings: KeyvaultSettings, secrets: Secrets | None = None) -> Keyvault:
    """The ready service: database migrated, master keys reconciled, bootstrap keys present."""
    secrets = secrets or resolve_secrets(settings)
    engine = create_engine(settings.database_url())
    try:
        await migrate(engine, MIGRATIONS, VERSION_TABLE)
        try:
            await rotation.reconcile(engine, secrets.ring)
        except MasterKeyError as exc:
            exit_on(exc)
        interval = settings.last_used_interval_seconds
        api_last_used = LastUsed(engine, api_keys, interval)
        provider_last_used = LastUsed(engine, provider_keys, interval)
        keys = ApiKeys(engine, secrets.pepper, api_last_used)
        await bootstrap_keys(settings, keys, secrets.admin_key)
    except BaseException:
        await engine.dispose()
        raise
    servicer = KeyVaultServicer(
        engine=engine,
        ring=secrets.ring,
        api_keys=keys,
        provider_keys=ProviderKeys(engine, secrets.ring, secrets.pepper, provider_last_used),
        teams=Teams(engine),
        rotate_batch=settings.rotate_batch,
    )
    return Keyvault(engine=engine, servicer=servicer, last_used=[api_last_used, provider_last_used])
