"""`python -m services.credits` serves the ledger; `python -m services.credits migrate` upgrades the schema, exits."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.credits import metrics
from services.credits.access import ACCESS
from services.credits.holds import sweep
from services.credits.ledger import Ledger, Policy
from services.credits.outbox import Destination, Dispatcher
from services.credits.servicer import CreditsServicer
from services.credits.settings import CreditsSettings
from services.runtime import logging as tlogging
from services.runtime import server
from services.runtime.db import create_engine, migrate, ping
from services.runtime.settings import fail, load
from tollgate.credits.v1 import credits_pb2, credits_pb2_grpc

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "credits_alembic_version"


def policy_of(settings: CreditsSettings) -> Policy:
    return Policy(
        default_grant_micro=settings.default_grant_micro,
        low_threshold_micro=settings.low_threshold_micro,
        default_tier=settings.credits_default_tier,
        hold_ttl_seconds=settings.credits_hold_ttl_seconds,
        max_hold_ttl_seconds=settings.credits_max_hold_ttl_seconds,
        billing_code=settings.credits_billing_code,
    )


def dispatcher_of(settings: CreditsSettings, engine: AsyncEngine) -> Dispatcher:
    billing_headers = {}
    if settings.credits_budget_webhook_secret:
        tlogging.register_secret(settings.credits_budget_webhook_secret)
    if settings.credits_billing_api_key:
        tlogging.register_secret(settings.credits_billing_api_key)
        billing_headers["authorization"] = f"Bearer {settings.credits_billing_api_key}"
    return Dispatcher(
        engine,
        {
            "usage": Destination(settings.credits_billing_url, billing_headers),
            "low_balance": Destination(settings.credits_alert_url, {}),
            "budget_alert": Destination(
                settings.credits_budget_webhook_url, {}, secret=settings.credits_budget_webhook_secret
            ),
        },
        batch=settings.credits_outbox_batch,
        max_backoff_seconds=settings.credits_outbox_max_backoff_seconds,
        timeout_seconds=settings.credits_outbox_timeout_seconds,
    )


def check(settings: CreditsSettings) -> None:
    url = settings.database_url()
    if settings.production and not url.startswith(("postgres://", "postgresql")):
        fail("CREDITS_DATABASE_URL", "production needs a postgresql:// URL")
    if settings.credits_budget_webhook_url and not settings.credits_budget_webhook_secret:
        fail("CREDITS_BUDGET_WEBHOOK_SECRET", "is required when TOLLGATE_CREDITS_BUDGET_WEBHOOK_URL is set")
    for name in ("credits_billing_url", "credits_alert_url", "credits_budget_webhook_url"):
        value = getattr(settings, name)
        if value and not value.startswith(("http://", "https://")):
            fail(name.upper(), "must be an http:// or https:// URL")
    if (
        settings.credits_hold_ttl_seconds <= 0
        or settings.credits_max_hold_ttl_seconds < settings.credits_hold_ttl_seconds
    ):
        fail("CREDITS_HOLD_TTL_SECONDS", "must be positive and at most TOLLGATE_CREDITS_MAX_HOLD_TTL_SECONDS")


async def build(settings: CreditsSettings) -> server.Service:
    verifier = server.verifier("credits", settings, [ACCESS])
    engine = create_engine(settings.database_url(), settings.credits_pool_size)
    await migrate(engine, MIGRATIONS, VERSION_TABLE)
    ledger = Ledger(engine, policy_of(settings))
    dispatcher = dispatcher_of(settings, engine)

    def register(srv: grpc.aio.Server) -> Sequence[str]:
        credits_pb2_grpc.add_CreditsServicer_to_server(CreditsServicer(ledger), srv)
        return [credits_pb2.DESCRIPTOR.services_by_name["Credits"].full_name]

    return server.Service(
        name="credits",
        settings=settings,
        port=settings.credits_port,
        register=register,
        access=[ACCESS],
        verifier=verifier,
        readiness=partial(ping, engine),
        background=[
            partial(sweep, ledger, settings.credits_sweep_interval_seconds, settings.credits_sweep_batch),
            partial(dispatcher.run, settings.credits_outbox_interval_seconds),
            partial(
                metrics.watch,
                engine,
                sorted(dispatcher.destinations),
                settings.credits_metrics_interval_seconds,
                settings.credits_reconcile_interval_seconds,
            ),
        ],
        on_stop=[dispatcher.close, ledger.close, engine.dispose],
    )


async def run_migrations(settings: CreditsSettings) -> None:
    engine = create_engine(settings.database_url(), 1)
    try:
        await migrate(engine, MIGRATIONS, VERSION_TABLE)
    finally:
        await engine.dispose()


def main(argv: Sequence[str] = sys.argv[1:]) -> None:
    settings = load(CreditsSettings)
    tlogging.configure("credits", settings.log_level, settings.log_format)
    check(settings)
    if list(argv) == ["migrate"]:
        asyncio.run(run_migrations(settings))
        return
    if argv:
        sys.exit("usage: python -m services.credits [migrate]")

    async def built() -> server.Service:
        return await build(settings)

    server.main(built)


if __name__ == "__main__":
    main()
