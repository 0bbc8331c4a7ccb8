"""The `litellm` adapter: providers that do not speak OpenAI's API (Anthropic and anything litellm supports).

`litellm` is imported on first use only, so a router whose catalog has no litellm provider never pays
for the import. Replies and stream chunks come back as the same OpenAI-shaped objects the `openai`
adapter yields. Only the route's documented parameters reach litellm (`params.outgoing`), never as
one of its own call options; the model, URL, key, timeout and retries are set from the catalog here.
litellm downloads image URLs itself for providers that take only inline images (Anthropic among them):
a URL whose host is not on the public internet is refused before the call, so a body cannot make the
router fetch from its own network (loopback, private ranges, the metadata address).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import orjson

from services.router import params
from services.router.adapters.base import Event, Reply, Route, UpstreamError, safe_message
from services.router.catalog import Model
from services.runtime.errors import DomainError

_module: ModuleType | None = None


def _litellm() -> ModuleType:
    global _module
    if _module is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        _module = litellm
    return _module


def _dump(obj: Any) -> dict[str, Any]:
    body = obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)
    for private in [k for k in body if k.startswith("_")]:
        del body[private]
    for choice in body.get("choices") or ():
        if isinstance(choice, dict):
            choice.pop("provider_specific_fields", None)
            if isinstance(choice.get("delta"), dict):
                choice["delta"] = _present(choice["delta"])
    return body


def _present(value: Any) -> Any:
    """A stream delta without litellm's own fields and nulls (`tool_calls: [{"id": null, ...}]`): OpenAI sends
    only what a chunk adds."""
    if isinstance(value, dict):
        return {k: _present(v) for k, v in value.items() if v is not None and k != "provider_specific_fields"}
    if isinstance(value, list):
        return [_present(v) for v in value]
    return value


class LiteLLMAdapter:
    async def _invoke(
        self, route: Route, model: Model, payload: dict[str, Any], api_key: str | None, timeout: float
    ) -> Any:
        lib = _litellm()
        provider = model.provider
        await require_public_urls(payload)
        kwargs = params.outgoing(route, payload, litellm=True)
        kwargs.update(
            model=f"{provider.litellm_provider}/{model.upstream}",
            api_key=api_key or "no-key",
            timeout=timeout,
            num_retries=0,
            max_retries=0,
        )
        if provider.api_base:
            kwargs["api_base"] = provider.api_base
        call = {"chat": lib.acompletion, "completion": lib.atext_completion, "embedding": lib.aembedding}[route]
        try:
            return await call(**kwargs)
        except Exception as exc:
            raise _upstream_error(lib, model, exc, api_key) from None

    async def call(
        self, route: Route, model: Model, payload: dict[str, Any], api_key: str | None, timeout: float
    ) -> Reply:
        return Reply(_dump(await self._invoke(route, model, payload, api_key, timeout)))

    async def stream(
        self, route: Route, model: Model, payload: dict[str, Any], api_key: str | None, timeout: float
    ) -> AsyncIterator[Event]:
        lib = _litellm()
        chunks = await self._invoke(route, model, payload, api_key, timeout)
        try:
            async for chunk in chunks:
                obj = _dump(chunk)
                yield Event(orjson.dumps(obj), obj)
        except UpstreamError:
            raise
        except Exception as exc:
            err = _upstream_error(lib, model, exc, api_key)
            raise UpstreamError("cut", err.status, err.message) from None
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()

    async def close(self) -> None:
        if _module is not None:
            await _module.close_litellm_async_clients()


def _upstream_error(lib: ModuleType, model: Model, exc: BaseException, api_key: str | None) -> UpstreamError:
    name = model.provider.name
    if isinstance(exc, lib.Timeout):
        return UpstreamError("timeout", 0, f"{name} did not answer in time")
    if isinstance(exc, lib.APIConnectionError):
        return UpstreamError("connect", 0, f"cannot reach {name}")
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        return UpstreamError("garbage", 0, f"{name} failed: {safe_message(type(exc).__name__, api_key)}")
    detail = safe_message(str(getattr(exc, "message", "") or exc), api_key)
    return UpstreamError("http", status, f"{name} answered HTTP {status}: {detail}")


def _part_urls(payload: dict[str, Any]) -> Iterator[str]:
    for message in payload.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            if not isinstance(part, dict):
                continue
            for field in ("image_url", "file", "input_audio"):
                ref = part.get(field)
                url = ref.get("url") or ref.get("file_data") if isinstance(ref, dict) else ref
                if isinstance(url, str) and url[:8].lower().startswith(("http://", "https://")):
                    yield url


async def require_public_urls(payload: dict[str, Any], timeout: float = 2.0) -> None:
    """Refuse a part URL whose host resolves to anything but public addresses (litellm may fetch it)."""
    loop = asyncio.get_running_loop()
    for url in _part_urls(payload):
        host = urlsplit(url).hostname or ""
        try:
            found = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout)
            public = bool(found) and all(ipaddress.ip_address(info[4][0]).is_global for info in found)
        except (OSError, ValueError, TimeoutError):
            public = False
        if not public:
            raise DomainError(
                "invalid_request",
                f"the URL of a message part must name a public host ({host or 'none'} is not)",
                "messages",
            )
