"""Provider health over HTTP: state and latency per provider; for admins a manual probe and maintenance.

The health service owns the state; these routes read it (`ListProviders`), run probes now (`CheckNow`),
hold a provider down or up (`SetMaintenance`) and list who did so (`ListMaintenance`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.gateway.edge import (
    aliased,
    edge,
    is_admin,
    json_response,
    query_limit,
    read_body,
    read_json,
    require_admin,
)
from services.gateway.openapi import extend, operation
from services.runtime.errors import DomainError
from services.runtime.provider_state import change, endpoint
from tollgate.health.v1 import health_pb2

# Seconds a manual check may take: every probe runs with the health service's own probe timeout.
_CHECK_TIMEOUT = 60.0
# Better first: a provider is as good as its best endpoint.
_RANK = {"healthy": 0, "degraded": 1, "unknown": 2, "down": 3}


def per_provider(states: Sequence[health_pb2.ProviderState], admin: bool = True) -> list[dict[str, Any]]:
    """Endpoints grouped by provider. Admins only see who holds a provider in maintenance, an endpoint's address
    and its last error (a provider's error text may repeat another user's request)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for state in states:
        shown = endpoint(state)
        if not admin:
            shown.pop("base_url")
            shown.pop("last_error")
            if shown["maintenance"] is not None:
                del shown["maintenance"]["by"]
        grouped.setdefault(state.provider, []).append(shown)
    providers = []
    for name, endpoints in grouped.items():
        best = min(endpoints, key=lambda e: _RANK[e["state"]])
        providers.append(
            {
                "id": name,
                "object": "provider",
                "state": best["state"],
                "healthy": best["state"] == "healthy",
                **{k: best[k] for k in ("latency_ms", "p50_ms", "p90_ms", "p99_ms", "last_checked_unix_ms")},
                # a hold is per provider: every endpoint carries the same one
                "maintenance": endpoints[0]["maintenance"],
                "endpoints": endpoints,
            }
        )
    return providers


def overall(providers: Sequence[dict[str, Any]]) -> str:
    states = {p["state"] for p in providers}
    if not states or states == {"unknown"}:
        return "unknown"
    if states == {"healthy"}:
        return "healthy"
    return "degraded" if states & {"healthy", "degraded"} else "down"


async def _list(request: Request) -> list[dict[str, Any]]:
    gateway = edge(request)
    principal = await gateway.principal(request)
    reply: health_pb2.ListProvidersReply = await gateway.call(
        gateway.clients.health.ListProviders, health_pb2.ListProvidersRequest(), "health"
    )
    return per_provider(reply.providers, is_admin(principal))


async def list_providers(request: Request) -> Response:
    return json_response({"object": "list", "data": await _list(request)})


async def providers_health(request: Request) -> Response:
    providers = await _list(request)
    return json_response({"status": overall(providers), "providers": providers})


def _wanted(body: bytes) -> list[str]:
    if not body.strip():
        return []
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise DomainError("invalid_request", "The request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise DomainError("invalid_request", "The request body must be a JSON object")
    named = payload.get("providers", [payload["provider"]] if "provider" in payload else [])
    if not isinstance(named, list) or not all(isinstance(p, str) and p for p in named):
        raise DomainError("invalid_request", "'providers' must be a list of provider ids", "providers")
    return named


async def check_now(request: Request) -> Response:
    gateway = edge(request)
    principal = await gateway.principal(request)
    require_admin(principal)
    message = health_pb2.CheckNowRequest(providers=_wanted(await read_body(request)))
    reply: health_pb2.ListProvidersReply = await gateway.call(
        gateway.clients.health.CheckNow, message, "health", timeout=_CHECK_TIMEOUT
    )
    providers = per_provider(reply.providers)
    return json_response({"status": overall(providers), "checked": len(reply.providers), "providers": providers})


async def set_maintenance(request: Request) -> Response:
    gateway = edge(request)
    require_admin(await gateway.principal(request))
    _, payload = await read_json(request)
    unknown = sorted(set(payload) - {"state", "reason"})
    if unknown:
        raise DomainError("invalid_request", f"Unknown field '{unknown[0]}': send state and reason", unknown[0])
    state, reason = payload.get("state"), payload.get("reason", "")
    if not isinstance(state, str):
        raise DomainError("invalid_request", "'state' must be one of down, up, auto", "state")
    if not isinstance(reason, str):
        raise DomainError("invalid_request", "'reason' must be a string", "reason")
    message = health_pb2.SetMaintenanceRequest(provider=request.path_params["provider"], state=state, reason=reason)
    reply: health_pb2.ListProvidersReply = await gateway.call(gateway.clients.health.SetMaintenance, message, "health")
    [provider] = per_provider(reply.providers)
    return json_response(provider)


async def maintenance_log(request: Request) -> Response:
    gateway = edge(request)
    require_admin(await gateway.principal(request))
    message = health_pb2.ListMaintenanceRequest(
        provider=request.query_params.get("provider", ""), limit=query_limit(request)
    )
    reply: health_pb2.ListMaintenanceReply = await gateway.call(
        gateway.clients.health.ListMaintenance, message, "health"
    )
    return json_response(
        {"object": "list", "data": [{"object": "maintenance.change", **change(r)} for r in reply.records]}
    )


extend("/v1/providers", True, {"get": operation("Providers with their health state and latency percentiles")})
extend("/v1/providers/health", True, {"get": operation("Provider health: overall status and every endpoint")})
_CHECK = {"post": operation('Probe providers now (admin); body {"providers": [...]} or empty for all')}
extend("/v1/admin/providers/health/check", False, _CHECK)
extend("/api/v1/admin/llm/health/check", False, _CHECK)
_HOLD = 'Hold a provider down or up, or hand it back to probes (admin); body {"state": "down"|"up"|"auto", "reason"}'
extend("/v1/providers/{provider}/maintenance", False, {"post": operation(_HOLD)})
extend("/v1/admin/providers/maintenance", False, {"get": operation("Who held which provider down or up (admin)")})

ROUTES = [
    *aliased("/providers", list_providers, ["GET"]),
    *aliased("/providers/health", providers_health, ["GET"]),
    Route("/v1/admin/providers/health/check", check_now, methods=["POST"]),
    Route("/api/v1/admin/llm/health/check", check_now, methods=["POST"]),
    Route("/v1/providers/{provider}/maintenance", set_maintenance, methods=["POST"]),
    Route("/v1/admin/providers/maintenance", maintenance_log, methods=["GET"]),
]
