"""Master-key sources: the versioned list, the seeds' Fernet key, the embedded key file; refusals."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from services.keyvault.masterkeys import KEY_FILE, MasterKeyError, load_keyring, parse_vault_keys


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def test_first_entry_encrypts_all_decrypt() -> None:
    k2, k1 = os.urandom(32), os.urandom(32)
    keys, active = parse_vault_keys(f"v2:{b64(k2)}, v1:{base64.b64encode(k1).decode()}")
    assert active == 2
    assert keys == {2: k2, 1: k1}


def test_unpadded_url_safe_keys_are_accepted() -> None:
    k = os.urandom(32)
    keys, _ = parse_vault_keys("v3:" + b64(k).rstrip("="))
    assert keys == {3: k}


@pytest.mark.parametrize(
    "value",
    ["", "nokey", "v1:short", "v0:" + b64(b"x" * 32), "v1:" + b64(b"a" * 32) + ",v1:" + b64(b"b" * 32)],
)
def test_bad_lists_are_refused(value: str) -> None:
    with pytest.raises(MasterKeyError) as info:
        parse_vault_keys(value)
    assert info.value.setting == "TOLLGATE_VAULT_KEYS"
    assert "a" * 10 not in str(info.value)


def test_fernet_key_is_version_one(tmp_path: Path) -> None:
    ring = load_keyring("", Fernet.generate_key().decode(), production=True, data_dir=tmp_path)
    assert ring.active == 1
    assert len(ring.keys[1]) == 32
    assert not (tmp_path / KEY_FILE).exists()


def test_fernet_key_joins_a_newer_list(tmp_path: Path) -> None:
    fernet = Fernet.generate_key().decode()
    alone = load_keyring("", fernet, production=True, data_dir=tmp_path)
    ring = load_keyring("v2:" + b64(os.urandom(32)), fernet, production=True, data_dir=tmp_path)
    assert ring.active == 2
    assert ring.keys[1] == alone.keys[1]


def test_fernet_key_conflicting_with_v1_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError) as info:
        load_keyring("v1:" + b64(os.urandom(32)), Fernet.generate_key().decode(), True, tmp_path)
    assert info.value.setting == "BYOK_ENCRYPTION_KEY"


def test_bad_fernet_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="BYOK_ENCRYPTION_KEY"):
        load_keyring("", "not-a-fernet-key", True, tmp_path)


def test_production_without_a_key_is_refused_with_the_command(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError) as info:
        load_keyring("", "", production=True, data_dir=tmp_path)
    assert info.value.setting == "TOLLGATE_VAULT_KEYS"
    assert "python -c" in info.value.why
    assert not (tmp_path / KEY_FILE).exists()


def test_embedded_generates_a_0600_key_file_once_and_reuses_it(tmp_path: Path) -> None:
    first = load_keyring("", "", production=False, data_dir=tmp_path)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_keyring("", "", production=False, data_dir=tmp_path)
    assert again == first
    assert path.read_text().startswith("v1:")


def test_embedded_key_file_is_not_used_when_keys_are_configured(tmp_path: Path) -> None:
    k = os.urandom(32)
    ring = load_keyring("v1:" + b64(k), "", production=False, data_dir=tmp_path)
    assert ring.keys == {1: k}
    assert not (tmp_path / KEY_FILE).exists()


def test_empty_key_file_is_refused_not_replaced(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text("")
    with pytest.raises(MasterKeyError, match="empty"):
        load_keyring("", "", production=False, data_dir=tmp_path)
    assert (tmp_path / KEY_FILE).read_text() == ""
