"""OpenTelemetry traces across the hops: HTTP at the gateway, then every gRPC call between services.

Off unless `TOLLGATE_TRACING=true`, so a request pays nothing for it by default. When on, the gateway
opens a span per HTTP request, `channels.metadata()` carries the W3C `traceparent` on every gRPC call,
and the `@rpc` decorator continues the trace on the serving side. Spans go to the OTLP/HTTP endpoint in
`TOLLGATE_OTLP_ENDPOINT` when set (any OpenTelemetry collector), or to the exporter a test passes in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from services.runtime.settings import CommonSettings

_state = {"enabled": False}
tracer = trace.get_tracer("tollgate")


def enabled() -> bool:
    return _state["enabled"]


def setup(service: str, settings: CommonSettings, exporter: SpanExporter | None = None) -> None:
    """Install the tracer provider of this process (once)."""
    if exporter is None and not settings.tracing:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"tollgate-{service}"}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    trace.set_tracer_provider(provider)
    global tracer
    tracer = provider.get_tracer("tollgate")
    _state["enabled"] = True


def inject() -> list[tuple[str, str]]:
    """The current trace context as gRPC metadata pairs."""
    if not _state["enabled"]:
        return []
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return list(carrier.items())


@contextmanager
def server_span(
    name: str, metadata: Iterable[tuple[str, Any]] | Mapping[str, Any] | None, **attributes: Any
) -> Iterator[trace.Span | None]:
    """A SERVER span continuing the trace the caller sent (no-op while tracing is off)."""
    if not _state["enabled"]:
        with nullcontext():
            yield None
        return
    carrier = dict(metadata.items() if isinstance(metadata, Mapping) else (metadata or ()))
    parent = propagate.extract({k: v for k, v in carrier.items() if isinstance(v, str)})
    with tracer.start_as_current_span(name, context=parent, kind=trace.SpanKind.SERVER, attributes=attributes) as span:
        yield span
