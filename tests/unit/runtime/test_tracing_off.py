"""Tracing off costs nothing: no service even imports OpenTelemetry, and the helpers are no-ops."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services.runtime import tracing

ROOT = Path(__file__).resolve().parents[3]


def test_no_service_imports_opentelemetry_while_tracing_is_off() -> None:
    code = (
        "import sys\n"
        "import services.gateway.app, services.router.servicer, services.router.pipeline\n"
        "import services.credits.servicer, services.health.monitor, services.keyvault.servicer\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert found.stdout.strip() == "[]"


def test_helpers_are_no_ops_while_off() -> None:
    assert not tracing.enabled()
    assert tracing.inject() == []
    assert tracing.client_span("chat x", {"gen_ai.system": "x"}) is None
    tracing.end_span(None, {"a": 1}, "http")
    with tracing.server_span("Chat", ()) as span:
        assert span is None
