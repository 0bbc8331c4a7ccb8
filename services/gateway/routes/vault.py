"""The key vault's operator views over HTTP, for admins: master-key status and the audit log.

Thin relays of keyvault's `VaultStatus` and `ListAuditEvents`; the audit log holds fingerprints
(keyed hash prefixes), never a key, so it is shown as it is.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.gateway.edge import edge, json_response, query_limit, require_admin
from services.gateway.openapi import extend, operation, query
from tollgate.keyvault.v1 import keyvault_pb2


async def vault_status(request: Request) -> Response:
    gateway = edge(request)
    require_admin(await gateway.principal(request))
    reply: keyvault_pb2.VaultStatusReply = await gateway.call(
        gateway.clients.keyvault.VaultStatus, keyvault_pb2.VaultStatusRequest(), "keyvault"
    )
    versions = [
        {
            "version": v.version,
            "rows": v.rows,
            "active": v.active,
            "configured": v.configured,
            "retired_at": v.retired_unix_ms // 1000 or None,
        }
        for v in reply.versions
    ]
    return json_response(
        {"object": "vault.status", "active_version": reply.active_version, "total": reply.total, "versions": versions}
    )


async def audit_events(request: Request) -> Response:
    gateway = edge(request)
    require_admin(await gateway.principal(request))
    message = keyvault_pb2.ListAuditEventsRequest(
        user_id=request.query_params.get("user", ""), limit=query_limit(request)
    )
    reply: keyvault_pb2.ListAuditEventsReply = await gateway.call(
        gateway.clients.keyvault.ListAuditEvents, message, "keyvault"
    )
    data = [
        {
            "object": "audit.event",
            "at": e.at_unix_ms / 1000,
            "actor": e.actor,
            "action": e.action,
            "user_id": e.user_id,
            "key_id": e.key_id,
            "fingerprint": e.fingerprint,
            "outcome": e.outcome,
            "detail": e.detail,
        }
        for e in reply.events
    ]
    return json_response({"object": "list", "data": data})


extend("/v1/admin/vault/status", False, {"get": operation("Master-key versions and the rows under each (admin)")})
extend(
    "/v1/admin/audit",
    False,
    {
        "get": operation(
            "The key vault's audit log, newest first (admin)",
            params=[query("user", "only this user's events"), query("limit", "events, 1-1000", "integer")],
        )
    },
)

ROUTES = [
    Route("/v1/admin/vault/status", vault_status, methods=["GET"]),
    Route("/v1/admin/audit", audit_events, methods=["GET"]),
]
