"""Schemathesis over the gateway's own OpenAPI document: no 5xx, and every error is OpenAI-shaped
(Anthropic-shaped on the Messages API's routes).

Each case is sent with a real key (the admin key on admin routes, the demo key elsewhere), so the cases
reach validation, routing and the providers rather than stopping at authentication; one case in
`BAD_KEY_EVERY` carries a bad key instead (from an address of its own, so the failed-authentication limit
it trips touches nobody else), or none at all; such a case must be refused with 401 or 429. A 5xx fails
the test, 502-504 included, unless the case names a model whose upstream is down by design; so does an
error that is not OpenAI's JSON. The status mix, by the credential each case carried, is printed at the end.

`make test` runs a bounded number of cases per operation; `make fuzz` sets TOLLGATE_FUZZ_EXAMPLES high.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from services.gateway.app import all_routes
from services.gateway.openapi import document
from services.launcher import Suite
from tests.e2e.conftest import FUZZ_REPORT

EXAMPLES = int(os.environ.get("TOLLGATE_FUZZ_EXAMPLES", "12"))
BAD_KEY_EVERY = 16
# None: no Authorization header at all.
BAD_KEYS = ("tg-fuzz-not-a-key-0123456789abcdef", "sk-wrong-kind-of-key-0123456789", "", "tg-\u00e9t\u00e9", None)
FUZZ_ADDRESS = "198.18.0.77"  # X-Forwarded-For of the bad-key cases (the test client is a trusted proxy)
UPSTREAM_DOWN = {"unreachable"}  # e2e catalog models whose provider nobody answers


# Importing the route modules completes the document, exactly as the running gateway serves it.
all_routes()
schema = schemathesis.openapi.from_dict(document())
# The test sets Authorization itself: schemathesis would otherwise generate one from the document's bearer
# scheme, or drop it, for most cases, and they would only ever meet the 401 path.
schema.config.generation.update(with_security_parameters=False)
OPERATIONS: list[str] = []
# Status counts by the credential the request carried.
STATUSES: dict[str, Counter[int]] = {"real key": Counter(), "bad key": Counter(), "no key": Counter()}


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not OPERATIONS:
        return
    total: Counter[int] = sum(STATUSES.values(), Counter())
    lines = [f"fuzz: {len(OPERATIONS)} cases over {len(set(OPERATIONS))} operations; statuses {_mix(total)}"]
    lines += [f"fuzz:   {sum(c.values())} with {kind} {_mix(c)}" for kind, c in STATUSES.items()]
    request.config.stash.setdefault(FUZZ_REPORT, []).extend(lines)


def _mix(counts: Counter[int]) -> str:
    return "{" + ", ".join(f"{status}: {n}" for status, n in sorted(counts.items())) + "}"


def _upstream_down(case: Any) -> bool:
    return isinstance(case.body, dict) and case.body.get("model") in UPSTREAM_DOWN


def _assert_openai_error(response: Any, where: str, anthropic: bool = False) -> None:
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/json"), f"{where}: {content_type or 'no content type'}"
    assert "Traceback" not in response.text, where
    if anthropic:  # the Messages API's routes answer in Anthropic's shape
        body = orjson.loads(response.content)
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, where
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], where
        return
    error = orjson.loads(response.content)["error"]
    assert set(error) == {"message", "type", "param", "code"}, f"{where}: {response.text[:300]}"
    assert isinstance(error["message"], str) and error["message"] and isinstance(error["type"], str), where
    assert error["param"] is None or isinstance(error["param"], str), where
    assert error["code"] is None or isinstance(error["code"], str), where


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
def test_no_server_errors_and_openai_shaped_errors(case: Any, suite: Suite, keys: dict[str, str]) -> None:
    OPERATIONS.append(case.operation.label)
    real = keys["admin_key" if "/admin/" in case.operation.path else "demo_key"]
    headers = {**(case.headers or {}), "Authorization": f"Bearer {real}"}
    if "Idempotency-Key" in headers and len(OPERATIONS) % 4:
        # Generated keys repeat across cases; most are made unique so that the body behind them gets
        # served (the rest still meet their earlier use: 422 or a replay).
        headers["Idempotency-Key"] = f"{headers['Idempotency-Key'][:240]}-{len(OPERATIONS)}"
    if len(OPERATIONS) % BAD_KEY_EVERY == 0:
        bad = BAD_KEYS[len(OPERATIONS) // BAD_KEY_EVERY % len(BAD_KEYS)]
        headers |= {"Authorization": f"Bearer {bad}", "X-Forwarded-For": FUZZ_ADDRESS}
        if bad is None:
            del headers["Authorization"]
    response = case.call(base_url=f"http://{suite.host}:{suite.ports.gateway}", headers=headers, timeout=30)
    status = response.status_code
    sent = response.request.headers.get("Authorization")
    kind = "real key" if sent == f"Bearer {real}" else "bad key" if sent else "no key"
    STATUSES[kind][status] += 1
    where = f"{case.method} {case.formatted_path} ({kind}) -> {status}: {response.text[:500]}"
    assert status < 500 or (status in (502, 503, 504) and _upstream_down(case)), where
    authenticated = case.operation.definition.raw.get("security") != []
    if kind != "real key" and authenticated and case.method == case.operation.method:
        assert status in (401, 429), where
    if status >= 400:
        _assert_openai_error(response, where, anthropic="/messages" in case.operation.path)
