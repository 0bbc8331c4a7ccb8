"""Users' own provider keys over HTTP: store, list (masked), delete, and test with a cheap upstream call.

Every route acts on the caller's own keys only. keyvault seals and stores them; the gateway only
checks that the provider is in the router's catalog. The test asks the router for a one-token
completion with the cheapest chat model of that provider; the router uses the stored key (BYOK
requests are not charged) and the answer says whether the provider accepted it.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from services.gateway import policy
from services.gateway.edge import Edge, aliased, edge, json_response, read_json
from services.gateway.openapi import extend, operation, path_param
from services.gateway.validation import credential
from services.runtime.errors import DomainError
from services.runtime.logging import request_id
from tollgate.keyvault.v1 import keyvault_pb2
from tollgate.router.v1 import router_pb2

# Codes that mean the provider refused the key itself, rather than being unreachable.
_REJECTED = {"provider_auth_failed", "invalid_api_key", "permission_denied"}


def key_json(info: keyvault_pb2.ProviderKeyInfo) -> dict[str, Any]:
    return {
        "id": info.key_id,
        "object": "byok_key",
        "provider": info.provider,
        "masked_key": info.masked,
        "label": info.label,
        "created_at": info.created_unix_ms // 1000,
        "last_used_at": info.last_used_unix_ms // 1000 or None,
        "fingerprint": info.fingerprint,
    }


async def _models(gateway: Edge, provider: str) -> list[router_pb2.Model]:
    reply: router_pb2.ListModelsReply = await gateway.call(
        gateway.clients.router.ListModels, router_pb2.ListModelsRequest(), "router"
    )
    models = [m for m in reply.models if m.provider == provider]
    if not models:
        raise DomainError("invalid_request", f"Unknown provider '{provider}': it is not in the catalog", "provider")
    if not any(m.byok for m in models):
        raise DomainError(
            "invalid_request", f"Provider '{provider}' does not take users' own keys (it checks no keys)", "provider"
        )
    return models


def _string(payload: dict[str, Any], name: str, required: bool = True) -> str:
    value = payload.get(name, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise DomainError("invalid_request", f"'{name}' is required and must be a string", name)
    return value.strip()


async def put_key(request: Request) -> Response:
    gateway = edge(request)
    principal = await gateway.principal(request)
    _body, payload = await read_json(request)
    provider = _string(payload, "provider").lower()
    api_key = credential(_string(payload, "api_key"), "api_key")
    label = _string(payload, "label", required=False)
    await _models(gateway, provider)
    message = keyvault_pb2.PutProviderKeyRequest(
        user_id=principal.user_id, provider=provider, api_key=api_key, label=label
    )
    info: keyvault_pb2.ProviderKeyInfo = await gateway.call(
        gateway.clients.keyvault.PutProviderKey, message, "keyvault"
    )
    return json_response(key_json(info), 201)


async def list_keys(request: Request) -> Response:
    gateway = edge(request)
    principal = await gateway.principal(request)
    reply: keyvault_pb2.ListProviderKeysReply = await gateway.call(
        gateway.clients.keyvault.ListProviderKeys,
        keyvault_pb2.ListProviderKeysRequest(user_id=principal.user_id),
        "keyvault",
    )
    return json_response({"object": "list", "data": [key_json(k) for k in reply.keys]})


async def delete_key(request: Request) -> Response:
    gateway = edge(request)
    principal = await gateway.principal(request)
    provider = request.path_params["provider"]
    reply: keyvault_pb2.DeleteProviderKeyReply = await gateway.call(
        gateway.clients.keyvault.DeleteProviderKey,
        keyvault_pb2.DeleteProviderKeyRequest(user_id=principal.user_id, provider=provider),
        "keyvault",
    )
    if not reply.deleted:
        raise DomainError("not_found", f"You have no key for provider '{provider}'", "provider")
    return json_response({"provider": provider, "object": "byok_key", "deleted": True})


async def test_key(request: Request) -> Response:
    gateway = edge(request)
    principal = await gateway.principal(request)
    provider = request.path_params["provider"]
    mine: keyvault_pb2.ListProviderKeysReply = await gateway.call(
        gateway.clients.keyvault.ListProviderKeys,
        keyvault_pb2.ListProviderKeysRequest(user_id=principal.user_id),
        "keyvault",
    )
    if not any(k.provider == provider for k in mine.keys):
        raise DomainError("not_found", f"You have no key for provider '{provider}'", "provider")
    models = await _models(gateway, provider)
    chat = [m for m in models if "chat" in m.capabilities] or models
    model = min(chat, key=lambda m: m.price.input_micro_per_1k + m.price.output_micro_per_1k)
    body = {"model": model.id, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
    message = router_pb2.CompletionRequest(
        request_id=request_id.get(),
        caller=policy.caller(principal),
        body=orjson.dumps(body),
    )
    result = {"provider": provider, "model": model.id}
    try:
        reply: router_pb2.CompletionReply = await gateway.call(gateway.clients.router.Chat, message, "router")
    except DomainError as err:
        if err.code in _REJECTED:
            return json_response({**result, "valid": False, "status": "rejected", "message": err.message})
        if err.code.startswith("provider_") or err.code in {"timeout", "service_unavailable"}:
            return json_response({**result, "valid": False, "status": "unavailable", "message": err.message})
        raise
    if not reply.outcome.byok:
        return json_response(
            {**result, "valid": False, "status": "not_used", "message": "The request was not served with your key"}
        )
    return json_response({**result, "valid": True, "status": "ok", "message": "The provider accepted the key"})


_PROVIDER = [path_param("provider")]
extend(
    "/v1/byok/keys",
    True,
    {
        "post": operation("Store your own provider key; body {provider, api_key, label}"),
        "get": operation("Your provider keys, masked"),
    },
)
extend("/v1/byok/keys/{provider}", True, {"delete": operation("Delete your key for a provider", params=_PROVIDER)})
extend(
    "/v1/byok/keys/{provider}/test",
    True,
    {"post": operation("Check with a one-token call whether the provider accepts your key", params=_PROVIDER)},
)

ROUTES = [
    *aliased("/byok/keys", put_key, ["POST"]),
    *aliased("/byok/keys", list_keys, ["GET"]),
    *aliased("/byok/keys/{provider}", delete_key, ["DELETE"]),
    *aliased("/byok/keys/{provider}/test", test_key, ["POST"]),
]
