"""A keyvault served over real gRPC on a free port, on SQLite and on PostgreSQL, behind its access rules.

`stub` calls as the gateway acting for an admin (everything but plaintext provider keys); `router` as the
router, the one caller of `GetProviderKey`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from services.keyvault.access import ACCESS
from services.keyvault.bootstrap import Keyvault, open_keyvault
from services.keyvault.settings import KeyvaultSettings
from tests import identities
from tests.conftest import free_port
from tollgate.keyvault.v1 import keyvault_pb2_grpc


@dataclass
class RunningKeyvault:
    address: str
    stub: keyvault_pb2_grpc.KeyVaultAsyncStub
    router: keyvault_pb2_grpc.KeyVaultAsyncStub
    vault: Keyvault
    settings: KeyvaultSettings


def vault_keys(*versions: int) -> str:
    return ",".join(f"v{v}:{base64.urlsafe_b64encode(os.urandom(32)).decode()}" for v in versions)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def keyvault_settings(request: pytest.FixtureRequest, tmp_path: Path) -> KeyvaultSettings:
    url = str(request.getfixturevalue("postgres_url")) if request.param == "postgres" else ""
    return KeyvaultSettings(
        data_dir=tmp_path,
        keyvault_database_url=url,
        keyvault_port=free_port(),
        vault_keys=vault_keys(1),
        key_pepper="pepper-for-tests-0123456789",
    )


async def serve(settings: KeyvaultSettings) -> tuple[grpc.aio.Server, Keyvault]:
    vault = await open_keyvault(settings)
    server = grpc.aio.server(interceptors=[identities.guard(ACCESS, on_refused=vault.servicer.refused)])
    keyvault_pb2_grpc.add_KeyVaultServicer_to_server(vault.servicer, server)
    server.add_insecure_port(f"127.0.0.1:{settings.keyvault_port}")
    await server.start()
    return server, vault


StartKeyvault = Callable[..., Awaitable[RunningKeyvault]]


@pytest.fixture
async def start_keyvault(keyvault_settings: KeyvaultSettings) -> AsyncIterator[StartKeyvault]:
    """Start a keyvault on the test's database; keyword arguments override settings (a restart with new keys)."""
    running: list[tuple[grpc.aio.Server, list[Any], Keyvault]] = []

    async def start(**overrides: Any) -> RunningKeyvault:
        fields = keyvault_settings.model_dump(exclude={"byok_encryption_key"})
        settings = KeyvaultSettings(**{**fields, "keyvault_port": free_port(), **overrides})
        server, vault = await serve(settings)
        address = f"127.0.0.1:{settings.keyvault_port}"
        gateway, router = identities.aio_channel(address, "gateway"), identities.aio_channel(address, "router")
        running.append((server, [gateway, router], vault))
        stub = cast(
            "keyvault_pb2_grpc.KeyVaultAsyncStub", keyvault_pb2_grpc.KeyVaultStub(identities.admin_gateway(gateway))
        )
        as_router = cast("keyvault_pb2_grpc.KeyVaultAsyncStub", keyvault_pb2_grpc.KeyVaultStub(router))
        return RunningKeyvault(address, stub, as_router, vault, settings)

    yield start
    for server, channels, vault in reversed(running):
        for chan in channels:
            await chan.close()
        await server.stop(None)
        await vault.engine.dispose()


@pytest.fixture
async def keyvault(start_keyvault: StartKeyvault) -> RunningKeyvault:
    return await start_keyvault()
