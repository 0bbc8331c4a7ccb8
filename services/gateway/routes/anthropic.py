"""Anthropic's Messages API: `POST /v1/messages`, served by the chat pipeline through the Messages dialect,
and `POST /v1/messages/count_tokens`, counted by the router for free.

`anthropic-version` and `anthropic-beta` headers (and Claude Code's `?beta=true`) are accepted: the answer
is the Messages API's current shape whatever they say. Errors on these routes are Anthropic's shape.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from services.gateway import policy
from services.gateway.dialects.anthropic import EXTENSIONS, MESSAGES, error_response, translate
from services.gateway.edge import aliased, edge, json_response, read_json
from services.gateway.routes.openai import _serve
from services.runtime.errors import DomainError
from services.runtime.logging import request_id
from tollgate.router.v1 import router_pb2


async def messages(request: Request) -> Response:
    router = edge(request).clients.router
    return await _serve(request, "chat", router.Chat, router.ChatStream, MESSAGES)


async def count_tokens(request: Request) -> Response:
    """`{"input_tokens": n}`: at most n, for the model the request would be routed to (never charged)."""
    gateway = edge(request)
    try:
        principal = await gateway.principal(request)
        await gateway.limiter.admit(principal)
        _, payload = await read_json(request)
        chat = translate(payload, counting=True)
        for name in EXTENSIONS - {"power_level"}:
            chat.pop(name, None)
        message = router_pb2.CompletionRequest(
            request_id=request_id.get(),
            caller=policy.caller(principal),
            body=orjson.dumps(chat),
            power_level=request.headers.get("x-power-level", ""),
        )
        counted: router_pb2.TokenCount = await gateway.call(gateway.clients.router.CountTokens, message, "router")
    except DomainError as err:
        return error_response(err)
    return json_response(
        {"input_tokens": counted.input_tokens},
        headers={"x-tollgate-model": counted.model, "x-tollgate-tokenized": str(counted.tokenized).lower()},
    )


ROUTES = [
    *aliased("/messages", messages, ["POST"]),
    *aliased("/messages/count_tokens", count_tokens, ["POST"]),
]
