"""Gateway API keys over HTTP: admins create (the key is shown once), list (masked), revoke; users list their own.

keyvault owns the keys; these routes check the caller is an admin and relay, acting for that admin
(keyvault accepts these calls from the gateway only when it says it acts for an admin key). A revoked key keeps
working for at most the gateway's authentication cache TTL (`TOLLGATE_AUTH_CACHE_TTL`, 5 s by default).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.gateway.edge import edge, json_response, read_json, require_admin
from services.gateway.openapi import extend, operation, path_param, query
from services.runtime.errors import DomainError
from tollgate.keyvault.v1 import keyvault_pb2


def key_json(info: keyvault_pb2.ApiKeyInfo) -> dict[str, Any]:
    return {
        "id": info.key_id,
        "object": "api_key",
        "user_id": info.user_id,
        "name": info.name,
        "prefix": info.prefix,
        "scopes": list(info.scopes),
        "created_at": info.created_unix_ms // 1000,
        "expires_at": info.expires_unix_ms // 1000 or None,
        "revoked_at": info.revoked_unix_ms // 1000 or None,
        "last_used_at": info.last_used_unix_ms // 1000 or None,
        "rpm_limit": info.rpm_limit or None,
        "tpm_limit": info.tpm_limit or None,
    }


# What the key's protobuf fields hold: int32 limits, an int64 expiry in milliseconds (year 9999 at most).
_INT32 = 2**31 - 1
_LAST_SECOND = 253_402_300_799


def _int(payload: dict[str, Any], name: str, high: int) -> int:
    value = payload.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
        raise DomainError("invalid_request", f"'{name}' must be a number from 0 to {high}", name)
    return int(value)


def _create_request(payload: dict[str, Any], actor: str) -> keyvault_pb2.CreateApiKeyRequest:
    user_id = payload.get("user_id") or payload.get("user")
    if not isinstance(user_id, str) or not user_id:
        raise DomainError("invalid_request", "'user_id' is required", "user_id")
    scopes = payload.get("scopes", ["user"])
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise DomainError("invalid_request", "'scopes' must be a list of 'user' and 'admin'", "scopes")
    name = payload.get("name", "")
    if not isinstance(name, str):
        raise DomainError("invalid_request", "'name' must be a string", "name")
    expires_ms = _int(payload, "expires_at", _LAST_SECOND) * 1000
    if days := _int(payload, "expires_in_days", _LAST_SECOND // 86400):
        expires_ms = int((time.time() + days * 86400) * 1000)
    return keyvault_pb2.CreateApiKeyRequest(
        user_id=user_id,
        scopes=scopes,
        name=name,
        expires_unix_ms=expires_ms,
        rpm_limit=_int(payload, "rpm_limit", _INT32),
        tpm_limit=_int(payload, "tpm_limit", _INT32),
        actor=actor,
    )


async def create_key(request: Request) -> Response:
    gateway = edge(request)
    principal = await gateway.principal(request)
    require_admin(principal)
    _body, payload = await read_json(request)
    reply: keyvault_pb2.CreateApiKeyReply = await gateway.call(
        gateway.clients.keyvault.CreateApiKey, _create_request(payload, principal.user_id), "keyvault"
    )
    return json_response({**key_json(reply.info), "key": reply.api_key}, 201)


async def list_keys(request: Request) -> Response:
    gateway = edge(request)
    principal = await gateway.principal(request)
    require_admin(principal)
    user = request.query_params.get("user") or request.query_params.get("user_id") or ""
    reply: keyvault_pb2.ListApiKeysReply = await gateway.call(
        gateway.clients.keyvault.ListApiKeys, keyvault_pb2.ListApiKeysRequest(user_id=user), "keyvault"
    )
    return json_response({"object": "list", "data": [key_json(k) for k in reply.keys]})


async def own_keys(request: Request) -> Response:
    """The caller's own keys, masked: any key may see its user's keys, and no one else's."""
    gateway = edge(request)
    principal = await gateway.principal(request)
    reply: keyvault_pb2.ListApiKeysReply = await gateway.call(
        gateway.clients.keyvault.ListApiKeys, keyvault_pb2.ListApiKeysRequest(user_id=principal.user_id), "keyvault"
    )
    data = [{**key_json(k), "current": k.key_id == principal.key_id} for k in reply.keys]
    return json_response({"object": "list", "data": data})


async def revoke_key(request: Request) -> Response:
    gateway = edge(request)
    principal = await gateway.principal(request)
    require_admin(principal)
    message = keyvault_pb2.RevokeApiKeyRequest(key_id=request.path_params["key_id"], actor=principal.user_id)
    info: keyvault_pb2.ApiKeyInfo = await gateway.call(gateway.clients.keyvault.RevokeApiKey, message, "keyvault")
    return json_response({**key_json(info), "revoked": True})


extend(
    "/v1/admin/keys",
    False,
    {
        "post": operation(
            "Create a gateway API key for a user (admin); the key is in the response only once. Body "
            "{user_id, scopes, name, expires_in_days | expires_at, rpm_limit, tpm_limit}"
        ),
        "get": operation("List gateway API keys, masked (admin)", params=[query("user", "only this user's keys")]),
    },
)
extend("/v1/keys", False, {"get": operation("Your own gateway API keys, masked; `current` marks the calling key")})
extend("/v1/admin/keys/{key_id}", False, {"delete": operation("Revoke a key (admin)", params=[path_param("key_id")])})

ROUTES = [
    Route("/v1/keys", own_keys, methods=["GET"]),
    Route("/v1/admin/keys", create_key, methods=["POST"]),
    Route("/v1/admin/keys", list_keys, methods=["GET"]),
    Route("/v1/admin/keys/{key_id}", revoke_key, methods=["DELETE"]),
]
