"""Active probes: one cheap, unbilled call per target (GET `{api_base}/models`) with a timeout.

The platform key from the provider's `api_key_env` is sent when that variable is set; the key never
appears in a result. Without a key, a 401/403 still proves the endpoint answers and counts as reachable.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

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


def _headers(target: Target) -> tuple[dict[str, str], bool]:
    key = os.environ.get(target.api_key_env, "") if target.api_key_env else ""
    if not key:
        return {}, False
    register_secret(key)
    headers = {"authorization": f"Bearer {key}"}
    if (urlsplit(target.base_url).hostname or "").endswith("anthropic.com"):
        headers |= {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return headers, True


def judge(status: int, keyed: bool) -> tuple[bool, str]:
    """Whether an HTTP answer to the probe means the provider is up, and the error when it is not."""
    if 200 <= status < 300 or status == 429:
        return True, ""
    if status in (401, 403):
        return (False, f"the platform key was rejected (HTTP {status})") if keyed else (True, "")
    return False, f"GET /models answered HTTP {status}"


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
        started = time.perf_counter()
        try:
            response = await self._client.get(f"{target.base_url}/models", headers=headers, timeout=timeout)
            await response.aclose()
        except httpx.TimeoutException:
            return self._result(False, started, 0, f"no answer within {timeout:g}s")
        except httpx.HTTPError as exc:
            return self._result(False, started, 0, f"cannot connect ({type(exc).__name__})")
        ok, error = judge(response.status_code, keyed)
        return self._result(ok, started, response.status_code, error)

    def _result(self, ok: bool, started: float, status: int, error: str) -> ProbeResult:
        latency = (time.perf_counter() - started) * 1000
        return ProbeResult(ok, latency, status, error, self.clock())

    async def aclose(self) -> None:
        await self._client.aclose()
