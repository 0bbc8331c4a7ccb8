"""OpenAI's own routes: chat completions, completions, embeddings and models, with SSE streaming.

Bodies travel to the router as the client sent them (only an inline BYOK key is lifted out first);
stream chunks come back as the provider's JSON and are framed as SSE without being re-encoded.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from services.gateway import metrics
from services.gateway.edge import Edge, aliased, edge, json_response, read_json
from services.gateway.validation import VALIDATORS
from services.runtime.channels import metadata
from services.runtime.errors import DomainError, from_rpc_error
from services.runtime.logging import request_id
from tollgate.router.v1 import router_pb2

_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
_MODELS_CACHE: dict[str, tuple[float, list[dict[str, Any]]]] = {}


def outcome_headers(outcome: router_pb2.Outcome) -> dict[str, str]:
    headers = {
        "x-tollgate-provider": outcome.provider,
        "x-tollgate-model": outcome.model,
        "x-tollgate-cost": f"{outcome.cost_micro / 1_000_000:.6f}",
        "x-credits-remaining": f"{outcome.credits_remaining_micro / 1_000_000:.6f}",
    }
    if outcome.credits_low:
        headers["x-credits-low"] = "true"
    return headers


def _inline_key(payload: dict[str, Any]) -> router_pb2.InlineKey | None:
    """Lift a per-request provider key out of the body (the seeds' inline BYOK): never stored or relayed."""
    if "api_key" not in payload and not payload.get("byok"):
        return None
    key, provider = payload.pop("api_key", None), payload.pop("provider", None)
    payload.pop("byok", None)
    if not isinstance(key, str) or not key:
        raise DomainError("invalid_request", "Inline BYOK needs 'api_key' (a string) in the body", "api_key")
    if not isinstance(provider, str) or not provider:
        raise DomainError("invalid_request", "Inline BYOK needs 'provider' in the body", "provider")
    return router_pb2.InlineKey(provider=provider, api_key=key)


async def _request(request: Request, route: str) -> tuple[Edge, router_pb2.CompletionRequest, bool]:
    gateway = edge(request)
    principal = await gateway.principal(request)
    body, payload = await read_json(request)
    VALIDATORS[route](payload)
    inline = _inline_key(payload)
    if inline is not None:
        body = orjson.dumps(payload)
    message = router_pb2.CompletionRequest(
        request_id=request_id.get(),
        caller=router_pb2.Caller(user_id=principal.user_id, key_id=principal.key_id, scopes=principal.scopes),
        body=body,
        power_level=request.headers.get("x-power-level", ""),
        inline_key=inline,
    )
    return gateway, message, bool(payload.get("stream"))


async def _unary(gateway: Edge, method: Any, message: router_pb2.CompletionRequest) -> Response:
    reply: router_pb2.CompletionReply = await gateway.call(method, message, "router", gateway.settings.request_timeout)
    headers = outcome_headers(reply.outcome)
    headers["x-tollgate-overhead-ms"] = f"{metrics.record(reply.outcome):.3f}"
    return Response(reply.body, media_type="application/json", headers=headers)


async def _stream(gateway: Edge, method: Any, message: router_pb2.CompletionRequest) -> Response:
    call = method(message, timeout=gateway.settings.request_timeout, metadata=metadata())
    try:
        first = await call.read()
    except grpc.aio.AioRpcError as exc:
        raise from_rpc_error(exc, "router") from None
    if first is grpc.aio.EOF:
        raise DomainError("provider_error", "The provider ended the stream before sending anything")

    async def relay() -> AsyncIterator[bytes]:
        event, failed = first, False
        try:
            while event is not grpc.aio.EOF:
                kind = event.WhichOneof("event")
                if kind == "chunk":
                    yield b"data: " + event.chunk + b"\n\n"
                elif kind == "error":
                    failed = True
                    yield b"data: " + event.error + b"\n\n"
                elif kind == "outcome":
                    metrics.record(event.outcome)
                event = await call.read()
            if not failed:
                yield b"data: [DONE]\n\n"
        except grpc.aio.AioRpcError as exc:
            yield b"data: " + orjson.dumps(from_rpc_error(exc, "router").body()) + b"\n\n"
        finally:
            # A client that went away cancels the router's call, which releases its hold.
            call.cancel()

    return StreamingResponse(relay(), media_type="text/event-stream", headers=_SSE_HEADERS)


async def chat_completions(request: Request) -> Response:
    gateway, message, stream = await _request(request, "chat")
    router = gateway.clients.router
    return await (_stream(gateway, router.ChatStream, message) if stream else _unary(gateway, router.Chat, message))


async def completions(request: Request) -> Response:
    gateway, message, stream = await _request(request, "completion")
    router = gateway.clients.router
    if stream:
        return await _stream(gateway, router.CompleteStream, message)
    return await _unary(gateway, router.Complete, message)


async def embeddings(request: Request) -> Response:
    gateway, message, stream = await _request(request, "embedding")
    if stream:
        raise DomainError("invalid_request", "Embeddings cannot be streamed", "stream")
    return await _unary(gateway, gateway.clients.router.Embed, message)


def model_entry(model: router_pb2.Model) -> dict[str, Any]:
    return {
        "id": model.id,
        "object": "model",
        "created": 0,
        "owned_by": model.provider,
        "aliases": list(model.aliases),
        "tier": model.tier,
        "price": {
            "input_per_1k": model.price.input_micro_per_1k / 1_000_000,
            "output_per_1k": model.price.output_micro_per_1k / 1_000_000,
            "unit": "credits",
        },
        "context_window": model.context_window,
        "capabilities": list(model.capabilities),
        "quality": model.quality,
        "health": model.health or "unknown",
    }


async def catalog(gateway: Edge) -> list[dict[str, Any]]:
    """The router's model list, reused for `models_cache_ttl` seconds."""
    now = time.monotonic()
    cached = _MODELS_CACHE.get("models")
    if cached and cached[0] > now:
        return cached[1]
    reply: router_pb2.ListModelsReply = await gateway.call(
        gateway.clients.router.ListModels, router_pb2.ListModelsRequest(), "router"
    )
    models = [model_entry(m) for m in reply.models]
    _MODELS_CACHE["models"] = (now + gateway.settings.models_cache_ttl, models)
    return models


async def list_models(request: Request) -> Response:
    gateway = edge(request)
    await gateway.principal(request)
    return json_response({"object": "list", "data": await catalog(gateway)})


async def get_model(request: Request) -> Response:
    gateway = edge(request)
    await gateway.principal(request)
    wanted = request.path_params["model"]
    for model in await catalog(gateway):
        if model["id"] == wanted or wanted in model["aliases"]:
            return json_response(model)
    raise DomainError("model_not_found", f"The model '{wanted}' does not exist", "model")


async def select_model(request: Request) -> Response:
    gateway = edge(request)
    principal = await gateway.principal(request)
    body, _ = await read_json(request)
    message = router_pb2.CompletionRequest(
        request_id=request_id.get(),
        caller=router_pb2.Caller(user_id=principal.user_id, key_id=principal.key_id, scopes=principal.scopes),
        body=body,
        power_level=request.headers.get("x-power-level", ""),
    )
    selection: router_pb2.Selection = await gateway.call(gateway.clients.router.SelectModel, message, "router")
    return json_response(
        {
            "model": selection.chosen,
            "power_level": selection.power_level,
            "reason": selection.reason,
            "candidates": [
                {"model": c.model, "provider": c.provider, "score": c.score, "reason": c.reason}
                for c in selection.candidates
            ],
        }
    )


ROUTES = [
    *aliased("/chat/completions", chat_completions, ["POST"]),
    *aliased("/completions", completions, ["POST"]),
    *aliased("/embeddings", embeddings, ["POST"]),
    *aliased("/models", list_models, ["GET"]),
    *aliased("/models/select", select_model, ["POST"]),
    *aliased("/models/{model:path}", get_model, ["GET"]),
]
