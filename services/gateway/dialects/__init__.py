"""Client APIs besides chat completions, each translated at the edge onto the one chat pipeline."""

from __future__ import annotations

from typing import Any, Protocol

from starlette.responses import Response

from services.runtime.errors import DomainError
from tollgate.router.v1 import router_pb2


class Translation(Protocol):
    """One streamed answer, chat chunks in, this API's SSE frames out."""

    def chunk(self, chunk: dict[str, Any]) -> list[bytes]: ...
    def failed(self, error: dict[str, Any]) -> list[bytes]: ...
    def finished(self, outcome: router_pb2.Outcome) -> list[bytes]: ...


class Dialect(Protocol):
    """How a client API maps onto chat completions and back."""

    route: str  # the usage log's route name

    def chat_body(self, payload: dict[str, Any]) -> dict[str, Any]: ...
    def reply(self, chat: dict[str, Any], outcome: router_pb2.Outcome) -> dict[str, Any]: ...
    def translation(self, payload: dict[str, Any]) -> Translation: ...
    def error(self, err: DomainError, headers: dict[str, str]) -> Response: ...
