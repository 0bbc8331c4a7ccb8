"""OpenAI's Responses API: create (through the chat pipeline, as a dialect), read and delete stored responses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from services.gateway.conversations import Conversations
from services.gateway.dialects.responses import Responses, output_items
from services.gateway.edge import aliased, edge, json_response, read_json
from services.gateway.routes.openai import _serve
from services.runtime.errors import DomainError


def conversations(request: Request) -> Conversations:
    gateway = edge(request)
    return Conversations(gateway.store, gateway.settings.responses_ttl)


async def create_response(request: Request) -> Response:
    gateway = edge(request)
    principal = await gateway.principal(request)
    body, payload = await read_json(request)
    request._body = body  # the chat pipeline reads the body again
    stored = conversations(request)
    previous = payload.get("previous_response_id")
    context: list[dict[str, Any]] = []
    if previous is not None:
        if not isinstance(previous, str) or not previous:
            raise DomainError(
                "invalid_request", "'previous_response_id' must be a non-empty string", "previous_response_id"
            )
        record = await stored.find(principal.user_id, previous)
        context = [*record["context"], *output_items(record["response"])]
    dialect = Responses(context)
    router = gateway.clients.router
    response = await _serve(request, "chat", router.Chat, router.ChatStream, dialect)

    async def save() -> None:
        if dialect.result is not None and dialect.store and dialect.result["status"] != "failed":
            await stored.save(principal.user_id, dialect.result, dialect.items)

    if isinstance(response, StreamingResponse):
        frames = response.body_iterator

        async def then_save() -> AsyncIterator[Any]:
            async for frame in frames:
                yield frame
            await save()

        response.body_iterator = then_save()
    else:
        await save()
    return response


async def get_response(request: Request) -> Response:
    principal = await edge(request).principal(request)
    record = await conversations(request).find(principal.user_id, request.path_params["response_id"])
    return json_response(record["response"])


async def input_items(request: Request) -> Response:
    principal = await edge(request).principal(request)
    record = await conversations(request).find(principal.user_id, request.path_params["response_id"])
    items = record["context"]
    return json_response(
        {
            "object": "list",
            "data": items,
            "first_id": items[0].get("id") if items else None,
            "last_id": items[-1].get("id") if items else None,
            "has_more": False,
        }
    )


async def delete_response(request: Request) -> Response:
    principal = await edge(request).principal(request)
    response_id = request.path_params["response_id"]
    await conversations(request).delete(principal.user_id, response_id)
    return json_response({"id": response_id, "object": "response", "deleted": True})


ROUTES = [
    *aliased("/responses", create_response, ["POST"]),
    *aliased("/responses/{response_id}", get_response, ["GET"]),
    *aliased("/responses/{response_id}", delete_response, ["DELETE"]),
    *aliased("/responses/{response_id}/input_items", input_items, ["GET"]),
]
