"""The gateway's Prometheus metrics, served on their own port (`TOLLGATE_GATEWAY_METRICS_PORT`), never on the
public one: they name every provider, model and route with its traffic."""

from __future__ import annotations

import contextvars
import logging
import time

from prometheus_client import Counter, Histogram, start_http_server

from tollgate.router.v1 import router_pb2

_FAST = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter("tollgate_http_requests_total", "HTTP requests by route template and status", ["route", "status"])
LATENCY = Histogram(
    "tollgate_http_request_seconds", "HTTP request time until the response starts", ["route"], buckets=_FAST
)
COMPLETIONS = Counter("tollgate_completions_total", "Served completions", ["model", "provider", "byok"])
TOKENS = Counter("tollgate_tokens_total", "Tokens served", ["model", "provider", "kind"])
CREDITS = Counter("tollgate_credits_charged_micro_total", "Micro-credits charged", ["model", "provider"])
FALLBACKS = Counter("tollgate_fallbacks_total", "Attempts that moved to another candidate", ["model"])
OVERHEAD = Histogram(
    "tollgate_gateway_overhead_seconds",
    "Time the suite added to a completion: total minus time waiting on the provider",
    buckets=_FAST,
)

request_started: contextvars.ContextVar[float] = contextvars.ContextVar("request_started", default=0.0)


def overhead_ms(outcome: router_pb2.Outcome) -> float:
    """Milliseconds this request has spent in the suite itself so far, not counting the provider."""
    started = request_started.get()
    total = (time.perf_counter() - started) * 1000 if started else 0.0
    return max(0.0, total - outcome.upstream_ms)


def record(outcome: router_pb2.Outcome) -> float:
    """Count one finished completion; returns its overhead in milliseconds."""
    model, provider = outcome.model, outcome.provider
    COMPLETIONS.labels(model, provider, "true" if outcome.byok else "false").inc()
    TOKENS.labels(model, provider, "prompt").inc(outcome.prompt_tokens)
    TOKENS.labels(model, provider, "completion").inc(outcome.completion_tokens)
    if outcome.cost_micro:
        CREDITS.labels(model, provider).inc(outcome.cost_micro)
    if outcome.fallbacks:
        FALLBACKS.labels(model).inc(outcome.fallbacks)
    spent = overhead_ms(outcome)
    OVERHEAD.observe(spent / 1000)
    return spent


def serve(host: str, port: int) -> None:
    """`/metrics` over HTTP on `port` (0: off). With several workers, the first to bind it serves its own."""
    if not port:
        return
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        logging.getLogger("tollgate.gateway").warning("metrics port %d not served by this worker: %s", port, exc)
