"""The `openai` adapter: a direct, pooled, streaming HTTP client for OpenAI-compatible upstreams.

One `aiohttp` session per provider keeps connections alive across requests (it costs a fraction of the
CPU per call that httpx does, and this client is on every request's path). Streams are split into
`data:` payloads on bytes, so a payload reaches the client exactly as the upstream wrote it unless the
normalizer has to change it; a stream is complete only with its `[DONE]`. The URL is the catalog's and
the only header beyond the fixed ones is the credential; the body carries only the route's documented
parameters (`params.outgoing`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from services.router import params
from services.router.adapters.base import PATHS, Event, Reply, Route, UpstreamError, safe_message
from services.router.catalog import Model, Provider
from services.runtime.errors import DomainError

_HEADERS = {"content-type": "application/json", "accept-encoding": "identity"}


class OpenAIAdapter:
    def __init__(self, max_connections: int = 256) -> None:
        self._max_connections = max_connections
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def _session(self, provider: Provider) -> aiohttp.ClientSession:
        session = self._sessions.get(provider.name)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=60, enable_cleanup_closed=True
            )
            session = self._sessions[provider.name] = aiohttp.ClientSession(
                connector=connector, headers=_HEADERS, auto_decompress=False
            )
        return session

    @staticmethod
    def _request(
        route: Route, model: Model, payload: dict[str, Any], api_key: str | None, timeout: float
    ) -> dict[str, Any]:
        connect = min(model.provider.connect_timeout_s, timeout)
        try:
            data = orjson.dumps({**params.outgoing(route, payload), "model": model.upstream})
        except TypeError:  # nested past orjson's 254 levels: the client's body, not the provider, is at fault
            raise DomainError("invalid_request", "the request body is nested too deeply to send", "body") from None
        return {
            "url": model.provider.api_base.rstrip("/") + PATHS[route],
            "data": data,
            "headers": {"authorization": f"Bearer {api_key}"} if api_key else None,
            # Like a read timeout: the longest wait for the next bytes, within the request's deadline.
            "timeout": aiohttp.ClientTimeout(total=None, sock_connect=connect, connect=connect, sock_read=timeout),
        }

    async def call(
        self, route: Route, model: Model, payload: dict[str, Any], api_key: str | None, timeout: float
    ) -> Reply:
        provider = model.provider
        try:
            async with self._session(provider).post(**self._request(route, model, payload, api_key, timeout)) as resp:
                status, content = resp.status, await resp.read()
        except TimeoutError:
            raise UpstreamError("timeout", 0, f"{provider.name} did not answer within {timeout:.1f}s") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError("connect", 0, f"cannot reach {provider.name} ({type(exc).__name__})") from None
        if status >= 400:
            raise _status_error(provider, status, content, api_key)
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise UpstreamError("garbage", status, f"{provider.name} answered with a body that is not JSON")
        return Reply(body)

    async def stream(
        self, route: Route, model: Model, payload: dict[str, Any], api_key: str | None, timeout: float
    ) -> AsyncIterator[Event]:
        provider = model.provider
        try:
            resp = await self._session(provider).post(**self._request(route, model, payload, api_key, timeout))
        except TimeoutError:
            raise UpstreamError("timeout", 0, f"{provider.name} did not answer within {timeout:.1f}s") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError("connect", 0, f"cannot reach {provider.name} ({type(exc).__name__})") from None
        try:
            if resp.status >= 400:
                raise _status_error(provider, resp.status, await _read(resp, provider), api_key)
            async for data in _sse_payloads(resp, provider):
                if data == b"[DONE]":
                    await _drain(resp)
                    return
                try:
                    obj = orjson.loads(data)
                except orjson.JSONDecodeError:
                    obj = None
                if not isinstance(obj, dict):
                    raise UpstreamError("garbage", 200, f"{provider.name} streamed a payload that is not JSON")
                if route == "responses" and obj.get("type") == "error":
                    obj = {"error": obj}
                if "error" in obj and "choices" not in obj:
                    error = obj["error"]
                    text = error.get("message", "") if isinstance(error, dict) else str(error)
                    raise UpstreamError(
                        "http",
                        502,
                        f"{provider.name} ended the stream with an error: " + safe_message(str(text), api_key),
                    )
                yield Event(data, obj)
            # A body that ended without `[DONE]` was cut short, however cleanly the connection closed (a Responses
            # stream has no `[DONE]`: its last event says it is whole, which the pipeline checks).
            if route != "responses":
                raise UpstreamError("cut", 0, f"{provider.name} ended the stream without [DONE]")
        finally:
            resp.release()

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


async def _drain(resp: aiohttp.ClientResponse) -> None:
    """Read what follows `[DONE]` (the end of the chunked body), so the connection goes back to the pool."""
    try:
        async with asyncio.timeout(1.0):
            while await resp.content.readany():
                pass
    except (TimeoutError, aiohttp.ClientError):
        resp.close()


async def _read(resp: aiohttp.ClientResponse, provider: Provider) -> bytes:
    try:
        return await resp.read()
    except (TimeoutError, aiohttp.ClientError):
        raise UpstreamError("cut", 0, f"{provider.name} broke off its answer") from None


async def _sse_payloads(resp: aiohttp.ClientResponse, provider: Provider) -> AsyncIterator[bytes]:
    """The `data:` payloads of a server-sent event stream, one per event."""
    buffer = b""
    data: list[bytes] = []
    try:
        async for piece in resp.content.iter_any():
            buffer += piece
            while True:
                end = buffer.find(b"\n")
                if end < 0:
                    break
                line = buffer[:end].rstrip(b"\r")
                buffer = buffer[end + 1 :]
                if not line:
                    if data:
                        yield data[0] if len(data) == 1 else b"\n".join(data)
                        data = []
                elif line.startswith(b"data:"):
                    data.append(line[6:] if line[5:6] == b" " else line[5:])
                elif not line.startswith((b":", b"event:", b"id:", b"retry:")) and not data:
                    raise UpstreamError("garbage", resp.status, f"{provider.name} did not answer with an event stream")
    except TimeoutError:
        raise UpstreamError("timeout", 0, f"{provider.name} stopped sending within the read timeout") from None
    except aiohttp.ClientError as exc:
        raise UpstreamError("cut", 0, f"{provider.name} broke off the stream ({type(exc).__name__})") from None
    rest = buffer.strip()
    if rest.startswith(b"data:"):
        data.append(rest[5:].lstrip(b" "))
    elif rest:
        raise UpstreamError("garbage", resp.status, f"{provider.name} did not answer with an event stream")
    if data:
        yield b"\n".join(data)


def _status_error(provider: Provider, status: int, content: bytes, api_key: str | None) -> UpstreamError:
    detail = ""
    try:
        body = orjson.loads(content)
        error = body.get("error") if isinstance(body, dict) else None
        detail = str(error.get("message", "")) if isinstance(error, dict) else str(error or "")
    except orjson.JSONDecodeError:
        pass
    text = f"{provider.name} answered HTTP {status}"
    if detail:
        text += ": " + safe_message(detail, api_key)
    return UpstreamError("http", status, text)
