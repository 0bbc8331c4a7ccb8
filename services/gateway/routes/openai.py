"""OpenAI's own routes: chat completions, completions, embeddings and models, with SSE streaming.

Bodies travel to the router as the client sent them (only an inline BYOK key is lifted out first);
stream chunks come back as the provider's JSON and are framed as SSE without being re-encoded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import grpc
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from services.gateway import metrics, policy
from services.gateway.dialects import Dialect
from services.gateway.edge import Edge, aliased, edge, json_response, read_json
from services.gateway.limits import Admission
from services.gateway.replay import Claim, ResponseCache, Stored, fingerprint
from services.gateway.validation import VALIDATORS, credential
from services.runtime import attribution
from services.runtime.channels import metadata
from services.runtime.errors import DomainError, from_rpc_error
from services.runtime.logging import request_id
from tollgate.credits.v1 import credits_pb2
from tollgate.keyvault.v1 import keyvault_pb2
from tollgate.router.v1 import router_pb2

T = TypeVar("T")
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
_DONE = b"data: [DONE]\n\n"
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
    credential(key, "api_key")
    if not isinstance(provider, str) or not provider:
        raise DomainError("invalid_request", "Inline BYOK needs 'provider' in the body", "provider")
    return router_pb2.InlineKey(provider=provider, api_key=key)


@dataclass
class Completion:
    """One completion request on its way through the edge's policies."""

    gateway: Edge
    route: str
    principal: keyvault_pb2.Principal
    message: router_pb2.CompletionRequest
    payload: dict[str, Any]
    admission: Admission | None
    idempotency_key: str | None
    admitted: policy.Admitted
    claim: Claim | None = None

    @property
    def headers(self) -> dict[str, str]:
        return self.admission.headers() if self.admission else {}

    @property
    def context(self) -> tuple[str, ...]:
        """What shapes the answer besides the body: the power-level header and an inline key's provider."""
        inline = self.message.inline_key.provider if self.message.HasField("inline_key") else ""
        return (self.message.power_level.strip().upper(), inline)

    async def finished(self, outcome: router_pb2.Outcome) -> float:
        """Account for a served completion: metrics and the token windows. Returns its overhead (ms)."""
        tokens = outcome.prompt_tokens + outcome.completion_tokens
        await self.gateway.limiter.spend(self.admission, tokens)
        await self.gateway.limiter.spend(self.admitted.admission, tokens)
        return metrics.record(outcome)

    async def release(self) -> None:
        """Give back the request's parallel slot (shielded: a client that left still frees it)."""
        if self.admitted.slot is not None:
            with anyio.CancelScope(shield=True):
                await self.admitted.slot.release()


async def _accept(request: Request, route: str, dialect: Dialect | None = None) -> Completion:
    gateway = edge(request)
    principal = await gateway.principal(request)
    admission = await gateway.limiter.admit(principal)
    body, payload = await read_json(request)
    if dialect is not None:  # the dialect checks its own body as it translates it
        payload = dialect.chat_body(payload)
        try:
            body = orjson.dumps(payload)
        except orjson.JSONEncodeError:  # nested past the 254 levels JSON is written with
            raise DomainError("invalid_request", "The request body is nested too deeply") from None
    VALIDATORS[route](payload)
    inline = _inline_key(payload)
    if inline is not None or "cache" in payload:
        body = orjson.dumps({k: v for k, v in payload.items() if k != "cache"})
    # Last of the checks: a parallel slot taken here is given back only by `_served`.
    admitted = await policy.admit(gateway, principal, payload)
    message = router_pb2.CompletionRequest(
        request_id=request_id.get(),
        caller=policy.caller(principal),
        body=body,
        power_level=request.headers.get("x-power-level", ""),
        inline_key=inline,
        tags=attribution.from_header(request.headers.get(attribution.HEADER)),
        client_api=dialect.route if dialect is not None else "",
    )
    name = dialect.route if dialect is not None else route
    return Completion(
        gateway, name, principal, message, payload, admission, request.headers.get("idempotency-key"), admitted
    )


async def _serve(request: Request, route: str, unary: Any, stream: Any, dialect: Dialect | None = None) -> Response:
    if dialect is None:
        return await _served(request, route, unary, stream, None)
    try:
        return await _served(request, route, unary, stream, dialect)
    except DomainError as err:  # before the answer started: in the dialect's own error shape
        return dialect.error(err, {})


async def _served(request: Request, route: str, unary: Any, stream: Any, dialect: Dialect | None) -> Response:
    job = await _accept(request, route, dialect)
    try:
        response = await _answered(job, request, route, unary, stream, dialect)
    except BaseException:
        await job.release()
        raise
    if not isinstance(response, StreamingResponse):
        await job.release()  # a stream gives its slot back when it ends
    return response


async def _answered(
    job: Completion, request: Request, route: str, unary: Any, stream: Any, dialect: Dialect | None
) -> Response:
    gateway, user = job.gateway, job.principal.user_id
    if job.idempotency_key is not None:
        held = await gateway.idempotency.claim(
            user, job.idempotency_key, fingerprint(route, job.message.body, *job.context)
        )
        if isinstance(held, Stored):
            return held.response({**job.headers, "idempotent-replayed": "true"})
        job.claim = held
    try:
        if job.payload.get("stream"):
            return await _stream(job, stream, dialect)
        response, body = await _unary(job, unary, request, dialect)
    except BaseException:
        if job.claim is not None:
            with anyio.CancelScope(shield=True):  # a client that left still frees its key
                await gateway.idempotency.abandon(job.claim)
        raise
    if job.claim is not None:
        await gateway.idempotency.complete(job.claim, Stored.of(response, body))
    return response


async def _unary(
    job: Completion, method: Any, request: Request, dialect: Dialect | None = None
) -> tuple[Response, bytes]:
    gateway = job.gateway
    cache_key = None
    if not job.message.HasField("inline_key") and gateway.cache.eligible(job.payload):
        cache_key = ResponseCache.key(job.principal.user_id, job.route, job.payload, *job.context)
        hit = await gateway.cache.get(cache_key)
        if hit is not None:
            served = Stored(hit.status, hit.headers, _as_cache_hit(hit.body))
            await _record_cache_hit(job, hit)
            headers = {**job.headers, "x-tollgate-cache": "hit", "x-tollgate-cost": "0.000000"}
            return served.response(headers), served.body
    reply: router_pb2.CompletionReply = await _unless_client_leaves(
        request, gateway.call(method, job.message, "router", gateway.settings.request_timeout)
    )
    headers = {**outcome_headers(reply.outcome), **job.headers}
    headers["x-tollgate-overhead-ms"] = f"{await job.finished(reply.outcome):.3f}"
    body = reply.body if dialect is None else orjson.dumps(dialect.reply(orjson.loads(reply.body), reply.outcome))
    response = Response(body, media_type="application/json", headers=headers)
    if cache_key is not None:
        await gateway.cache.put(cache_key, Stored.of(response, body))
        response.headers["x-tollgate-cache"] = "miss"
    return response, body


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone (its body was read whole before, so only a disconnect arrives)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """`work`, cancelled the moment the client disconnects: the router's call (and so the provider's) ends
    then, and the hold settles for what the provider billed, instead of the call running on for nobody."""
    task, gone = asyncio.ensure_future(work), asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not task.done():
        task.cancel()
        raise DomainError("client_closed", "The client closed the connection before the answer")
    return task.result()


def _as_cache_hit(body: bytes) -> bytes:
    data = orjson.loads(body)
    meta = data.get("_metadata")
    if isinstance(meta, dict):
        meta.update(cost_incurred=0, cache_hit=True, fallbacks=0)
    return orjson.dumps(data)


async def _record_cache_hit(job: Completion, hit: Stored) -> None:
    """A cache hit is served free, and logged as usage with `cache_hit`."""
    usage = credits_pb2.UsageRecord(
        request_id=job.message.request_id,
        user_id=job.principal.user_id,
        api_key_id=job.principal.key_id,
        model=hit.headers.get("x-tollgate-model", ""),
        provider=hit.headers.get("x-tollgate-provider", ""),
        status="ok",
        cache_hit=True,
        route=job.route,
        end_user=attribution.end_user(job.payload.get("user")),
        tags=attribution.merged(attribution.tags(job.payload.get("metadata")), job.message.tags),
    )
    await job.gateway.call(
        job.gateway.clients.credits.RecordUsage,
        credits_pb2.RecordUsageRequest(usage=usage, idempotency_key=f"cache-hit:{uuid.uuid4().hex}"),
        "credits",
    )


async def _stream(job: Completion, method: Any, dialect: Dialect | None = None) -> Response:
    gateway = job.gateway
    call = method(job.message, timeout=gateway.settings.request_timeout, metadata=metadata())
    try:
        first = await call.read()
    except grpc.aio.AioRpcError as exc:
        raise from_rpc_error(exc, "router") from None
    if first is grpc.aio.EOF:
        raise DomainError("provider_error", "The provider ended the stream before sending anything")

    translation = dialect.translation(job.payload) if dialect is not None else None
    done = [_DONE] if translation is None else []

    async def relay() -> AsyncIterator[bytes]:
        # Only a stream that ended whole (the router's outcome, no error event, [DONE] delivered) is stored
        # for its Idempotency-Key; one cut short by the client, the provider or the router frees the key.
        frames: list[bytes] = []
        event, failed, settled, whole = first, False, False, False
        try:
            while event is not grpc.aio.EOF:
                kind = event.WhichOneof("event")
                out: list[bytes] = []
                if kind == "chunk":
                    out = (
                        [b"data: " + event.chunk + b"\n\n"]
                        if translation is None
                        else translation.chunk(orjson.loads(event.chunk))
                    )
                elif kind == "error":
                    failed = True
                    out = (
                        [b"data: " + event.error + b"\n\n"]
                        if translation is None
                        else translation.failed(orjson.loads(event.error))
                    )
                elif kind == "outcome":
                    settled = True
                    await job.finished(event.outcome)
                    out = [] if translation is None else translation.finished(event.outcome)
                for frame in out:
                    if job.claim is not None:
                        frames.append(frame)
                    yield frame
                event = await call.read()
            if not failed:
                for frame in done:
                    yield frame
                whole = settled
        except grpc.aio.AioRpcError as exc:
            error = from_rpc_error(exc, "router").body()
            for frame in (
                [b"data: " + orjson.dumps(error) + b"\n\n"] if translation is None else translation.failed(error)
            ):
                yield frame
        finally:
            # A client that went away cancels the router's call, which releases its hold.
            call.cancel()
            await job.release()
            if job.claim is not None:
                with anyio.CancelScope(shield=True):
                    await _settle_stream_key(job, [*frames, *done] if whole else None)

    headers = {**_SSE_HEADERS, **job.headers}
    if first.provider:
        headers |= {"x-tollgate-provider": first.provider, "x-tollgate-model": first.model}
    return StreamingResponse(relay(), media_type="text/event-stream", headers=headers)


async def _settle_stream_key(job: Completion, frames: list[bytes] | None) -> None:
    assert job.claim is not None
    idem = job.gateway.idempotency
    if frames is None:
        await idem.abandon(job.claim)
    else:
        await idem.complete(job.claim, Stored(200, {"content-type": "text/event-stream"}, b"".join(frames)))


async def chat_completions(request: Request) -> Response:
    router = edge(request).clients.router
    return await _serve(request, "chat", router.Chat, router.ChatStream)


async def completions(request: Request) -> Response:
    router = edge(request).clients.router
    return await _serve(request, "completion", router.Complete, router.CompleteStream)


async def embeddings(request: Request) -> Response:
    router = edge(request).clients.router
    return await _serve(request, "embedding", router.Embed, None)


def forget_models() -> None:
    """Drop the cached model list (after a catalog reload)."""
    _MODELS_CACHE.clear()


async def catalog(gateway: Edge) -> list[dict[str, Any]]:
    """The router's model list, reused for `models_cache_ttl` seconds."""
    now = time.monotonic()
    cached = _MODELS_CACHE.get("models")
    if cached and cached[0] > now:
        return cached[1]
    reply: router_pb2.ListModelsReply = await gateway.call(
        gateway.clients.router.ListModels, router_pb2.ListModelsRequest(), "router"
    )
    models: list[dict[str, Any]] = orjson.loads(reply.body)["data"]
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
        caller=policy.caller(principal),
        body=body,
        power_level=request.headers.get("x-power-level", ""),
    )
    selection: router_pb2.Selection = await gateway.call(gateway.clients.router.SelectModel, message, "router")
    return json_response(
        {
            "model": selection.chosen,
            "provider": selection.provider,
            "power_level": selection.power_level,
            "reason": selection.reason,
            "estimated_prompt_tokens": selection.estimated_prompt_tokens,
            "candidates": [
                {
                    "model": c.model,
                    "provider": c.provider,
                    "tier": c.tier,
                    "health": c.health,
                    "score": c.score,
                    "estimated_cost": c.estimated_cost_micro / 1_000_000,
                    "reason": c.reason,
                }
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
