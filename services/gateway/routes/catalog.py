"""The model catalog's admin route: reload the router's catalog file without a restart.

The router validates the file and refuses a bad one naming the offending entry (the one in force stays);
this route only relays the call and forgets this gateway's cached model list, so `/v1/models` shows the
new catalog at once here (other replicas within `models_cache_ttl`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.gateway.edge import edge, json_response, require_admin
from services.gateway.openapi import extend, operation
from services.gateway.routes.openai import forget_models
from tollgate.router.v1 import router_pb2


async def reload_catalog(request: Request) -> Response:
    gateway = edge(request)
    principal = await gateway.principal(request)
    require_admin(principal)
    message = router_pb2.ReloadCatalogRequest(actor=f"user {principal.user_id} (key {principal.key_id})")
    reply: router_pb2.ReloadCatalogReply = await gateway.call(gateway.clients.router.ReloadCatalog, message, "router")
    forget_models()
    return json_response(
        {
            "object": "catalog.reload",
            "models": reply.models,
            "providers": reply.providers,
            "sha256": reply.digest,
            "changed": reply.changed,
        }
    )


extend(
    "/v1/admin/catalog/reload",
    False,
    {"post": operation("Reload the router's catalog file (admin); a bad catalog is refused naming the entry")},
)

ROUTES = [Route("/v1/admin/catalog/reload", reload_catalog, methods=["POST"])]
