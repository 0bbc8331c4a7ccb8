"""Traces and request ids cross the hops: HTTP into the gateway, then a real gRPC call to a service."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from services.runtime import tracing
from services.runtime.channels import metadata
from services.runtime.errors import rpc
from services.runtime.logging import request_id
from tests import identities
from tests.conftest import free_port
from tollgate.health.v1 import health_pb2, health_pb2_grpc


class Echo(health_pb2_grpc.ProviderHealthServicer):
    seen: list[str] = []

    @rpc
    async def ListProviders(self, request: Any, context: Any) -> health_pb2.ListProvidersReply:
        self.seen.append(request_id.get())
        return health_pb2.ListProvidersReply()


async def test_grpc_hop_continues_the_trace_and_the_request_id(spans: InMemorySpanExporter) -> None:
    server = grpc.aio.server()
    health_pb2_grpc.add_ProviderHealthServicer_to_server(Echo(), server)  # type: ignore[abstract]
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
            token = request_id.set("req-42")
            with tracing.tracer.start_as_current_span("caller") as caller:
                await health_pb2_grpc.ProviderHealthStub(chan).ListProviders(
                    health_pb2.ListProvidersRequest(), metadata=metadata(), timeout=5
                )
            request_id.reset(token)
    finally:
        await server.stop(None)
    served = next(s for s in spans.get_finished_spans() if s.name == "ListProviders")
    assert served.parent is not None
    assert served.context.trace_id == caller.get_span_context().trace_id
    assert served.parent.span_id == caller.get_span_context().span_id
    assert Echo.seen[-1] == "req-42"


async def test_gateway_span_joins_the_callers_trace(spans: InMemorySpanExporter) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    app = create_app(GatewaySettings(gateway_identity_key=identities.SECRETS["gateway"]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        reply = await client.get("/health", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    assert reply.status_code == 200
    http_span = next(s for s in spans.get_finished_spans() if s.name == "HTTP GET")
    assert format(http_span.context.trace_id, "032x") == trace_id
