"""Schemathesis over the gateway's own OpenAPI document: no 5xx, and every error is OpenAI-shaped.

`make test` runs a bounded number of cases per operation; `make fuzz` sets TOLLGATE_FUZZ_EXAMPLES high.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from services.gateway.app import all_routes
from services.gateway.openapi import document
from services.launcher import Suite

EXAMPLES = int(os.environ.get("TOLLGATE_FUZZ_EXAMPLES", "12"))


# Importing the route modules completes the document, exactly as the running gateway serves it.
all_routes()
schema = schemathesis.openapi.from_dict(document())
CASES: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def count_cases(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"fuzz: {len(CASES)} cases over {len(set(CASES))} operations, no 5xx")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
def test_no_server_errors_and_openai_shaped_errors(case: Any, suite: Suite, keys: dict[str, str]) -> None:
    headers = {"Authorization": f"Bearer {keys['demo_key']}", **(case.headers or {})}
    CASES.append(case.operation.label)
    response = case.call(base_url=f"http://{suite.host}:{suite.ports.gateway}", headers=headers, timeout=30)
    assert response.status_code < 500 or response.status_code in (502, 503, 504), (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    )
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) >= {"message", "type", "param", "code"}, response.text
        assert "Traceback" not in response.text
