"""Client channels to the other services: one persistent channel per address, deadlines on every call.

Every call on these channels carries this process's identity (`identity.use`), signed for its callee.

Addresses may name several replicas (`dns:///router:50051` resolves to every pod of a headless
Service); the `round_robin` policy then spreads calls over all of them instead of pinning one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import grpc
import orjson

from services.runtime import tracing
from services.runtime.identity import SignedChannel
from services.runtime.logging import request_id

# No retry policy: a call that reached a service is never repeated behind the caller's back (a repeated
# Chat would reach the provider twice). gRPC still retries transparently what never left the client.
_SERVICE_CONFIG = orjson.dumps({"loadBalancingConfig": [{"round_robin": {}}]}).decode()

CHANNEL_OPTIONS = [
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.max_send_message_length", 32 * 1024 * 1024),
    # A restarted service is used again within half a second of listening: gRPC's default back-off grows to
    # 120 s, and meanwhile every call fails fast (UNAVAILABLE) although the service is back.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]

_channels: dict[str, grpc.aio.Channel] = {}


def channel(address: str) -> grpc.aio.Channel:
    """The process-wide channel to `address`, created on first use; its calls are signed."""
    chan = _channels.get(address)
    if chan is None:
        chan = _channels[address] = SignedChannel(grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS))
    return chan


async def close_all() -> None:
    for chan in list(_channels.values()):
        await chan.close()
    _channels.clear()


def metadata(extra: Sequence[tuple[str, str]] = ()) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying the current request id and, when tracing, the trace context."""
    rid = request_id.get()
    return ((("x-request-id", rid),) if rid else ()) + tuple(tracing.inject()) + tuple(extra)


class Deadline:
    """An absolute deadline; each call gets what is left of it, capped."""

    __slots__ = ("expires",)

    def __init__(self, seconds: float) -> None:
        self.expires = time.monotonic() + seconds

    @classmethod
    def of(cls, context: grpc.aio.ServicerContext[object, object], default: float) -> Deadline:
        """The deadline of the incoming call, or `default` seconds when the caller set none."""
        remaining = context.time_remaining()
        return cls(remaining if remaining is not None else default)

    def remaining(self, cap: float | None = None) -> float:
        left = max(0.001, self.expires - time.monotonic())
        return min(left, cap) if cap is not None else left

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.expires
