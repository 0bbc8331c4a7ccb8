"""Envelope encryption: round trip, and every way a blob must refuse to open."""

from __future__ import annotations

import os

import pytest

from services.keyvault import envelope
from services.keyvault.masterkeys import KeyRing

SECRET = "sk-test-envelope-0123456789abcdef"


def test_round_trip(ring_v1: KeyRing) -> None:
    blob = envelope.seal(ring_v1, "alice", "openai", SECRET)
    assert SECRET.encode() not in blob
    assert envelope.version_of(blob) == 1
    assert envelope.open_sealed(ring_v1, "alice", "openai", blob) == SECRET


def test_fresh_data_key_per_secret(ring_v1: KeyRing) -> None:
    assert envelope.seal(ring_v1, "alice", "openai", SECRET) != envelope.seal(ring_v1, "alice", "openai", SECRET)


@pytest.mark.parametrize("offset", [1, 6, 20, 70, -1])
def test_tampered_ciphertext_fails(ring_v1: KeyRing, offset: int) -> None:
    blob = bytearray(envelope.seal(ring_v1, "alice", "openai", SECRET))
    blob[offset] ^= 0x01
    with pytest.raises(envelope.SealError):
        envelope.open_sealed(ring_v1, "alice", "openai", bytes(blob))


def test_truncated_ciphertext_fails(ring_v1: KeyRing) -> None:
    blob = envelope.seal(ring_v1, "alice", "openai", SECRET)
    with pytest.raises(envelope.SealError):
        envelope.open_sealed(ring_v1, "alice", "openai", blob[:40])


def test_wrong_user_fails(ring_v1: KeyRing) -> None:
    blob = envelope.seal(ring_v1, "alice", "openai", SECRET)
    with pytest.raises(envelope.SealError):
        envelope.open_sealed(ring_v1, "bob", "openai", blob)


def test_wrong_provider_fails(ring_v1: KeyRing) -> None:
    blob = envelope.seal(ring_v1, "alice", "openai", SECRET)
    with pytest.raises(envelope.SealError):
        envelope.open_sealed(ring_v1, "alice", "anthropic", blob)


def test_field_boundaries_are_unambiguous(ring_v1: KeyRing) -> None:
    blob = envelope.seal(ring_v1, "ab", "c", SECRET)
    with pytest.raises(envelope.SealError):
        envelope.open_sealed(ring_v1, "a", "bc", blob)


def test_wrong_master_key_fails(ring_v1: KeyRing) -> None:
    blob = envelope.seal(ring_v1, "alice", "openai", SECRET)
    other = KeyRing(keys={1: os.urandom(32)}, active=1)
    with pytest.raises(envelope.SealError):
        envelope.open_sealed(other, "alice", "openai", blob)


def test_unknown_master_key_version_fails(ring_v1: KeyRing) -> None:
    blob = envelope.seal(ring_v1, "alice", "openai", SECRET)
    newer = KeyRing(keys={2: os.urandom(32)}, active=2)
    with pytest.raises(envelope.SealError, match="v1"):
        envelope.open_sealed(newer, "alice", "openai", blob)


def test_relabelled_version_fails() -> None:
    ring = KeyRing(keys={2: os.urandom(32), 1: os.urandom(32)}, active=2)
    blob = bytearray(envelope.seal(ring, "alice", "openai", SECRET))
    blob[1:5] = (1).to_bytes(4, "big")
    with pytest.raises(envelope.SealError):
        envelope.open_sealed(ring, "alice", "openai", bytes(blob))


def test_reseal_moves_to_the_active_version(ring_v1: KeyRing) -> None:
    blob = envelope.seal(ring_v1, "alice", "openai", SECRET)
    rotated = KeyRing(keys={2: os.urandom(32), 1: ring_v1.keys[1]}, active=2)
    again = envelope.reseal(rotated, "alice", "openai", blob)
    assert envelope.version_of(again) == 2
    assert envelope.open_sealed(KeyRing(keys={2: rotated.keys[2]}, active=2), "alice", "openai", again) == SECRET
