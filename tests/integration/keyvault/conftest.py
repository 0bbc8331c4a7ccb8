"""A keyvault served over real gRPC on a free port, on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from services.keyvault.bootstrap import Keyvault, open_keyvault
from services.keyvault.settings import KeyvaultSettings
from tests.conftest import free_port
from tollgate.keyvault.v1 import keyvault_pb2_grpc

ROUTER_TOKEN = "router-token-for-tests-0123456789"


@dataclass
class RunningKeyvault:
    address: str
    stub: keyvault_pb2_grpc.KeyVaultAsyncStub
    vault: Keyvault
    settings: KeyvaultSettings
    router_metadata: tuple[tuple[str, str], ...] = (("x-tollgate-router-token", ROUTER_TOKEN),)


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
        router_token=ROUTER_TOKEN,
    )


async def serve(settings: KeyvaultSettings) -> tuple[grpc.aio.Server, Keyvault]:
    vault = await open_keyvault(settings)
    server = grpc.aio.server()
    keyvault_pb2_grpc.add_KeyVaultServicer_to_server(vault.servicer, server)
    server.add_insecure_port(f"127.0.0.1:{settings.keyvault_port}")
    await server.start()
    return server, vault


StartKeyvault = Callable[..., Awaitable[RunningKeyvault]]


@pytest.fixture
async def start_keyvault(keyvault_settings: KeyvaultSettings) -> AsyncIterator[StartKeyvault]:
    """Start a keyvault on the test's database; keyword arguments override settings (a restart with new keys)."""
    running: list[tuple[grpc.aio.Server, grpc.aio.Channel, Keyvault]] = []

    async def start(**overrides: Any) -> RunningKeyvault:
        fields = keyvault_settings.model_dump(exclude={"byok_encryption_key"})
        settings = KeyvaultSettings(**{**fields, "keyvault_port": free_port(), **overrides})
        server, vault = await serve(settings)
        address = f"127.0.0.1:{settings.keyvault_port}"
        chan = grpc.aio.insecure_channel(address)
        running.append((server, chan, vault))
        stub = cast("keyvault_pb2_grpc.KeyVaultAsyncStub", keyvault_pb2_grpc.KeyVaultStub(chan))
        return RunningKeyvault(address, stub, vault, settings)

    yield start
    for server, chan, vault in reversed(running):
        await chan.close()
        await server.stop(None)
        await vault.engine.dispose()


@pytest.fixture
async def keyvault(start_keyvault: StartKeyvault) -> RunningKeyvault:
    return await start_keyvault()
