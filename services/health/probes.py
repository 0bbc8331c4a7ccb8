"""Active probes: one cheap, unbilled call per target, its kind's own model listing, with a timeout.

OpenAI-compatible providers list at `GET {api_base}/models` with `Authorization: Bearer`; Anthropic at
`GET {api_base}/v1/models` with `x-api-key` and `anthropic-version`; Gemini at `GET {api_base}/v1beta/models`
with `x-goog-api-key` (a base that already ends in the version keeps it). The platform key from the
provider's `api_key_env` is sent, in that kind's header only, when the variable is set; the key never
appears in a result. Without a key, a 401/403 still proves the endpoint answers and counts as reachable.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from services.health.targets import Target
from services.runtime.logging import register_secret

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    latency_ms: float
    http_status: int  # 0 for connect errors and timeouts
    error: str  # empty when ok; never quotes the provider's answer or the key
    checked: float  # wall-clock seconds


ANTHROPIC_VERSION = "2023-06-01"
# kind -> (the version segment its listing lives under, or "" for the base itself)
_LISTING_VERSION = {"openai": "", "anthropic": "/v1", "gemini": "/v1beta"}


def listing_path(target: Target) -> str:
    """The path (after the host) of the target's model listing."""
    version = _LISTING_VERSION.get(target.kind, "")
    base = target.base_url
    if version and not base.endswith(("/v1", "/v1beta", "/v1alpha")):
        base += version
    return f"{base}/models"


def _headers(target: Target) -> tuple[dict[str, str], bool]:
    headers = {"anthropic-version": ANTHROPIC_VERSION} if target.kind == "anthropic" else {}
    key = os.environ.get(target.api_key_env, "") if target.api_key_env else ""
    if not key:
        return headers, False
    register_secret(key)
    if target.kind == "anthropic":
        headers["x-api-key"] = key
    elif target.kind == "gemini":
        headers["x-goog-api-key"] = key
    else:
        headers["authorization"] = f"Bearer {key}"
    return headers, True


def judge(status: int, keyed: bool, path: str = "/models") -> tuple[bool, str]:
    """Whether an HTTP answer to the probe means the provider is up, and the error when it is not."""
    if 200 <= status < 300 or status == 429:
        return True, ""
    if status in (401, 403):
        return (False, f"the platform key was rejected (HTTP {status})") if keyed else (True, "")
    return False, f"GET {path} answered HTTP {status}"


class Prober:
    """Probes targets over one pooled HTTP client."""

    def __init__(
        self,
        timeout: float,
        clock: Clock = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.timeout = timeout
        self.clock = clock
        self._client = httpx.AsyncClient(transport=transport, follow_redirects=False)

    async def probe(self, target: Target) -> ProbeResult:
        timeout = min(self.timeout, target.timeout_s) if target.timeout_s > 0 else self.timeout
        headers, keyed = _headers(target)
        url = listing_path(target)
        started = time.perf_counter()
        try:
            response = await self._client.get(url, headers=headers, timeout=timeout)
            await response.aclose()
        except httpx.TimeoutException:
            return self._result(False, started, 0, f"no answer within {timeout:g}s")
        except httpx.HTTPError as exc:
            return self._result(False, started, 0, f"cannot connect ({type(exc).__name__})")
        ok, error = judge(response.status_code, keyed, httpx.URL(url).path)
        return self._result(ok, started, response.status_code, error)

    def _result(self, ok: bool, started: float, status: int, error: str) -> ProbeResult:
        latency = (time.perf_counter() - started) * 1000
        return ProbeResult(ok, latency, status, error, self.clock())

    async def aclose(self) -> None:
        await self._client.aclose()
