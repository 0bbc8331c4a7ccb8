"""`python -m services.keyvault` serves the key vault; `python -m services.keyvault migrate` migrates and exits."""

from __future__ import annotations

import asyncio
import sys

from services.keyvault.access import ACCESS
from services.keyvault.bootstrap import MIGRATIONS, VERSION_TABLE, open_keyvault
from services.keyvault.settings import KeyvaultSettings
from services.runtime import db, server
from services.runtime.logging import configure
from services.runtime.server import Service, main
from services.runtime.settings import load
from tollgate.keyvault.v1 import keyvault_pb2, keyvault_pb2_grpc


async def build() -> Service:
    settings = load(KeyvaultSettings)
    configure("keyvault", settings.log_level, settings.log_format)
    verifier = server.verifier("keyvault", settings, [ACCESS])
    vault = await open_keyvault(settings)

    def register(server: object) -> list[str]:
        keyvault_pb2_grpc.add_KeyVaultServicer_to_server(vault.servicer, server)
        return [keyvault_pb2.DESCRIPTOR.services_by_name["KeyVault"].full_name]

    async def readiness() -> bool:
        return await db.ping(vault.engine)

    async def stop() -> None:
        for recorder in vault.last_used:
            await recorder.flush()
        await vault.engine.dispose()

    return Service(
        name="keyvault",
        settings=settings,
        port=settings.keyvault_port,
        register=register,
        access=[ACCESS],
        verifier=verifier,
        on_refused=vault.servicer.refused,
        readiness=readiness,
        background=[recorder.run for recorder in vault.last_used],
        on_stop=[stop],
    )


async def migrate_only() -> None:
    settings = load(KeyvaultSettings)
    configure("keyvault", settings.log_level, settings.log_format)
    engine = db.create_engine(settings.database_url())
    try:
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    if sys.argv[1:] == ["migrate"]:
        asyncio.run(migrate_only())
    elif sys.argv[1:]:
        sys.exit("usage: python -m services.keyvault [migrate]")
    else:
        main(build)
