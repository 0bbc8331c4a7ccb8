"""What every adapter speaks: the routes, the upstream failure, the reply and the stream of events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from services.router.catalog import Model
from services.runtime.logging import redact

Route = Literal["chat", "completion", "embedding", "responses"]
PATHS: dict[str, str] = {
    "chat": "/chat/completions",
    "completion": "/completions",
    "embedding": "/embeddings",
    "responses": "/responses",
}


class UpstreamError(Exception):
    """A provider call that failed: `kind` is connect, timeout, http, garbage or cut; `status` 0 without HTTP."""

    def __init__(self, kind: str, status: int, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.message = message

    @property
    def retryable(self) -> bool:
        """Worth trying the next candidate: the provider, not the request, is at fault."""
        return self.kind != "http" or self.status in (408, 409, 429) or self.status >= 500

    @property
    def auth(self) -> bool:
        return self.kind == "http" and self.status in (401, 402, 403)


def safe_message(text: str, api_key: str | None) -> str:
    """An upstream's error text fit for logs and clients: the key and anything key-shaped masked, bounded."""
    if api_key:
        text = text.replace(api_key, "[redacted]")
    return redact(text)[:300]


@dataclass(slots=True)
class Reply:
    body: dict[str, Any]


@dataclass(slots=True)
class Event:
    """One streamed `data:` payload: the bytes as received and the parsed object."""

    raw: bytes
    obj: dict[str, Any]


class Adapter(Protocol):
    async def call(
        self, route: Route, model: Model, payload: dict[str, Any], api_key: str | None, timeout: float
    ) -> Reply: ...

    def stream(
        self, route: Route, model: Model, payload: dict[str, Any], api_key: str | None, timeout: float
    ) -> AsyncIterator[Event]:
        """The upstream's events; a refusal raises `UpstreamError` from the first `anext`, before any event."""
        ...

    async def close(self) -> None: ...
