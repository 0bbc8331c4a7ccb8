"""Rotation as an operator runs it: restart with a new active key, `tollgate vault rotate` (interrupted, then
resumed), status, retire, and a restart without the retired key — all over gRPC."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from services.cli.vault import rotate_all
from tests.conftest import free_port
from tollgate.keyvault.v1 import keyvault_pb2 as pb

SECRET = "sk-rotation-0123456789abcdefghijklmn"
N = 9


def vault_keys_with_new(old: str, version: int) -> str:
    import base64
    import os

    return f"v{version}:{base64.urlsafe_b64encode(os.urandom(32)).decode()},{old}"


async def test_rotate_interrupt_resume_retire(start_keyvault: Any) -> None:
    first = await start_keyvault()
    for i in range(N):
        await first.stub.PutProviderKey(
            pb.PutProviderKeyRequest(user_id=f"user{i}", provider="openai", api_key=f"{SECRET}{i}")
        )

    # Step 1: every replica learns v2 (still encrypting with v1); step 2: v2 goes first and encrypts.
    rotated_keys = vault_keys_with_new(first.settings.vault_keys, 2)
    new_key, old_key = rotated_keys.split(",")
    old_replica = await start_keyvault(vault_keys=f"{old_key},{new_key}")
    second = await start_keyvault(vault_keys=rotated_keys)
    status = await second.stub.VaultStatus(pb.VaultStatusRequest())
    assert status.active_version == 2
    assert {v.version: v.rows for v in status.versions} == {2: 0, 1: N}

    calls: list[tuple[int, int]] = []

    def interrupt_after_first_batch(done: int, total: int) -> None:
        calls.append((done, total))
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await rotate_all(second.stub, 4, interrupt_after_first_batch)
    assert calls == [(0, N), (4, N)]
    halfway = await second.stub.VaultStatus(pb.VaultStatusRequest())
    assert {v.version: v.rows for v in halfway.versions} == {2: 4, 1: N - 4}

    # Traffic keeps flowing through a replica not yet restarted for step 2: it reads both versions.
    for i in (0, N - 1):
        old_read = await old_replica.router.GetProviderKey(
            pb.GetProviderKeyRequest(user_id=f"user{i}", provider="openai")
        )
        assert old_read.api_key == f"{SECRET}{i}"
    await old_replica.stub.PutProviderKey(
        pb.PutProviderKeyRequest(user_id="user0", provider="openai", api_key=f"{SECRET}0")
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await second.stub.RetireMasterKey(pb.RetireMasterKeyRequest(version=1))
    assert err.value.code() is grpc.StatusCode.ABORTED

    progress: list[tuple[int, int]] = []
    final = await rotate_all(second.stub, 4, lambda done, total: progress.append((done, total)))
    assert (final.remaining, final.total, final.active_version) == (0, N, 2)
    assert progress[-1] == (N - 3, N - 3)  # user0's row, rewritten under v1 by the old replica, moved again

    retired = await second.stub.RetireMasterKey(pb.RetireMasterKeyRequest(version=1, actor="ops"))
    assert retired.version == 1 and retired.retired_unix_ms > 0

    third = await start_keyvault(vault_keys=new_key)
    for i in range(N):
        secret = await third.router.GetProviderKey(pb.GetProviderKeyRequest(user_id=f"user{i}", provider="openai"))
        assert secret.api_key == f"{SECRET}{i}"
    status = await third.stub.VaultStatus(pb.VaultStatusRequest())
    assert [(v.version, v.rows, v.configured, v.retired_unix_ms > 0) for v in status.versions] == [
        (2, N, True, False),
        (1, 0, False, True),
    ]


async def test_start_without_a_key_that_rows_need_is_refused(start_keyvault: Any) -> None:
    first = await start_keyvault()
    await first.stub.PutProviderKey(pb.PutProviderKeyRequest(user_id="alice", provider="openai", api_key=SECRET))
    with pytest.raises(SystemExit) as exit_info:
        await start_keyvault(vault_keys=vault_keys_with_new("", 2).rstrip(","), keyvault_port=free_port())
    message = str(exit_info.value.code)
    assert "TOLLGATE_VAULT_KEYS" in message and "v1" in message
    assert "\n" not in message
    await asyncio.sleep(0)
