"""OpenAI's Responses API passed through to an upstream that serves it (its provider has `responses: true`).

The body travels to the router's `Respond` as the client wrote it, checked by the same rules as the
translation (`dialects.responses.validate`) and cut to the Responses allow-list by the router. The gateway
keeps owning stored responses: a `previous_response_id` is expanded here into the input items it names, the
upstream is always asked with `store: false`, and the answer gets the gateway's own id and is stored by it as a
translated one is, so GET, DELETE and chaining behave the same on both paths.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from starlette.responses import Response

from services.gateway.dialects.responses import DROPPED_TOOLS, ROUTE, messages, validate
from services.gateway.edge import error_response
from services.runtime.errors import DomainError
from tollgate.router.v1 import router_pb2

# The events that end a Responses stream, each carrying the whole response.
_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _unstored(item: dict[str, Any]) -> dict[str, Any]:
    """A stored item as input for an upstream that never stored it: without the id only the gateway knows."""
    return {k: v for k, v in item.items() if k != "id"}


class Passthrough:
    """The Responses API relayed as it is (`services.gateway.dialects.Dialect`); `context` as in `Responses`."""

    route = ROUTE

    def __init__(self, context: list[dict[str, Any]] | None = None) -> None:
        self.context = context or []
        self.id = "resp_" + os.urandom(24).hex()  # the gateway's: the upstream stored nothing under its own
        self.request: dict[str, Any] = {}
        self.items: list[dict[str, Any]] = []  # the conversation up to this answer, as input items
        self.result: dict[str, Any] | None = None  # the finished response, once there is one

    @property
    def store(self) -> bool:
        return self.request.get("store", True) is not False

    def chat_body(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The body for the router: the client's, with the stored conversation it continues as input items."""
        validate(payload)
        self.request = payload
        given = payload["input"]
        turn = [{"type": "message", "role": "user", "content": given}] if isinstance(given, str) else list(given)
        self.items = [*self.context, *turn]
        # The translation's item rules: no item_reference and no uploaded file ids, which would reach what the
        # platform's account holds at the provider; reasoning items pass through.
        messages(turn)
        body = {k: v for k, v in payload.items() if k != "previous_response_id"}
        if self.context:
            body["input"] = [*(_unstored(i) for i in self.context), *turn]
        if isinstance(payload.get("tools"), list):  # web search dropped as in the translation (Codex always offers it)
            body["tools"] = [
                t for t in payload["tools"] if not (isinstance(t, dict) and t.get("type") in DROPPED_TOOLS)
            ]
        body["store"] = False
        body["cache"] = False  # a Responses answer has its own id and may be stored: never served from the cache
        return body

    def _owned(self, response: dict[str, Any]) -> dict[str, Any]:
        """The upstream's response as the gateway answers and stores it: its id, the client's store and chain."""
        response["id"] = self.id
        response["store"] = self.store
        response["previous_response_id"] = self.request.get("previous_response_id")
        return response

    def reply(self, chat: dict[str, Any], outcome: router_pb2.Outcome) -> dict[str, Any]:
        self.result = self._owned(chat)
        return self.result

    def translation(self, payload: dict[str, Any]) -> Relay:
        return Relay(self)

    def error(self, err: DomainError, headers: dict[str, str]) -> Response:
        return error_response(err, headers)


class Relay:
    """The upstream's typed events out as they came (the response's store and chain the gateway's)."""

    def __init__(self, dialect: Passthrough) -> None:
        self.dialect = dialect
        self.sequence = 0
        self.snapshot: dict[str, Any] | None = None

    def _frame(self, event: dict[str, Any]) -> bytes:
        kind = str(event.get("type") or "message")
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"

    def chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        sequence = chunk.get("sequence_number")
        if isinstance(sequence, int) and not isinstance(sequence, bool):
            self.sequence = sequence + 1
        response = chunk.get("response")
        if isinstance(response, dict):
            self.snapshot = self.dialect._owned(response)
            if chunk.get("type") in _ENDS:
                self.dialect.result = response
        return [self._frame(chunk)]

    def failed(self, error: dict[str, Any]) -> list[bytes]:
        nested = error.get("error")
        detail: dict[str, Any] = nested if isinstance(nested, dict) else error
        code, message = detail.get("code") or "server_error", detail.get("message") or "The request failed"
        frames = [
            self._frame(
                {
                    "type": "error",
                    "code": code,
                    "message": message,
                    "param": detail.get("param"),
                    "sequence_number": self.sequence,
                }
            )
        ]
        self.sequence += 1
        failed = {**(self.snapshot or {}), "status": "failed", "error": {"code": code, "message": message}}
        self.dialect.result = failed
        frames.append(self._frame({"type": "response.failed", "response": failed, "sequence_number": self.sequence}))
        self.sequence += 1
        return frames

    def finished(self, outcome: router_pb2.Outcome) -> list[bytes]:
        return []  # the upstream's own response.completed went out already, with the usage charged
