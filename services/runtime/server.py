"""The gRPC server every service runs: its servicers plus `grpc.health.v1`, reflection and a clean stop.

Every call passes the service's access rules first (`access.Guard`): its caller must prove who it is
and be allowed by the method's rule; health and reflection stay open.

Health is truthful: the service reports NOT_SERVING until its readiness check passes and whenever it
fails afterwards (a database that stops answering), and again from the moment SIGTERM arrives, so
load balancers move traffic away while in-flight calls finish within the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.runtime import identity, metrics, tracing
from services.runtime.access import Access, Authenticate, Guard, Refusal
from services.runtime.settings import CommonSettings

log = logging.getLogger("tollgate.server")

SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.max_send_message_length", 32 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.so_reuseport", 0),
    # Clients reconnect every few minutes, so they find replicas added since (DNS is looked up again).
    ("grpc.max_connection_age_ms", 300_000),
    ("grpc.max_connection_age_grace_ms", 30_000),
]

Readiness = Callable[[], Awaitable[bool]]
Task = Callable[[], Coroutine[object, object, None]]


@dataclass
class Service:
    """What one process serves: its registered gRPC services, readiness and background work."""

    name: str
    settings: CommonSettings
    port: int
    register: Callable[[grpc.aio.Server], Sequence[str]]
    access: Sequence[Access] = ()  # who may call each method of the registered services
    verifier: identity.Verifier | None = None  # made from settings when not given
    users: Authenticate | None = None  # checks callers' own tg- keys, for rules that admit users
    on_refused: Refusal | None = None
    readiness: Readiness | None = None
    background: Sequence[Task] = ()
    on_drain: Sequence[Task] = ()  # at SIGTERM, before draining: end long-lived streams
    on_stop: Sequence[Task] = ()
    readiness_interval: float = 2.0
    health: health.aio.HealthServicer = field(default_factory=health.aio.HealthServicer)


async def _set_all(servicer: health.aio.HealthServicer, names: Sequence[str], serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", *names):
        await servicer.set(name, status)


async def _watch_readiness(service: Service, names: Sequence[str]) -> None:
    ready: bool | None = None
    while True:
        try:
            now = await asyncio.wait_for(service.readiness(), timeout=5) if service.readiness else True
        except Exception as exc:
            now = False
            if ready is not False:
                log.warning("readiness check failed: %s", exc)
        if now != ready:
            await _set_all(service.health, names, now)
            log.info("serving" if now else "not serving")
            ready = now
        await asyncio.sleep(service.readiness_interval)


def verifier(name: str, settings: CommonSettings, tables: Sequence[Access]) -> identity.Verifier:
    """The verifier of service `name`: the public keys of every caller its rules name.

    A service builds it first thing, so that a missing key stops start-up before any other work.
    """
    return identity.verifier_for(settings, name, {caller for table in tables for caller in table.callers()})


def guard(service: Service) -> Guard:
    """The access check of `service`."""
    if any(table.accepts_users() for table in service.access) and service.users is None:
        raise ValueError(f"{service.name}: a rule admits users' own keys but the service checks none")
    checker = service.verifier or verifier(service.name, service.settings, service.access)
    return Guard(service.access, checker, service.users, service.on_refused)


async def run(service: Service) -> None:
    """Serve until SIGTERM or SIGINT, then drain for `grace_seconds` and stop."""
    tracing.setup(service.name, service.settings)
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=[guard(service)])
    names = list(service.register(server))
    health_pb2_grpc.add_HealthServicer_to_server(service.health, server)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    address = f"{service.settings.host}:{service.port}"
    if server.add_insecure_port(address) == 0:
        raise SystemExit(f"tollgate: {service.name} cannot listen on {address}")
    await _set_all(service.health, names, False)
    metrics.serve(service.settings.host, getattr(service.settings, f"{service.name}_metrics_port", 0))
    await server.start()
    log.info("listening on %s", address)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    tasks = [asyncio.create_task(_watch_readiness(service, names))]
    tasks += [asyncio.create_task(job()) for job in service.background]
    waiter = asyncio.create_task(stop.wait())
    done = asyncio.create_task(server.wait_for_termination())
    await asyncio.wait({waiter, done}, return_when=asyncio.FIRST_COMPLETED)

    log.info("stopping: draining for up to %.0fs", service.settings.grace_seconds)
    tasks[0].cancel()
    await service.health.enter_graceful_shutdown()
    for job in service.on_drain:
        with contextlib.suppress(Exception):
            await job()
    await server.stop(service.settings.grace_seconds)
    for task in tasks:
        task.cancel()
    for task in (*tasks, waiter, done):
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    for job in service.on_stop:
        with contextlib.suppress(Exception):
            await job()
    log.info("stopped")


def main(build: Callable[[], Awaitable[Service]]) -> None:
    """Entry point of `python -m services.<name>`: build the service inside the loop and run it."""

    async def serve() -> None:
        await run(await build())

    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())
