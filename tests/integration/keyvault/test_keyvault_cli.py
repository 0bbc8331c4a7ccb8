"""`tollgate keys` and `tollgate vault` through their argparse registration, against a keyvault over gRPC."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import pytest

from services.cli import keys, vault
from tests import identities
from tollgate.keyvault.v1 import keyvault_pb2 as pb


@pytest.fixture(autouse=True)
def operator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI signs its calls as the operator, as `tollgate` does with TOLLGATE_OPERATOR_IDENTITY_KEY."""
    monkeypatch.setenv("TOLLGATE_OPERATOR_IDENTITY_KEY", identities.SECRETS["operator"])


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="tollgate")
    sub = root.add_subparsers(dest="command", required=True)
    keys.register(sub)
    vault.register(sub)
    return root


async def run(address: str, *argv: str) -> int:
    args = parser().parse_args([*argv, "--keyvault-addr", address])
    return int(await asyncio.to_thread(args.func, args))


async def test_keys_create_list_revoke(keyvault: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(keyvault.address, "keys", "create", "--user", "carol", "--scope", "user", "--json") == 0
    created = json.loads(capsys.readouterr().out)
    assert created["api_key"].startswith("tg-") and created["user_id"] == "carol"
    principal = await keyvault.stub.Authenticate(pb.AuthenticateRequest(api_key=created["api_key"]))
    assert principal.user_id == "carol"

    assert await run(keyvault.address, "keys", "list", "--user", "carol") == 0
    listing = capsys.readouterr().out
    assert created["key_id"] in listing and created["api_key"] not in listing

    assert await run(keyvault.address, "keys", "revoke", created["key_id"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert await run(keyvault.address, "keys", "revoke", "ak_missing") == 1
    assert "no such API key" in capsys.readouterr().err


async def test_vault_status_rotate_retire(keyvault: Any, capsys: pytest.CaptureFixture[str]) -> None:
    await keyvault.stub.PutProviderKey(
        pb.PutProviderKeyRequest(user_id="carol", provider="openai", api_key="sk-carol-0123456789abcdef")
    )
    assert await run(keyvault.address, "vault", "status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["active_version"] == 1 and status["versions"][0]["rows"] == 1
    assert await run(keyvault.address, "vault", "rotate") == 0
    assert "every provider key is under v1" in capsys.readouterr().out
    assert await run(keyvault.address, "vault", "retire", "v1") == 1
    assert "active master key" in capsys.readouterr().err
