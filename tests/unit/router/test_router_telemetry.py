"""Each provider attempt is one CLIENT span with the GenAI attributes and one sample, whatever the route."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY

from services.router.pipeline import Caller, Router
from services.router.request import parse
from services.runtime import tracing
from services.runtime.channels import Deadline
from services.runtime.errors import DomainError

PROMPT = "telemetry prompt canary 81f2"


def caller() -> Caller:
    return Caller(request_id=uuid.uuid4().hex, user_id="u1", key_id="k1", deadline=Deadline(10))


def chat(model: str, **extra: Any) -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": PROMPT}], **extra})


def attempts(exporter: InMemorySpanExporter) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.attributes and "gen_ai.system" in s.attributes]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_fallback_is_two_attempt_spans_under_the_callers(router: Router, spans: InMemorySpanExporter) -> None:
    before = sample("tollgate_provider_attempts_total", provider="up", result="error")
    with tracing.tracer.start_as_current_span("Chat") as parent:
        _body, outcome = await router.complete(parse("chat", chat("broken-500")), caller())
    failed, answered = attempts(spans)
    assert [s.attributes["tollgate.attempt"] for s in (failed, answered)] == [1, 2]
    assert all(s.kind is SpanKind.CLIENT for s in (failed, answered))
    assert all(
        s.parent is not None and s.parent.span_id == parent.get_span_context().span_id for s in (failed, answered)
    )
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "http" and failed.attributes["http.response.status_code"] == 500
    assert failed.attributes["gen_ai.request.model"] == "fail-500"
    assert answered.name == "chat demo-echo"
    assert answered.attributes["gen_ai.system"] == "backup"
    assert answered.attributes["tollgate.model"] == "spare"
    assert answered.attributes["server.address"] == "127.0.0.1"
    assert answered.attributes["gen_ai.usage.input_tokens"] == outcome.prompt_tokens
    assert answered.attributes["gen_ai.usage.output_tokens"] == outcome.completion_tokens
    assert sample("tollgate_provider_attempts_total", provider="up", result="error") == before + 1
    for span in (failed, answered):
        assert PROMPT not in str(dict(span.attributes or {}))


async def test_a_stream_span_ends_with_the_stream_and_its_tokens(router: Router, spans: InMemorySpanExporter) -> None:
    events = [e async for e in router.stream(parse("chat", chat("echo", stream=True)), caller())]
    outcome = events[-1].outcome
    (span,) = attempts(spans)
    assert span.attributes is not None
    assert span.attributes["tollgate.result"] == "ok"
    assert span.attributes["gen_ai.usage.output_tokens"] == outcome.completion_tokens > 0
    assert span.status.status_code is not StatusCode.ERROR


async def test_a_stream_cut_short_is_an_error_span(router: Router, spans: InMemorySpanExporter) -> None:
    [e async for e in router.stream(parse("chat", chat("cut", stream=True)), caller())]
    (span,) = attempts(spans)
    assert span.attributes is not None
    assert span.attributes["tollgate.result"] == "cut" and span.attributes["error.type"] == "cut"


async def test_an_exhausted_chain_is_counted_by_its_code(router: Router) -> None:
    before = sample("tollgate_fallback_exhausted_total", route="chat", code="provider_unavailable")
    with pytest.raises(DomainError):
        await router.complete(parse("chat", chat("unreachable", power_level="custom")), caller())
    assert sample("tollgate_fallback_exhausted_total", route="chat", code="provider_unavailable") == before + 1
