"""The short fault suite (`make faults` has the whole matrix): kill -9 of credits under load, and of credits
while a stream is in flight. Clients get whole answers or OpenAI-shaped errors, nothing is charged twice, a
delivered answer is paid for once credits is back, no committed journal row is lost, and reconcile passes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from bench import faults
from tests.e2e.support import bearer


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[faults.Bench]:
    with faults.embedded(Path(tmp_path_factory.mktemp("faults")), concurrency=4, phase=0.5) as running:
        yield running


def test_kill_credits_under_load(bench: faults.Bench) -> None:
    suite = bench.suite
    figures = asyncio.run(
        faults.run_case(
            bench,
            "kill-credits",
            lambda: suite.kill("credits"),
            lambda: suite.restart("credits"),
            ready=lambda: suite.ready("credits"),
        )
    )
    print(figures.line())
    assert figures.violations == []
    assert figures.errors.keys() <= {"503 service_unavailable"}
    assert figures.recovery_s is not None and figures.ready_s is not None
    assert figures.recovery_s < figures.ready_s + 2.0  # service returns with the service, not seconds later


def test_a_stream_delivered_while_credits_is_dead_is_paid_once(bench: faults.Bench) -> None:
    suite = bench.suite
    rid = "fault-stream-" + str(time.time_ns())
    body = {"model": "echo-paid", "messages": [{"role": "user", "content": "pay me later"}], "stream": True}
    text, events = "", []
    with (
        httpx.Client(base_url=suite.base_url, timeout=30) as http,
        http.stream("POST", "/chat/completions", json=body, headers={**bearer(bench.key), "X-Request-Id": rid}) as s,
    ):
        assert s.status_code == 200
        lines = s.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        suite.kill("credits")  # the hold is taken; the settle will find credits gone
        events = [first, *(line for line in lines if line.startswith("data: "))]
    assert events[-1] == "data: [DONE]"
    for event in events[:-1]:
        obj = orjson.loads(event[6:])
        assert "error" not in obj
        text += "".join((c.get("delta") or {}).get("content") or "" for c in obj.get("choices") or ())
    assert text == "echo: pay me later"
    suite.restart("credits")
    deadline = time.monotonic() + 60
    settles = asyncio.run(bench.ledger.settles([rid]))
    while settles[rid] == 0:
        assert time.monotonic() < deadline, "the owed settle never landed"
        time.sleep(0.3)
        settles = asyncio.run(bench.ledger.settles([rid]))
    time.sleep(1.5)  # a repeat would land by now
    assert asyncio.run(bench.ledger.settles([rid]))[rid] == 1
    assert faults.reconcile(bench.ledger.url)


def test_clients_going_away_mid_stream_is_normal_traffic(bench: faults.Bench) -> None:
    """Streams whose clients leave after the first chunk: their holds end, and no service logs an error."""
    figures = asyncio.run(
        faults.run_case(bench, "client-disconnect", lambda: None, None, measure_recovery=False, hang_up=True)
    )
    print(figures.line())
    assert figures.requests > 0
    assert figures.violations == [] and figures.log_errors == 0
