"""Gateway API keys over HTTP: admins create (the key is shown once), list (masked), revoke; users list their own.
Admins, and team admins for their members' keys, set a key's access policy (`models`, `max_parallel`,
`model_limits`) at creation or later with `PATCH /v1/keys/{key_id}`; the models it names must be in the catalog.
A team admin acts for its own team only: the team comes from its key, never from the request.

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

from services.gateway import policy
from services.gateway.edge import Edge, edge, is_admin, json_response, read_json, require_admin
from services.gateway.openapi import extend, operation, path_param, query
from services.runtime import identity
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
        "team_id": info.team_id or None,
        **policy_json(info.policy),
    }


def policy_json(found: keyvault_pb2.AccessPolicy) -> dict[str, Any]:
    return {
        "models": list(found.models),
        "max_parallel": found.max_parallel or None,
        "model_limits": {m: {"rpm": lim.rpm or None, "tpm": lim.tpm or None} for m, lim in found.model_limits.items()},
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


async def read_policy(
    gateway: Edge, payload: dict[str, Any], base: keyvault_pb2.AccessPolicy | None = None
) -> keyvault_pb2.AccessPolicy:
    """The body's `models`, `max_parallel` and `model_limits` ({model: {rpm, tpm}}), over `base` for the fields
    it leaves out; every model named must be in the catalog (400 naming the field otherwise)."""
    found = keyvault_pb2.AccessPolicy()
    if base is not None:
        found.CopyFrom(base)
    if "models" in payload:
        models = payload["models"]
        if models is None:
            models = []
        if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models) or len(models) > 200:
            raise DomainError(
                "invalid_request", "'models' must be a list of model ids, aliases or 'tier:<name>'", "models"
            )
        del found.models[:]
        found.models.extend(models)
    if "max_parallel" in payload:
        found.max_parallel = _int(payload, "max_parallel", 100_000)
    if "model_limits" in payload:
        limits = payload["model_limits"] or {}
        if not isinstance(limits, dict) or len(limits) > 200:
            raise DomainError("invalid_request", "'model_limits' must be an object {model: {rpm, tpm}}", "model_limits")
        found.model_limits.clear()
        for model, limit in limits.items():
            if not isinstance(limit, dict) or set(limit) - {"rpm", "tpm"}:
                raise DomainError("invalid_request", f"'model_limits.{model}' must be {{rpm, tpm}}", "model_limits")
            found.model_limits[model].CopyFrom(
                keyvault_pb2.ModelLimit(rpm=_int(limit, "rpm", _INT32), tpm=_int(limit, "tpm", _INT32))
            )
    named = [*found.models, *found.model_limits]
    if named:
        known = await policy.models(gateway)
        missing = policy.unknown_models(named, known)
        if missing is not None:
            field = "models" if missing in found.models else "model_limits"
            raise DomainError("invalid_request", f"'{missing}' is not a model of the catalog", field)
        for model in found.model_limits:
            if model not in known:
                raise DomainError("invalid_request", f"'{model}' is not a model of the catalog", "model_limits")
    return found


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
    message = _create_request(payload, principal.user_id)
    message.policy.CopyFrom(await read_policy(gateway, payload))
    reply: keyvault_pb2.CreateApiKeyReply = await gateway.call(
        gateway.clients.keyvault.CreateApiKey, message, "keyvault"
    )
    return json_response({**key_json(reply.info), "key": reply.api_key}, 201)


def acting_team(principal: keyvault_pb2.Principal, team_id: str = "", admin: bool = True) -> str:
    """The team a non-admin caller acts for: its own (from its key), and it must be the one named and, with
    `admin`, the caller must be its admin. An admin acts for any team ("" for none)."""
    if is_admin(principal):
        identity.act_for(principal.user_id, principal.scopes)
        return team_id
    own = principal.team_id
    if not own or (team_id and team_id != own) or (admin and principal.team_role != "admin"):
        raise DomainError("permission_denied", "This route needs an admin key or a key of this team's admin")
    identity.act_for(principal.user_id, principal.scopes)
    return own


async def create_team_key(request: Request) -> Response:
    """A key for a member of the team (user scope only), by an admin or the team's admin."""
    gateway = edge(request)
    principal = await gateway.principal(request)
    team_id = acting_team(principal, request.path_params["team_id"])
    _body, payload = await read_json(request)
    payload.pop("scopes", None)
    message = _create_request(payload, principal.user_id)
    message.team_id = team_id
    message.policy.CopyFrom(await read_policy(gateway, payload))
    reply: keyvault_pb2.CreateApiKeyReply = await gateway.call(
        gateway.clients.keyvault.CreateApiKey, message, "keyvault"
    )
    return json_response({**key_json(reply.info), "key": reply.api_key}, 201)


async def list_team_keys(request: Request) -> Response:
    gateway = edge(request)
    principal = await gateway.principal(request)
    team_id = acting_team(principal, request.path_params["team_id"])
    reply: keyvault_pb2.ListApiKeysReply = await gateway.call(
        gateway.clients.keyvault.ListApiKeys, keyvault_pb2.ListApiKeysRequest(team_id=team_id), "keyvault"
    )
    return json_response({"object": "list", "data": [key_json(k) for k in reply.keys]})


async def revoke_team_key(request: Request) -> Response:
    """Revoke a key of a team member (admin or the team's admin)."""
    gateway = edge(request)
    principal = await gateway.principal(request)
    team_id = acting_team(principal, request.path_params["team_id"]) or request.path_params["team_id"]
    message = keyvault_pb2.RevokeApiKeyRequest(
        key_id=request.path_params["key_id"], team_id=team_id, actor=principal.user_id
    )
    info: keyvault_pb2.ApiKeyInfo = await gateway.call(gateway.clients.keyvault.RevokeApiKey, message, "keyvault")
    return json_response({**key_json(info), "revoked": True})


async def update_key(request: Request) -> Response:
    """Change a key's access policy: an admin any key's, a team admin its members' keys only."""
    gateway = edge(request)
    principal = await gateway.principal(request)
    team_id = acting_team(principal)
    _body, payload = await read_json(request)
    unknown = set(payload) - {"models", "max_parallel", "model_limits"}
    if unknown:
        name = sorted(unknown)[0]
        raise DomainError("invalid_request", f"'{name}' cannot be changed here", name)
    key_id = request.path_params["key_id"]
    lookup = keyvault_pb2.ListApiKeysRequest(team_id=team_id) if team_id else keyvault_pb2.ListApiKeysRequest()
    listed: keyvault_pb2.ListApiKeysReply = await gateway.call(gateway.clients.keyvault.ListApiKeys, lookup, "keyvault")
    current = next((k for k in listed.keys if k.key_id == key_id), None)
    if current is None:
        raise DomainError("not_found", "No such API key", "key_id")
    message = keyvault_pb2.UpdateApiKeyRequest(
        key_id=key_id,
        team_id=team_id,
        actor=principal.user_id,
        policy=await read_policy(gateway, payload, current.policy),
    )
    info: keyvault_pb2.ApiKeyInfo = await gateway.call(gateway.clients.keyvault.UpdateApiKey, message, "keyvault")
    return json_response(key_json(info))


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
            "{user_id, scopes, name, expires_in_days | expires_at, rpm_limit, tpm_limit, models, max_parallel, "
            "model_limits: {model: {rpm, tpm}}}"
        ),
        "get": operation("List gateway API keys, masked (admin)", params=[query("user", "only this user's keys")]),
    },
)
extend("/v1/keys", False, {"get": operation("Your own gateway API keys, masked; `current` marks the calling key")})
extend("/v1/admin/keys/{key_id}", False, {"delete": operation("Revoke a key (admin)", params=[path_param("key_id")])})
extend(
    "/v1/keys/{key_id}",
    False,
    {
        "patch": operation(
            "Change a key's access policy (admin, or the admin of the key's team). Body {models, max_parallel, "
            "model_limits}; fields left out keep their value",
            params=[path_param("key_id")],
        )
    },
)
extend(
    "/v1/teams/{team_id}/keys/{key_id}",
    False,
    {
        "delete": operation(
            "Revoke a key of a team member (admin or team admin)", params=[path_param("team_id"), path_param("key_id")]
        )
    },
)
extend(
    "/v1/teams/{team_id}/keys",
    False,
    {
        "post": operation(
            "Create a key (user scope) for a member of the team (admin or team admin); shown once. Body "
            "{user_id, name, expires_in_days | expires_at, rpm_limit, tpm_limit, models, max_parallel, model_limits}",
            params=[path_param("team_id")],
        ),
        "get": operation(
            "The keys of the team's members, masked (admin or team admin)", params=[path_param("team_id")]
        ),
    },
)

ROUTES = [
    Route("/v1/keys", own_keys, methods=["GET"]),
    Route("/v1/admin/keys", create_key, methods=["POST"]),
    Route("/v1/admin/keys", list_keys, methods=["GET"]),
    Route("/v1/admin/keys/{key_id}", revoke_key, methods=["DELETE"]),
    Route("/v1/keys/{key_id}", update_key, methods=["PATCH"]),
    Route("/v1/teams/{team_id}/keys", create_team_key, methods=["POST"]),
    Route("/v1/teams/{team_id}/keys", list_team_keys, methods=["GET"]),
    Route("/v1/teams/{team_id}/keys/{key_id}", revoke_team_key, methods=["DELETE"]),
]
