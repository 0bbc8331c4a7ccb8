"""Provider health over HTTP: state and latency per provider, and a manual probe for admins.

The health service owns the state; these routes read it (`ListProviders`) or run probes now (`CheckNow`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.gateway.edge import aliased, edge, json_response, read_body, require_admin
from services.gateway.openapi import extend, operation
from services.runtime.errors import DomainError
from tollgate.health.v1 import health_pb2

# Seconds a manual check may take: every probe runs with the health service's own probe timeout.
_CHECK_TIMEOUT = 60.0
# Better first: a provider is as good as its best endpoint.
_RANK = {"healthy": 0, "degraded": 1, "unknown": 2, "down": 3}


def _state(value: int) -> str:
    return health_pb2.State.Name(value).removeprefix("STATE_").lower()


def endpoint(state: health_pb2.ProviderState) -> dict[str, Any]:
    return {
        "provider": state.provider,
        "base_url": state.base_url,
        "state": _state(state.state),
        "latency_ms": round(state.latency_ms, 1),
        "p50_ms": round(state.p50_ms, 1),
        "p90_ms": round(state.p90_ms, 1),
        "p99_ms": round(state.p99_ms, 1),
        "last_checked_unix_ms": state.last_checked_unix_ms,
        "consecutive_failures": state.consecutive_failures,
        "ejected": state.ejected,
        "ejected_until_unix_ms": state.ejected_until_unix_ms,
        "ejections": state.ejections,
        "last_failure_unix_ms": state.last_failure_unix_ms,
        "last_error": state.last_error,
    }


def per_provider(states: Sequence[health_pb2.ProviderState]) -> list[dict[str, Any]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for state in states:
        grouped.setdefault(state.provider, []).append(endpoint(state))
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


async def _list(request: Request) -> list[health_pb2.ProviderState]:
    gateway = edge(request)
    await gateway.principal(request)
    reply: health_pb2.ListProvidersReply = await gateway.call(
        gateway.clients.health.ListProviders, health_pb2.ListProvidersRequest(), "health"
    )
    return list(reply.providers)


async def list_providers(request: Request) -> Response:
    return json_response({"object": "list", "data": per_provider(await _list(request))})


async def providers_health(request: Request) -> Response:
    providers = per_provider(await _list(request))
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


extend("/v1/providers", True, {"get": operation("Providers with their health state and latency percentiles")})
extend("/v1/providers/health", True, {"get": operation("Provider health: overall status and every endpoint")})
_CHECK = {"post": operation('Probe providers now (admin); body {"providers": [...]} or empty for all')}
extend("/v1/admin/providers/health/check", False, _CHECK)
extend("/api/v1/admin/llm/health/check", False, _CHECK)

ROUTES = [
    *aliased("/providers", list_providers, ["GET"]),
    *aliased("/providers/health", providers_health, ["GET"]),
    Route("/v1/admin/providers/health/check", check_now, methods=["POST"]),
    Route("/api/v1/admin/llm/health/check", check_now, methods=["POST"]),
]
