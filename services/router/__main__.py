"""`python -m services.router`: load and validate the catalog, then serve the Router over gRPC."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import grpc

from services.router.access import ACCESS
from services.router.adapters.openai import OpenAIAdapter
from services.router.callers import Callers
from services.router.catalog import CatalogError
from services.router.catalog_source import CatalogSource, protect_keys, read
from services.router.clients import GrpcLedger, GrpcVault
from services.router.health_view import HealthView
from services.router.pipeline import Router, Settings
from services.router.servicer import RouterServicer
from services.router.settings import RouterSettings
from services.router.settlements import Settlements
from services.runtime import channels, identity, server
from services.runtime.authentication import Authenticator
from services.runtime.logging import configure
from services.runtime.ratelimit import Limiter, SharedCounters
from services.runtime.server import Service, main
from services.runtime.settings import fail
from services.runtime.settings import load as load_settings
from tollgate.router.v1 import router_pb2, router_pb2_grpc


async def build() -> Service:
    settings = load_settings(RouterSettings)
    log = configure("router", settings.log_level, settings.log_format)
    try:
        catalog, digest = read(settings.catalog)
    except CatalogError as exc:
        fail("CATALOG", f"{settings.catalog}: {exc}")
        raise
    protect_keys(catalog)
    level = settings.default_power_level.upper() or catalog.default_power_level
    if level not in catalog.policies:
        fail("DEFAULT_POWER_LEVEL", f"{level!r} is not one of {', '.join(catalog.policies)}")
    if settings.max_attempts < 1:
        fail("MAX_ATTEMPTS", "must be at least 1")
    identity.use(identity.signer_for(settings, identity.ROUTER, settings.router_identity_key))
    verifier = server.verifier("router", settings, [ACCESS])
    health = HealthView(
        lambda: channels.channel(settings.health_addr),
        settings.rpc_timeout_seconds,
        latency_report_seconds=settings.latency_report_seconds,
    )
    ledger = GrpcLedger(lambda: channels.channel(settings.credits_addr))
    settlements = Settlements(
        ledger,
        settings.settle_journal_dir or settings.data_dir / "router",
        settings.rpc_timeout_seconds,
        settings.settle_retry_max_seconds,
        settings.settle_journal_sync,
    )
    router = Router(
        catalog,
        Settings(
            default_power_level=level,
            max_attempts=settings.max_attempts,
            hold_ttl_seconds=settings.hold_ttl_seconds,
            hold_ttl_margin_seconds=settings.hold_ttl_margin_seconds,
            rpc_timeout=settings.rpc_timeout_seconds,
            byok_fallback_to_platform=settings.byok_fallback_to_platform,
            deployment_cooldown_seconds=settings.deployment_cooldown_seconds,
            settle_after_answer=settings.settle_after_answer,
        ),
        ledger,
        GrpcVault(lambda: channels.channel(settings.keyvault_addr), settings.byok_cache_ttl),
        health,
        adapters={"openai": OpenAIAdapter(settings.upstream_max_connections)},
        settlements=settlements,
    )
    source = CatalogSource(settings.catalog, router, digest)
    log.info(
        "catalog %s: %d models, %d providers, default power level %s",
        settings.catalog,
        len(catalog.models),
        len(catalog.providers),
        level,
    )

    # Callers with their own tg- key (the native gRPC API): checked by keyvault, limited like HTTP clients.
    keys = Authenticator(
        lambda: channels.channel(settings.keyvault_addr), settings.auth_cache_ttl, settings.rpc_timeout_seconds
    )
    counters = SharedCounters(settings.redis_url, settings.redis_prefix)
    callers = Callers(Limiter(settings, counters), settings.request_timeout_seconds)

    def register(server: grpc.aio.Server) -> Sequence[str]:
        router_pb2_grpc.add_RouterServicer_to_server(RouterServicer(router, callers, source), server)
        return [router_pb2.DESCRIPTOR.services_by_name["Router"].full_name]

    async def close() -> None:
        await settlements.drain(settings.rpc_timeout_seconds)
        await router.close()
        settlements.close()
        await counters.close()
        await channels.close_all()

    return Service(
        name="router",
        settings=settings,
        port=settings.router_port,
        register=register,
        access=[ACCESS],
        verifier=verifier,
        users=keys.principal,
        background=(health.watch, health.send_reports, settlements.repeat, source.on_sighup),
        on_stop=(close,),
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "migrate":
        sys.exit(0)  # the router owns no database
    main(build)
