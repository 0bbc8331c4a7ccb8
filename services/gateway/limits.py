"""Rate limits per API key and per user: requests and tokens per minute, with OpenAI's headers; and failed
authentications per client address.

Requests are counted when they arrive; tokens when the provider has reported them, so a request is
refused for tokens once the minute's tokens are spent. The limits of a key come from the key itself
(set when it was created) or from the gateway's defaults; a user's limits cover all of their keys.
An address that presented `auth_failure_limit` refused keys within a minute gets 429 for every key it
presents until the minute ends, so guessing keys costs a minute per few guesses.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from prometheus_client import Counter

from services.gateway.settings import GatewaySettings
from services.gateway.store import Store, Verdict, Window
from services.runtime.errors import DomainError
from tollgate.keyvault.v1 import keyvault_pb2

LIMITED = Counter("tollgate_rate_limited_total", "Requests refused by a rate limit", ["scope", "kind"])
WINDOW = 60


def _reset(seconds: float) -> str:
    """OpenAI's reset format: `1s`, `6m0s`."""
    whole = max(1, math.ceil(seconds))
    return f"{whole // 60}m{whole % 60}s" if whole >= 60 else f"{whole}s"


@dataclass(frozen=True)
class Admission:
    windows: tuple[Window, ...]
    verdict: Verdict

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        left = WINDOW - (time.time() % WINDOW)
        for kind, requests in (("requests", True), ("tokens", False)):
            # The key's own window when it has a limit, else the user's.
            pairs = [
                (w, used)
                for w, used in zip(self.windows, self.verdict.used, strict=True)
                if w.requests is requests and w.limit > 0
            ]
            if not pairs:
                continue
            window, used = min(pairs, key=lambda p: p[0].limit - p[1])
            out[f"x-ratelimit-limit-{kind}"] = str(window.limit)
            out[f"x-ratelimit-remaining-{kind}"] = str(max(0, window.limit - used))
            out[f"x-ratelimit-reset-{kind}"] = _reset(left)
        return out


class Limiter:
    def __init__(self, settings: GatewaySettings, store: Store) -> None:
        self.settings = settings
        self.store = store

    def _windows(self, principal: keyvault_pb2.Principal) -> tuple[Window, ...]:
        s, slot = self.settings, int(time.time() // WINDOW)
        key_rpm = principal.rpm_limit or s.rate_limit_key_rpm
        key_tpm = principal.tpm_limit or s.rate_limit_key_tpm
        return (
            Window(f"rl:key:{principal.key_id}:r:{slot}", key_rpm, True),
            Window(f"rl:user:{principal.user_id}:r:{slot}", s.rate_limit_user_rpm, True),
            Window(f"rl:key:{principal.key_id}:t:{slot}", key_tpm, False),
            Window(f"rl:user:{principal.user_id}:t:{slot}", s.rate_limit_user_tpm, False),
        )

    def active(self, principal: keyvault_pb2.Principal) -> bool:
        s = self.settings
        return bool(
            principal.rpm_limit
            or principal.tpm_limit
            or s.rate_limit_key_rpm
            or s.rate_limit_key_tpm
            or s.rate_limit_user_rpm
            or s.rate_limit_user_tpm
        )

    async def admit(self, principal: keyvault_pb2.Principal) -> Admission | None:
        """Count this request, or refuse it with a 429 carrying `Retry-After` and the limit headers."""
        if not self.active(principal):
            return None
        windows = self._windows(principal)
        verdict = await self.store.check(windows, WINDOW)
        admission = Admission(windows, verdict)
        if not verdict.allowed:
            blocked = windows[verdict.blocked]
            scope = "key" if blocked.key.startswith("rl:key:") else "user"
            kind = "requests" if blocked.requests else "tokens"
            LIMITED.labels(scope, kind).inc()
            raise RateLimited(
                f"Rate limit reached for {kind} per minute on this {'API key' if scope == 'key' else 'user'}: "
                f"limit {blocked.limit}. Retry after {math.ceil(verdict.retry_after)}s.",
                {**admission.headers(), "retry-after": str(max(1, math.ceil(verdict.retry_after)))},
            )
        return admission

    async def spend(self, admission: Admission | None, tokens: int) -> None:
        """Count the tokens a finished request used."""
        if admission is None or tokens <= 0:
            return
        for window in admission.windows:
            if not window.requests and window.limit > 0:
                await self.store.add(window.key, tokens, WINDOW)


class RateLimited(DomainError):
    def __init__(self, message: str, headers: dict[str, str]) -> None:
        super().__init__("rate_limit_exceeded", message)
        self.headers = headers


class AuthFailures:
    """Failed authentications per client address and minute (shared through Redis when configured)."""

    def __init__(self, limit: int, store: Store) -> None:
        self.limit = limit
        self.store = store

    @staticmethod
    def _window(address: str) -> str:
        return f"rl:authfail:{address}:{int(time.time() // WINDOW)}"

    async def admit(self, address: str) -> None:
        """Refuse to look at any key from an address that has failed too often this minute."""
        if self.limit <= 0:
            return
        verdict = await self.store.check((Window(self._window(address), self.limit, False),), WINDOW)
        if not verdict.allowed:
            LIMITED.labels("address", "auth_failures").inc()
            wait = max(1, math.ceil(verdict.retry_after))
            raise RateLimited(
                f"Too many failed authentications from this address: limit {self.limit} per minute. "
                f"Retry after {wait}s.",
                {"retry-after": str(wait)},
            )

    async def failed(self, address: str) -> None:
        if self.limit > 0:
            await self.store.add(self._window(address), 1, WINDOW)
