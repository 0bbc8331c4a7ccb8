"""Envelope encryption of provider keys: AES-256-GCM, a fresh data key per secret, wrapped by a master key.

A sealed secret is one self-describing blob:

    format (1) | master-key version (4, big-endian) | wrap nonce (12) | wrapped data key (48)
               | nonce (12) | ciphertext + tag

Both the data-key wrap and the secret's encryption authenticate the same associated data: the format
version, the user, the provider and the master-key version. A blob copied to another user's or
another provider's row, or relabelled with another master-key version, fails to open.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.keyvault.masterkeys import KeyRing

FORMAT = 1
_HEADER = struct.Struct(">BI")
_NONCE = 12
_WRAPPED = 32 + 16
_MIN_LEN = _HEADER.size + _NONCE + _WRAPPED + _NONCE + 16


class SealError(Exception):
    """A blob that does not open: tampered, bound to another user or provider, or under an unknown key."""


def associated_data(user_id: str, provider: str, version: int) -> bytes:
    parts = [b"tollgate-byok", str(FORMAT).encode(), user_id.encode(), provider.encode(), str(version).encode()]
    return b"".join(struct.pack(">I", len(part)) + part for part in parts)


def seal(ring: KeyRing, user_id: str, provider: str, plaintext: str) -> bytes:
    """Encrypt `plaintext` under a fresh data key wrapped by the active master key."""
    version = ring.active
    ad = associated_data(user_id, provider, version)
    data_key = AESGCM.generate_key(bit_length=256)
    wrap_nonce, nonce = os.urandom(_NONCE), os.urandom(_NONCE)
    wrapped = AESGCM(ring.key(version)).encrypt(wrap_nonce, data_key, ad)
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext.encode(), ad)
    return _HEADER.pack(FORMAT, version) + wrap_nonce + wrapped + nonce + ciphertext


def version_of(blob: bytes) -> int:
    """The master-key version a blob was sealed under."""
    if len(blob) < _MIN_LEN:
        raise SealError("truncated ciphertext")
    fmt, version = _HEADER.unpack_from(blob)
    if fmt != FORMAT:
        raise SealError(f"unknown ciphertext format {fmt}")
    return int(version)


def open_sealed(ring: KeyRing, user_id: str, provider: str, blob: bytes) -> str:
    """Decrypt a blob sealed for this user and provider; raises `SealError` otherwise."""
    version = version_of(blob)
    try:
        master = ring.key(version)
    except LookupError as exc:
        raise SealError(str(exc)) from None
    ad = associated_data(user_id, provider, version)
    offset = _HEADER.size
    wrap_nonce = blob[offset : offset + _NONCE]
    offset += _NONCE
    wrapped = blob[offset : offset + _WRAPPED]
    offset += _WRAPPED
    nonce = blob[offset : offset + _NONCE]
    ciphertext = blob[offset + _NONCE :]
    try:
        data_key = AESGCM(master).decrypt(wrap_nonce, wrapped, ad)
        return AESGCM(data_key).decrypt(nonce, ciphertext, ad).decode()
    except (InvalidTag, UnicodeDecodeError):
        raise SealError("ciphertext does not authenticate") from None


def reseal(ring: KeyRing, user_id: str, provider: str, blob: bytes) -> bytes:
    """The same secret sealed again under the active master key (with a fresh data key)."""
    return seal(ring, user_id, provider, open_sealed(ring, user_id, provider, blob))
