"""OpenTelemetry traces across the hops: HTTP at the gateway, every gRPC call between services, each provider
attempt in the router.

Off unless `TOLLGATE_TRACING=true`; while off, OpenTelemetry is not even imported and every helper here is a
no-op, so a request pays nothing for it. When on, the gateway opens a span per HTTP request,
`channels.metadata()` carries the W3C `traceparent` on every gRPC call, the `@rpc` decorator continues the
trace on the serving side, and `client_span` opens the spans of outbound calls (a provider attempt). Spans go
to the OTLP/HTTP endpoint in `TOLLGATE_OTLP_ENDPOINT` when set (any OpenTelemetry collector), or to the
exporter a test passes in. Attributes never carry a secret or the prompt.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from services.runtime.settings import CommonSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

_state = {"enabled": False}
tracer: Any = None


def enabled() -> bool:
    return _state["enabled"]


def setup(service: str, settings: CommonSettings, exporter: SpanExporter | None = None) -> None:
    """Install the tracer provider of this process (once)."""
    if exporter is None and not settings.tracing:
        return
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

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
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return list(carrier.items())


@contextmanager
def server_span(
    name: str, metadata: Iterable[tuple[str, Any]] | Mapping[str, Any] | None, **attributes: Any
) -> Iterator[Span | None]:
    """A SERVER span continuing the trace the caller sent (no-op while tracing is off)."""
    if not _state["enabled"]:
        yield None
        return
    from opentelemetry import propagate, trace

    carrier = dict(metadata.items() if isinstance(metadata, Mapping) else (metadata or ()))
    parent = propagate.extract({k: v for k, v in carrier.items() if isinstance(v, str)})
    with tracer.start_as_current_span(name, context=parent, kind=trace.SpanKind.SERVER, attributes=attributes) as span:
        yield span


def client_span(name: str, attributes: Mapping[str, Any]) -> Span | None:
    """A CLIENT span, child of the current one, that the caller ends (`end_span`); None while tracing is off.

    Not made current: the attempt it describes may outlive the code that opened it (a stream)."""
    if not _state["enabled"]:
        return None
    from opentelemetry import trace

    span: Span = tracer.start_span(name, kind=trace.SpanKind.CLIENT, attributes=dict(attributes))
    return span


def end_span(span: Span | None, attributes: Mapping[str, Any], error: str = "", end_ns: int | None = None) -> None:
    """Add the attributes known at the end, mark an error (its type, never a provider's text) and end."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attributes(dict(attributes))
    if error:
        span.set_attribute("error.type", error)
        span.set_status(Status(StatusCode.ERROR))
    span.end(end_time=end_ns)
