"""The Router gRPC servicer: unpack the request, hand it to the pipeline, pack the reply.

Who may call is in `access.py`; whom a call is for (the gateway's user, or the owner of the caller's own
tg- key) is decided in `callers.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from services.router import request as requests
from services.router.adapters.base import Route
from services.router.callers import Callers, allow_lists
from services.router.catalog_source import CatalogSource
from services.router.model_access import ModelAccess
from services.router.models import list_models
from services.router.pipeline import Router
from services.runtime import identity
from services.runtime.errors import DomainError, rpc
from services.runtime.logging import request_id
from tollgate.router.v1 import router_pb2, router_pb2_grpc

Context = Any  # grpc.aio.ServicerContext; grpc ships no type information


class RouterServicer(router_pb2_grpc.RouterServicer):
    def __init__(self, router: Router, callers: Callers, source: CatalogSource | None = None) -> None:
        self.router = router
        self.callers = callers
        self.source = source

    async def _unary(
        self, route: Route, req: router_pb2.CompletionRequest, context: Context
    ) -> router_pb2.CompletionReply:
        caller, admission = await self.callers.admit(req, context)
        parsed = requests.parse(route, req.body, req.power_level, header_tags=req.tags, client_api=req.client_api)
        per_model = await self.callers.admit_model(parsed.model, self.router.catalog)
        body, outcome = await self.router.complete(parsed, caller)
        await self.callers.spend(admission, outcome)
        await self.callers.spend(per_model, outcome)
        return router_pb2.CompletionReply(body=body, outcome=outcome)

    async def _stream(
        self, route: Route, req: router_pb2.CompletionRequest, context: Context
    ) -> AsyncIterator[router_pb2.StreamEvent]:
        caller, admission = await self.callers.admit(req, context)
        parsed = requests.parse(route, req.body, req.power_level, header_tags=req.tags, client_api=req.client_api)
        per_model = await self.callers.admit_model(parsed.model, self.router.catalog)
        async for event in self.router.stream(parsed, caller):
            if event.HasField("outcome"):
                await self.callers.spend(admission, event.outcome)
                await self.callers.spend(per_model, event.outcome)
            yield event

    @rpc
    async def Chat(self, request: router_pb2.CompletionRequest, context: Context) -> router_pb2.CompletionReply:
        return await self._unary("chat", request, context)

    @rpc
    async def Complete(self, request: router_pb2.CompletionRequest, context: Context) -> router_pb2.CompletionReply:
        return await self._unary("completion", request, context)

    @rpc
    async def Embed(self, request: router_pb2.CompletionRequest, context: Context) -> router_pb2.CompletionReply:
        return await self._unary("embedding", request, context)

    @rpc
    async def ChatStream(
        self, request: router_pb2.CompletionRequest, context: Context
    ) -> AsyncIterator[router_pb2.StreamEvent]:
        async for event in self._stream("chat", request, context):
            yield event

    @rpc
    async def CompleteStream(
        self, request: router_pb2.CompletionRequest, context: Context
    ) -> AsyncIterator[router_pb2.StreamEvent]:
        async for event in self._stream("completion", request, context):
            yield event

    @rpc
    async def Respond(self, request: router_pb2.CompletionRequest, context: Context) -> router_pb2.CompletionReply:
        return await self._unary("responses", request, context)

    @rpc
    async def RespondStream(
        self, request: router_pb2.CompletionRequest, context: Context
    ) -> AsyncIterator[router_pb2.StreamEvent]:
        async for event in self._stream("responses", request, context):
            yield event

    @rpc
    async def ListModels(self, request: router_pb2.ListModelsRequest, context: Context) -> router_pb2.ListModelsReply:
        return list_models(self.router.catalog, self.router.health)

    @rpc
    async def ReloadCatalog(
        self, request: router_pb2.ReloadCatalogRequest, context: Context
    ) -> router_pb2.ReloadCatalogReply:
        if self.source is None:
            raise DomainError("service_unavailable", "this router serves no catalog file to reload")
        peer = identity.current()
        actor = request.actor or (peer.describe() if peer is not None else "an admin")
        done = self.source.reload(actor)
        return router_pb2.ReloadCatalogReply(
            models=done.models, providers=done.providers, digest=done.digest, changed=done.changed
        )

    @rpc
    async def CountTokens(self, request: router_pb2.CompletionRequest, context: Context) -> router_pb2.TokenCount:
        request_id.set(request.request_id)
        parsed = requests.parse("chat", request.body, request.power_level)
        # Counted for a model the caller may use only: its allow-lists hold here as for a completion.
        model = self.router.decide(parsed, access=ModelAccess.of(*allow_lists(request))).candidates[0].model
        return router_pb2.TokenCount(
            input_tokens=parsed.prompt.bound(model), model=model.id, tokenized=parsed.prompt.tokenized(model)
        )

    @rpc
    async def SelectModel(self, request: router_pb2.CompletionRequest, context: Context) -> router_pb2.Selection:
        request_id.set(request.request_id)
        route: Route = "chat"
        try:
            import orjson

            peek = orjson.loads(request.body)
            if isinstance(peek, dict) and "input" in peek and "messages" not in peek:
                route = "embedding"
            elif isinstance(peek, dict) and "prompt" in peek and "messages" not in peek:
                route = "completion"
        except ValueError:
            pass
        parsed = requests.parse(route, request.body, request.power_level, selection_only=True)
        decision = self.router.decide(parsed, access=ModelAccess.of(*allow_lists(request)))
        chosen = decision.candidates[0].model
        return router_pb2.Selection(
            chosen=chosen.id,
            power_level=decision.power_level,
            reason=decision.reason,
            candidates=[
                router_pb2.Candidate(
                    model=c.model.id,
                    provider=c.model.provider.name,
                    score=c.score,
                    reason=c.reason,
                    tier=c.model.tier,
                    health=c.health,
                    estimated_cost_micro=c.estimated_cost_micro,
                )
                for c in decision.candidates
            ],
            provider=chosen.provider.name,
            estimated_prompt_tokens=parsed.prompt_tokens,
        )
