"""Liveness, readiness and the seeds' health route: suitable for Kubernetes probes."""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.gateway.edge import edge, json_response
from services.gateway.openapi import openapi
from services.runtime.channels import channel

# The services a request cannot be served without.
_DEPENDENCIES = ("router", "keyvault", "credits")


async def _serving(address: str, timeout: float) -> bool:
    stub = health_pb2_grpc.HealthStub(channel(address))
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    except Exception:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def _dependencies(request: Request) -> dict[str, bool]:
    settings = edge(request).settings
    addresses = {name: getattr(settings, f"{name}_addr") for name in (*_DEPENDENCIES, "health")}
    states = await asyncio.gather(*(_serving(addr, 2.0) for addr in addresses.values()))
    return dict(zip(addresses, states, strict=True))


async def live(request: Request) -> Response:
    return json_response({"status": "ok"})


async def ready(request: Request) -> Response:
    services = await _dependencies(request)
    ok = all(services[name] for name in _DEPENDENCIES)
    return json_response({"status": "ready" if ok else "unavailable", "services": services}, 200 if ok else 503)


async def llm_health(request: Request) -> Response:
    """The seeds' `/api/v1/llm/health`: overall status plus whether the routing layer is connected."""
    services = await _dependencies(request)
    ok = all(services[name] for name in _DEPENDENCIES)
    return json_response(
        {"status": "healthy" if ok else "unhealthy", "litellm_connected": services["router"], "services": services},
        200 if ok else 503,
    )


ROUTES = [
    Route("/health", live, methods=["GET"]),
    Route("/health/live", live, methods=["GET"]),
    Route("/health/ready", ready, methods=["GET"]),
    Route("/api/v1/llm/health", llm_health, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
