"""Metrics and traces of the running suite: a two-worker gateway counted exactly, every service's families after
real traffic (checked by `promtool check metrics`), and one request as one trace across gateway, router, the
provider attempt and the ledger, exported over OTLP/HTTP to a receiver in this test.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.mmap_dict import MmapedDict

from services.launcher import Suite
from tests.conftest import free_port
from tests.e2e.support import PLATFORM_KEY, bearer, create_key, start_suite
from tests.promtool import promtool

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVICES = ("gateway", "router", "credits", "keyvault", "health")
PROMPT_CANARY = "observability-canary-prompt-5c1e"


@dataclass
class Receiver:
    """An OTLP/HTTP trace receiver: every span it was sent, with its service's name."""

    port: int
    spans: list[dict[str, Any]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        self.raw.append(body)
        for resource in request.resource_spans:
            service = next((a.value.string_value for a in resource.resource.attributes if a.key == "service.name"), "")
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    self.spans.append(
                        {
                            "service": service,
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "kind": span.kind,
                            "attributes": attributes,
                            "error": span.status.code == 2,
                        }
                    )

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        return [s for s in self.spans if s["trace_id"] == trace_id]


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            found.take(body)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", found.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()


@dataclass
class Observed:
    suite: Suite
    metrics_ports: dict[str, int]
    metrics_dir: Path
    key: str


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Observed]:
    tmp = tmp_path_factory.mktemp("observed")
    ports = {service: free_port() for service in SERVICES}
    env = {f"TOLLGATE_{service.upper()}_METRICS_PORT": str(port) for service, port in ports.items()}
    env |= {
        "TOLLGATE_GATEWAY_WORKERS": "2",
        "TOLLGATE_GATEWAY_METRICS_DIR": str(tmp / "gateway-metrics"),
        "TOLLGATE_TRACING": "true",
        "TOLLGATE_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}/v1/traces",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export spans within 0.1 s, not 5
        "TOLLGATE_CREDITS_METRICS_INTERVAL_SECONDS": "0.5",
        "TOLLGATE_GRACE_SECONDS": "1",  # nothing to drain at the end
    }
    running = start_suite(tmp, (), **env)
    try:
        yield Observed(running, ports, tmp / "gateway-metrics", running.bootstrap_keys()["demo_key"])
    finally:
        running.stop()
    # The gateway removes its workers' folder when it stops.
    assert list((tmp / "gateway-metrics").iterdir()) == []


def scrape(observed: Observed, service: str) -> str:
    reply = httpx.get(f"http://127.0.0.1:{observed.metrics_ports[service]}/metrics", timeout=10)
    reply.raise_for_status()
    return reply.text


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


def chat(observed: Observed, model: str, content: str = "hello there", key: str = "", **headers: str) -> httpx.Response:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": content}]}
    if model == "unreachable":
        body["power_level"] = "custom"  # that model alone: no fallback
    return httpx.post(
        f"{observed.suite.base_url}/chat/completions",
        headers={**bearer(key or observed.key), **headers},
        json=body,
        timeout=30,
    )


def served_per_worker(folder: Path) -> dict[int, float]:
    """What each worker's own files say it served on /health."""
    (run,) = list(folder.iterdir())
    counts: dict[int, float] = {}
    for path in run.glob("counter_*.db"):
        pid = int(path.stem.removeprefix("counter_"))
        for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):  # type: ignore[no-untyped-call]
            _metric, name, labels, _help = json.loads(key)
            if name == "tollgate_http_requests_total" and labels.get("route") == "/health":
                counts[pid] = counts.get(pid, 0.0) + value
    return counts


def test_two_gateway_workers_are_counted_exactly(observed: Observed) -> None:
    url = f"http://127.0.0.1:{observed.suite.ports.gateway}/health"
    before = sample(scrape(observed, "gateway"), "tollgate_http_requests_total", route="/health")
    sent = 0

    def one(_: int) -> int:
        # A connection per request, so the kernel hands them to whichever worker accepts first.
        return httpx.get(url, headers={"connection": "close"}, timeout=10).status_code

    with ThreadPoolExecutor(8) as pool:
        for _ in range(30):
            assert set(pool.map(one, range(16))) == {200}
            sent += 16
            if len([n for n in served_per_worker(observed.metrics_dir).values() if n > 0]) >= 2:
                break
    per_worker = served_per_worker(observed.metrics_dir)
    assert len([n for n in per_worker.values() if n > 0]) == 2, per_worker
    after = sample(scrape(observed, "gateway"), "tollgate_http_requests_total", route="/health")
    assert after - before == sent
    assert sum(per_worker.values()) == after


def test_every_service_exposes_its_families_after_traffic(observed: Observed) -> None:
    assert chat(observed, "echo-paid").status_code == 200
    assert chat(observed, "flaky").status_code == 200  # its provider fails; the next candidate answers
    assert chat(observed, "unreachable").status_code in (502, 503)  # no candidate could be tried
    streamed = httpx.post(
        f"{observed.suite.base_url}/chat/completions",
        headers=bearer(observed.key),
        json={"model": "echo-paid", "stream": True, "messages": [{"role": "user", "content": "stream please"}]},
        timeout=30,
    )
    assert streamed.status_code == 200 and "[DONE]" in streamed.text
    junk = f"junk{uuid.uuid4().hex}"
    assert chat(observed, junk).status_code == 404  # an unknown model
    unknown = httpx.get(f"{observed.suite.base_url}/{junk}", headers={**bearer(observed.key), "x-request-id": junk})
    assert unknown.status_code == 404
    settled = time.time()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the ledger's standing read again after the last settlement
        if sample(scrape(observed, "credits"), "tollgate_ledger_metrics_last_read_timestamp_seconds") > settled:
            break
        time.sleep(0.1)

    gateway = scrape(observed, "gateway")
    assert sample(gateway, "tollgate_http_requests_total", route="/v1/chat/completions", status="200") >= 2
    for family in ("tollgate_gateway_overhead_seconds", "tollgate_cache_total", "tollgate_rate_limited_total"):
        assert f"# TYPE {family} " in gateway

    router = scrape(observed, "router")
    assert sample(router, "tollgate_provider_attempts_total", provider="fake", result="ok") >= 2
    assert sample(router, "tollgate_provider_attempts_total", provider="fake", result="error") >= 1
    assert sample(router, "tollgate_provider_attempt_seconds_count", provider="fake") >= 3
    assert sample(router, "tollgate_fallback_exhausted_total", code="provider_unavailable") >= 1
    assert sample(router, "tollgate_router_fallbacks_total", route="chat") >= 1

    credits = scrape(observed, "credits")
    assert sample(credits, "tollgate_ledger_operations_total", operation="reserve", outcome="ok") >= 3
    assert sample(credits, "tollgate_ledger_operations_total", operation="settle", outcome="ok") >= 2
    assert sample(credits, "tollgate_ledger_operations_total", operation="release", outcome="ok") >= 1
    assert sample(credits, "tollgate_ledger_operation_seconds_count", operation="reserve") >= 3
    assert sample(credits, "tollgate_holds_outstanding") == 0  # every hold was settled or released
    assert sample(credits, "tollgate_ledger_metrics_last_read_timestamp_seconds") > settled
    assert sample(credits, "tollgate_reconcile_last_run_timestamp_seconds") > 0
    assert sample(credits, "tollgate_reconcile_mismatches") == 0
    for family in ("tollgate_accounts_low_credit", "tollgate_outbox_dead"):
        assert f"# TYPE {family} gauge" in credits

    health = scrape(observed, "health")
    assert sample(health, "tollgate_provider_state", provider="fake", state="healthy") == 1
    assert sample(health, "tollgate_provider_state", provider="dead", state="down") == 1
    assert sample(health, "tollgate_probes_total", provider="dead", result="failed") >= 1
    assert sample(health, "tollgate_probe_seconds_count", provider="fake") >= 1
    assert "# TYPE tollgate_provider_latency_seconds gauge" in health

    keyvault = scrape(observed, "keyvault")
    assert sample(keyvault, "tollgate_rpc_seconds_count", method="Authenticate") >= 1

    for service in SERVICES:
        text = scrape(observed, service)
        assert PLATFORM_KEY not in text and observed.key not in text
        assert junk not in text  # what a client names never becomes a label: no series per junk value
        assert 'user="' not in text and "user_id" not in text
        checked = subprocess.run(
            [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30, check=False
        )
        assert checked.returncode == 0, f"{service}: {checked.stdout}{checked.stderr}"


def test_one_request_is_one_trace(observed: Observed, receiver: Receiver) -> None:
    trace_id = "5b8aa5a2d2c872e8321cf37308d69df2"
    # A key the gateway has not authenticated yet (a cached one would leave keyvault out of the trace).
    fresh = create_key(observed.suite, f"traced-{uuid.uuid4().hex[:8]}")
    reply = chat(observed, "echo-paid", PROMPT_CANARY, fresh, traceparent=f"00-{trace_id}-051581bf3cb55c13-01")
    assert reply.status_code == 200
    wanted = {("tollgate-gateway", "HTTP POST"), ("tollgate-router", "Chat"), ("tollgate-credits", "Reserve")}
    # The settle goes out after the answer, in a SettleBatch call (a batch of one here), still under the Chat span.
    wanted |= {("tollgate-credits", "SettleBatch"), ("tollgate-keyvault", "Authenticate")}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        spans = receiver.trace(trace_id)
        have = {(s["service"], s["name"]) for s in spans}
        attempt = [s for s in spans if "gen_ai.system" in s["attributes"]]
        if wanted <= have and attempt:
            break
        time.sleep(0.2)
    assert wanted <= have, sorted(have)
    (provider,) = attempt
    assert provider["service"] == "tollgate-router" and provider["kind"] == 3  # SPAN_KIND_CLIENT
    assert provider["name"] == "chat demo-echo"
    attributes = provider["attributes"]
    assert attributes["gen_ai.system"] == "fake"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "demo-echo"
    assert attributes["gen_ai.response.model"]
    assert attributes["server.address"] == "127.0.0.1"
    usage = reply.json()["usage"]
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]

    by_id = {s["span_id"]: s for s in spans}
    router_span = next(s for s in spans if s["name"] == "Chat")
    assert provider["parent"] == router_span["span_id"]
    assert by_id[router_span["parent"]]["service"] == "tollgate-gateway"
    for name in ("Reserve", "SettleBatch"):
        ledger = next(s for s in spans if s["name"] == name)
        assert ledger["parent"] == router_span["span_id"]
    # Neither the prompt nor a key in any exported byte.
    exported = b"".join(receiver.raw)
    for secret in (PROMPT_CANARY, PLATFORM_KEY, observed.key):
        assert secret.encode() not in exported


def test_a_failed_attempt_and_its_fallback_are_two_spans(observed: Observed, receiver: Receiver) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    assert chat(observed, "flaky", traceparent=f"00-{trace_id}-b7ad6b7169203331-01").status_code == 200
    deadline = time.monotonic() + 15
    attempts: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(attempts) < 2:
        attempts = [s for s in receiver.trace(trace_id) if "gen_ai.system" in s["attributes"]]
        time.sleep(0.2)
    failed = [s for s in attempts if s["error"]]
    assert [s["attributes"]["tollgate.attempt"] for s in failed] == [1]
    assert [s["attributes"]["tollgate.result"] for s in attempts if not s["error"]] == ["ok"]
    assert {s["attributes"]["error.type"] for s in failed} == {"http"}
    assert {s["attributes"]["http.response.status_code"] for s in failed} == {500}
    for span in failed:
        assert not any("injected" in str(v) or "failed on this request" in str(v) for v in span["attributes"].values())
