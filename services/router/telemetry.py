"""What each provider attempt leaves for operators: a Prometheus sample and an OpenTelemetry span.

The span follows OpenTelemetry's GenAI semantic conventions (`gen_ai.system`, `gen_ai.operation.name`,
`gen_ai.request.model`, `gen_ai.response.model`, `gen_ai.usage.*`, `server.address`) and is a CLIENT child
of the router's Chat/Complete/Embed span, beside the credits Reserve and Settle spans of the same attempt.
Neither carries the prompt, a key, a user or the provider's error text: labels are catalog names and
result words, the span's error is the failure's kind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from prometheus_client import Counter, Histogram

from services.router.catalog import Model
from services.runtime import tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span

ATTEMPTS = Counter(
    "tollgate_provider_attempts_total",
    "Provider calls by provider and result (ok, error, cut, cancelled)",
    ["provider", "result"],
)
ATTEMPT_SECONDS = Histogram(
    "tollgate_provider_attempt_seconds",
    "Time a provider took to answer one attempt (a stream: until its end)",
    ["provider", "result"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)
FALLBACKS = Counter(
    "tollgate_router_fallbacks_total", "Requests answered by another candidate than the first", ["route"]
)
EXHAUSTED = Counter(
    "tollgate_fallback_exhausted_total",
    "Requests no candidate could answer: every attempt failed, none could be tried, or time ran out",
    ["route", "code"],
)
SETTLES_REFUSED = Counter(
    "tollgate_router_settles_refused_total",
    "Settles made after their answers that credits refused (the answer went out unpaid: investigate each)",
)

_OPERATIONS = {"chat": "chat", "completion": "text_completion", "embedding": "embeddings", "responses": "chat"}


@dataclass(slots=True)
class AttemptRecord:
    """One provider attempt, from the moment it is sent to the provider's answer (a stream: its end)."""

    route: str
    model: Model
    attempt: int
    began: float = field(default_factory=time.monotonic)
    span: Span | None = None

    def start(self) -> AttemptRecord:
        host = urlsplit(self.model.provider.api_base)
        attributes: dict[str, str | int] = {
            "gen_ai.system": self.model.provider.name,
            "gen_ai.operation.name": _OPERATIONS.get(self.route, self.route),
            "gen_ai.request.model": self.model.upstream,
            "tollgate.model": self.model.id,
            "tollgate.attempt": self.attempt,
        }
        if host.hostname:
            attributes["server.address"] = host.hostname
            if host.port:
                attributes["server.port"] = host.port
        name = f"{attributes['gen_ai.operation.name']} {self.model.upstream}"
        self.span = tracing.client_span(name, attributes)
        return self

    def finish(
        self,
        result: str,
        status: int = 0,
        error: str = "",
        prompt: int | None = None,
        completion: int | None = None,
        response_model: str = "",
    ) -> None:
        """Count the attempt and end its span: `result` ok | error | cut | cancelled; `error` a failure's kind."""
        provider = self.model.provider.name
        ATTEMPTS.labels(provider, result).inc()
        ATTEMPT_SECONDS.labels(provider, result).observe(time.monotonic() - self.began)
        if self.span is None:
            return
        attributes: dict[str, str | int] = {"tollgate.result": result}
        if status:
            attributes["http.response.status_code"] = status
        if prompt is not None:
            attributes["gen_ai.usage.input_tokens"] = prompt
        if completion is not None:
            attributes["gen_ai.usage.output_tokens"] = completion
        if response_model:
            attributes["gen_ai.response.model"] = response_model
        tracing.end_span(self.span, attributes, error)
        self.span = None


def fell_back(route: str, fallbacks: int) -> None:
    if fallbacks:
        FALLBACKS.labels(route).inc()


def exhausted(route: str, code: str) -> None:
    EXHAUSTED.labels(route, code).inc()
