"""The master-key ring: versioned AES-256 keys that wrap every data key.

Sources, in order: `TOLLGATE_VAULT_KEYS` ("v2:<base64>,v1:<base64>", the first encrypts, all
decrypt); the seeds' `BYOK_ENCRYPTION_KEY` (a Fernet key, joined as version 1 unless the list names
v1); in embedded mode only, a key generated once into `<data_dir>/vault-master-key` (0600) and reused
on every later start. Production without a key refuses to start. Never an ephemeral key: data
encrypted under a key that dies with the process would be lost.

Each version's check value (an HMAC of a constant, which reveals nothing of the key) is recorded in
the database, so a start with a different key under a known version, or without a key that stored
rows still need, stops with one clear line instead of failing at decryption time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.runtime.logging import register_secret
from services.runtime.settings import PREFIX

log = logging.getLogger("tollgate.keyvault.masterkeys")

KEY_FILE = "vault-master-key"
GENERATE_COMMAND = "python -c \"import base64, os; print('v1:' + base64.urlsafe_b64encode(os.urandom(32)).decode())\""
_ENTRY = re.compile(r"^v(\d{1,9}):(.+)$")


class MasterKeyError(Exception):
    """A master-key configuration that must stop start-up; the message names the setting, never a key."""

    def __init__(self, setting: str, why: str) -> None:
        super().__init__(f"{setting}: {why}")
        self.setting = setting
        self.why = why


@dataclass(frozen=True)
class KeyRing:
    """Master keys by version; `active` encrypts."""

    keys: dict[int, bytes]
    active: int

    def key(self, version: int) -> bytes:
        try:
            return self.keys[version]
        except KeyError:
            raise LookupError(f"master key v{version} is not configured") from None

    def check_value(self, version: int) -> str:
        return check_value(self.keys[version])


def check_value(key: bytes) -> str:
    """A public fingerprint of a master key: tells keys apart, reveals nothing of them."""
    return hmac.new(key, b"tollgate-vault-key-check", hashlib.sha256).hexdigest()[:32]


def _decode_key(text: str) -> bytes:
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    for decode in (base64.urlsafe_b64decode, base64.b64decode):
        try:
            raw = decode(padded)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            return raw
    raise ValueError("not 32 bytes of base64")


def parse_vault_keys(value: str) -> tuple[dict[int, bytes], int]:
    """Parse "v2:<base64>,v1:<base64>" into keys by version and the active (first) version."""
    setting = f"{PREFIX}VAULT_KEYS"
    keys: dict[int, bytes] = {}
    active = 0
    for position, entry in enumerate(part.strip() for part in value.split(",")):
        if not entry:
            continue
        match = _ENTRY.match(entry)
        if not match:
            raise MasterKeyError(setting, f"entry {position + 1} must look like v<N>:<base64 of 32 bytes>")
        version = int(match.group(1))
        if version < 1:
            raise MasterKeyError(setting, f"entry {position + 1}: versions start at v1")
        if version in keys:
            raise MasterKeyError(setting, f"v{version} appears twice")
        try:
            keys[version] = _decode_key(match.group(2))
        except ValueError:
            raise MasterKeyError(
                setting, f"v{version} is not 32 bytes of base64; generate one with: {GENERATE_COMMAND}"
            ) from None
        active = active or version
    if not keys:
        raise MasterKeyError(setting, f"no key given; generate one with: {GENERATE_COMMAND}")
    return keys, active


def key_from_fernet(fernet_key: str) -> bytes:
    """An AES-256 master key derived from the seeds' Fernet key (its 32 bytes through HKDF-SHA256)."""
    try:
        raw = base64.urlsafe_b64decode(fernet_key.strip().encode())
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise MasterKeyError("BYOK_ENCRYPTION_KEY", "not a Fernet key (url-safe base64 of 32 bytes)")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"tollgate-vault-fernet-v1").derive(raw)


def _generated_key(data_dir: Path) -> tuple[dict[int, bytes], int]:
    path = data_dir / KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        text = path.read_text().strip()
        if not text:
            raise MasterKeyError(f"{PREFIX}VAULT_KEYS", f"{path} is empty; restore it from a backup") from None
        try:
            return parse_vault_keys(text)
        except MasterKeyError as exc:
            raise MasterKeyError(f"{PREFIX}VAULT_KEYS", f"{path}: {exc.why}") from None
    text = "v1:" + base64.urlsafe_b64encode(os.urandom(32)).decode()
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    log.warning(
        "generated a master key into %s (embedded mode): back it up, since provider keys stored under it "
        "cannot be read without it; set %sVAULT_KEYS in production",
        path,
        PREFIX,
    )
    return parse_vault_keys(text)


def load_keyring(vault_keys: str, fernet_key: str, production: bool, data_dir: Path) -> KeyRing:
    """The key ring from the settings, or (embedded only) from the key file; raises `MasterKeyError`."""
    keys: dict[int, bytes] = {}
    active = 0
    if vault_keys.strip():
        keys, active = parse_vault_keys(vault_keys)
    if fernet_key.strip():
        derived = key_from_fernet(fernet_key)
        if 1 not in keys:
            keys[1] = derived
            active = active or 1
        elif keys[1] != derived:
            raise MasterKeyError(
                "BYOK_ENCRYPTION_KEY", f"is master key v1, but {PREFIX}VAULT_KEYS names a different v1"
            )
    if not keys:
        if production:
            raise MasterKeyError(
                f"{PREFIX}VAULT_KEYS", f"required in production; generate one with: {GENERATE_COMMAND}"
            )
        keys, active = _generated_key(data_dir)
    for key in keys.values():
        register_secret(base64.urlsafe_b64encode(key).decode().rstrip("="))
        register_secret(base64.b64encode(key).decode().rstrip("="))
    return KeyRing(keys=keys, active=active)
