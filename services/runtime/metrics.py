"""Prometheus metrics: the ones every service shares, and the `/metrics` endpoint of the gRPC services.

Labels never carry a secret or a user-controlled string of unbounded size: routes are templates,
models and providers come from the catalog.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

RPC_SECONDS = Histogram(
    "tollgate_rpc_seconds",
    "Time to serve one gRPC call",
    ["method", "code"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RPC_ERRORS = Counter("tollgate_rpc_errors_total", "gRPC calls that ended in a domain error", ["method", "code"])


def serve(host: str, port: int) -> None:
    """Expose `/metrics` over HTTP on `port` (0: not exposed)."""
    if port:
        start_http_server(port, addr=host)
