"""The `litellm` adapter: providers that do not speak OpenAI's API (Anthropic and anything litellm supports).

`litellm` is imported on first use only, so a router whose catalog has no litellm provider never pays
for the import. Replies and stream chunks come back as the same OpenAI-shaped objects the `openai`
adapter yields. Only the route's documented parameters reach litellm (`params.outgoing`), never as
one of its own call options; the model, URL, key, timeout and retries are set from the catalog here.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import orjson

from services.router import params
from services.router.adapters.base import Event, Reply, Route, UpstreamError, safe_message
from services.router.catalog import Model

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
    return body


class LiteLLMAdapter:
    async def _invoke(
        self, route: Route, model: Model, payload: dict[str, Any], api_key: str | None, timeout: float
    ) -> Any:
        lib = _litellm()
        provider = model.provider
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
