"""`python -m services.health`: serve ProviderHealth; `python -m services.health migrate`: migrate and exit."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc

from services.health.access import ACCESS
from services.health.monitor import HealthMonitor
from services.health.probes import Prober
from services.health.servicer import ProviderHealthServicer
from services.health.settings import HealthSettings, load_settings
from services.health.store import HealthStore
from services.health.targets import CatalogError, load_targets
from services.runtime import server
from services.runtime.db import create_engine, migrate, ping
from services.runtime.logging import configure
from services.runtime.server import Service, main
from services.runtime.settings import fail
from tollgate.health.v1 import health_pb2, health_pb2_grpc

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "health_alembic_version"


async def build_service(settings: HealthSettings) -> Service:
    verifier = server.verifier("health", settings, [ACCESS])
    try:
        targets = load_targets(settings.catalog)
    except CatalogError as exc:
        fail("CATALOG", str(exc))
    engine = create_engine(settings.database_url())
    await migrate(engine, MIGRATIONS, VERSION_TABLE)
    prober = Prober(settings.health_probe_timeout)
    monitor = HealthMonitor(settings, HealthStore(engine), targets, prober)
    await monitor.start()

    def register(server: grpc.aio.Server) -> list[str]:
        health_pb2_grpc.add_ProviderHealthServicer_to_server(ProviderHealthServicer(monitor), server)
        return [health_pb2.DESCRIPTOR.services_by_name["ProviderHealth"].full_name]

    async def ready() -> bool:
        return await ping(engine)

    async def end_streams() -> None:
        # Routers reconnect to another replica instead of holding the drain open.
        monitor.broadcaster.close()

    return Service(
        name="health",
        settings=settings,
        port=settings.health_port,
        register=register,
        access=[ACCESS],
        verifier=verifier,
        readiness=ready,
        background=[monitor.run],
        on_drain=[end_streams],
        on_stop=[monitor.aclose, engine.dispose],
    )


async def _migrate_only(settings: HealthSettings) -> None:
    engine = create_engine(settings.database_url())
    try:
        await migrate(engine, MIGRATIONS, VERSION_TABLE)
    finally:
        await engine.dispose()


def run() -> None:
    settings = load_settings()
    configure("health", settings.log_level, settings.log_format)
    if sys.argv[1:] == ["migrate"]:
        asyncio.run(_migrate_only(settings))
        return
    if sys.argv[1:]:
        sys.exit("usage: python -m services.health [migrate]")

    async def build() -> Service:
        return await build_service(settings)

    main(build)


if __name__ == "__main__":
    run()
