"""The gateway's Prometheus metrics, served on their own port (`TOLLGATE_GATEWAY_METRICS_PORT`), never on the
public one: they name every provider, model and route with its traffic.

With several uvicorn workers each worker counts into files of its own in one folder (prometheus_client's
multiprocess mode) and the supervising process serves their sum, so a scrape sees every worker and a worker
that died or was restarted loses none of what it counted. The folder is made fresh at each start and removed
at exit; nothing of an earlier run is ever added in.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, start_http_server
from prometheus_client.metrics_core import Metric

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


MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_PID_FILE = re.compile(r"_(\d+)\.db$")
log = logging.getLogger("tollgate.gateway")


def serve(host: str, port: int) -> None:
    """`/metrics` of a single-process gateway over HTTP on `port` (0: off); a worker of several leaves it to
    the supervising process (`serve_workers`)."""
    if not port or os.environ.get(MULTIPROCESS_ENV):
        return
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.warning("metrics port %d not served: %s", port, exc)


def worker_stopped() -> None:
    """A worker's last word: its live gauges leave the sum (its counters stay in it)."""
    if os.environ.get(MULTIPROCESS_ENV):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def shared_folder(parent: str) -> Path:
    """A fresh folder the workers count into, announced to them through the environment they inherit."""
    base = Path(parent) if parent else None
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="tollgate-gateway-metrics-", dir=base))
    os.environ[MULTIPROCESS_ENV] = str(folder)
    return folder


def remove_folder(folder: Path) -> None:
    os.environ.pop(MULTIPROCESS_ENV, None)
    shutil.rmtree(folder, ignore_errors=True)


class _Workers:
    """The sum over every worker's files; the live gauges of workers that are gone are dropped first."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._sum = multiprocess.MultiProcessCollector(None, str(folder))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        for pid in {int(m.group(1)) for f in self.folder.glob("*.db") if (m := _PID_FILE.search(f.name))}:
            if not _alive(pid):
                multiprocess.mark_process_dead(pid, str(self.folder))  # type: ignore[no-untyped-call]
        found: Iterable[Metric] = self._sum.collect()  # type: ignore[no-untyped-call]
        return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def serve_workers(host: str, port: int, folder: Path) -> None:
    """`/metrics` of every worker, served by the supervising process (0: off)."""
    if not port:
        return
    registry = CollectorRegistry()
    registry.register(_Workers(folder))
    start_http_server(port, addr=host, registry=registry)
