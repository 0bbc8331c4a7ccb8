"""The HTTP/1.1 connection below the app: uvicorn's httptools protocol with the edge's deadlines and limits.

uvicorn gives a request's headers and body all the time a client cares to take, has no bound on header
size, and answers a malformed request (a control character in a header, a broken request line) with a
text/plain page. Here a request has `header_timeout` from its first byte (a new connection: from connect)
to the end of its headers and `body_timeout` more for its body; one that misses a deadline is answered 408
(or closed, when nothing was sent yet or a response has begun). Headers past `MAX_HEADER_BYTES` are 431,
a process over `max_connections` open connections answers 503, and every one of these answers is OpenAI's
error JSON with `Connection: close`.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Literal

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from services.gateway.settings import GatewaySettings
from services.runtime.errors import DomainError

MAX_HEADER_BYTES = 64 * 1024
# The app reads a body under `body_timeout` and answers 408 itself; this connection-level deadline, a
# little later, catches bodies the app never reads.
_BODY_GRACE = 1.0


class _Refused(Exception):
    """Stops the parser; `send_400_response` then writes the refusal that was recorded."""


class EdgeProtocol(HttpToolsProtocol):
    header_timeout: ClassVar[float] = 10.0
    body_timeout: ClassVar[float] = 15.0
    max_connections: ClassVar[int] = 0

    @classmethod
    def configure(cls, settings: GatewaySettings) -> None:
        """Take the deadlines and limits from the settings (once per process, before serving)."""
        cls.header_timeout = settings.header_timeout
        cls.body_timeout = settings.body_timeout
        cls.max_connections = settings.max_connections

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: Literal["idle", "headers", "body"] = "idle"
        self._header_bytes = 0
        self._refusal: DomainError | None = None

    def _arm(self, seconds: float) -> None:
        self._disarm()
        if seconds > 0:
            self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _answer(self, err: DomainError, headers: dict[str, str] | None = None) -> None:
        """Write `err` as the whole response and close the connection."""
        if self.transport.is_closing():
            return
        body = orjson.dumps(err.body())
        lines = [STATUS_LINE[err.kind.http_status]]
        for name, value in {
            "content-type": "application/json",
            "content-length": str(len(body)),
            "connection": "close",
            **(headers or {}),
        }.items():
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        self.transport.write(b"".join([*lines, b"\r\n", body]))
        self.transport.close()

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # The app owns the connection's answer: it is reading this body or already answering.
            if self._phase == "body" and not self.cycle.response_started:
                self.cycle.disconnected = True
                self._answer(_timeout("body", self.body_timeout))
            else:
                self.transport.close()
        elif self._phase == "idle":
            self.transport.close()  # nothing was sent: nothing to answer
        else:
            self._answer(_timeout("headers", self.header_timeout))

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        refusal, self._refusal = self._refusal, None
        if refusal is None:
            refusal = DomainError(
                "invalid_request", "Invalid HTTP request: malformed request line or header (control characters?)"
            )
        self._answer(refusal, {"retry-after": "1"} if refusal.code == "service_unavailable" else None)

    # httptools parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._deadline is None:  # a first request's deadline runs from connect
            self._arm(self.header_timeout)
        self._phase = "headers"

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(DomainError("headers_too_large", f"Request headers exceed {MAX_HEADER_BYTES} bytes"))

    def _refuse(self, err: DomainError) -> None:
        self._refusal = err
        raise _Refused

    def on_headers_complete(self) -> None:
        self._phase = "body"
        self._arm(self.body_timeout + _BODY_GRACE if self.body_timeout > 0 else 0)
        limit = self.max_connections
        if limit and (len(self.connections) > limit or len(self.tasks) >= limit):
            self._refuse(DomainError("service_unavailable", "The gateway is at its connection limit; retry shortly"))
        super().on_headers_complete()
        if self.pipeline:
            # Queued behind a response still being sent: reading is paused, so its body cannot be late, and
            # a 408 now would land inside the earlier response. The app's own body deadline still applies.
            self._disarm()

    def on_message_complete(self) -> None:
        self._disarm()
        self._phase = "idle"
        super().on_message_complete()


def _timeout(part: str, seconds: float) -> DomainError:
    return DomainError("request_timeout", f"The request's {part} did not arrive within {seconds:g}s")
