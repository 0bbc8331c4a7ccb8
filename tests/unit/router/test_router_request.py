"""Request bodies: what is refused (naming the parameter) and what selection learns from them."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from services.router import normalize
from services.router.health_view import HealthView
from services.router.pricing import credits
from services.router.request import parse
from services.runtime.errors import DomainError
from tollgate.health.v1 import health_pb2


@pytest.mark.parametrize(
    ("route", "raw", "param"),
    [
        ("chat", b"not json", "body"),
        ("chat", b"[1, 2]", "body"),
        ("chat", b'{"model": "x"}', "messages"),
        ("chat", b'{"messages": []}', "messages"),
        ("chat", b'{"messages": [{"content": "hi"}]}', "messages"),
        ("chat", b'{"messages": [{"role": "user", "content": 5}]}', "messages"),
        ("chat", b'{"model": 3, "messages": [{"role": "user", "content": "hi"}]}', "model"),
        ("chat", b'{"stream": "yes", "messages": [{"role": "user", "content": "hi"}]}', "stream"),
        ("chat", b'{"max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]}', "max_tokens"),
        ("chat", b'{"power_level": "TURBO", "messages": [{"role": "user", "content": "hi"}]}', "power_level"),
        ("completion", b'{"prompt": 7}', "prompt"),
        ("embedding", b'{"input": ""}', "input"),
    ],
)
def test_bad_bodies_name_the_parameter(route: str, raw: bytes, param: str) -> None:
    with pytest.raises(DomainError) as err:
        parse(route, raw)  # type: ignore[arg-type]
    assert (err.value.code, err.value.param) == ("invalid_request", param)


def test_auto_model_and_needs() -> None:
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
        "tools": [{"type": "function"}],
        "response_format": {"type": "json_schema"},
        "power_level": "eco",
    }
    request = parse("chat", orjson.dumps(body), "PRECISION")
    assert request.model is None and request.power_level == "ECO"
    assert request.needs == {"chat", "vision", "tools", "json"}
    assert "power_level" not in request.body  # never sent upstream


def test_credits_are_plain_decimals() -> None:
    assert credits(110) == "0.00011"
    assert credits(1) == "0.000001"
    assert credits(0) == "0"
    assert credits(1_500_000) == "1.5"


def test_normalize_fills_what_sdks_expect() -> None:
    body: dict[str, object] = {"choices": [{"message": {"content": "x"}, "finish_reason": "end_turn"}]}
    out = normalize.completion("chat", body, "m", 3, 1)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["logprobs"] is None
    assert choice["message"] == {"role": "assistant", "content": "x", "refusal": None}
    assert out["object"] == "chat.completion" and isinstance(out["created"], int) and out["model"] == "m"
    assert out["usage"] == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}


def test_conformant_chunk_is_left_alone() -> None:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "a"}, "logprobs": None, "finish_reason": None}],
    }
    assert not normalize.chunk("chat", chunk, "m")
    odd: dict[str, Any] = {"choices": [{"delta": {"content": "a"}, "finish_reason": "max_tokens"}]}
    assert normalize.chunk("chat", odd, "m")
    assert odd["object"] == "chat.completion.chunk" and odd["choices"][0]["finish_reason"] == "length"


def test_health_view_applies_snapshots_and_changes() -> None:
    view = HealthView()
    assert view.state("p") == "unknown"
    view.apply(
        health_pb2.ProviderEvent(
            snapshot=True, providers=[health_pb2.ProviderState(provider="p", state=health_pb2.STATE_HEALTHY)]
        )
    )
    assert view.state("p") == "healthy"
    view.apply(
        health_pb2.ProviderEvent(
            providers=[health_pb2.ProviderState(provider="p", state=health_pb2.STATE_HEALTHY, ejected=True)]
        )
    )
    assert view.state("p") == "down"
    view.apply(health_pb2.ProviderEvent(snapshot=True, providers=[]))
    assert view.state("p") == "unknown"
    view.report("p", "http://x", False, 1.0, 500, "boom")  # queued, never blocking, without a health service


def test_steady_success_is_not_reported_but_failures_and_recovery_are() -> None:
    view = HealthView()
    view.apply(
        health_pb2.ProviderEvent(
            snapshot=True, providers=[health_pb2.ProviderState(provider="p", state=health_pb2.STATE_HEALTHY)]
        )
    )
    sent = view._reports
    for ok in (True, True, True, False, True, True):
        view.report("p", "http://x", ok, 1.0, 200 if ok else 500, "")
    reported = [sent.get_nowait().success for _ in range(sent.qsize())]
    # The first success (nothing known yet), the failure, and the first success after it.
    assert reported == [True, False, True]


def test_the_typical_estimate_does_not_shrink_cjk_emoji_or_code_to_a_quarter() -> None:
    """What a call that ended before its usage is charged for its prompt: at least a token a CJK character."""
    for text, at_least in (("你好世界" * 500, 2000), ("🙂" * 500, 500), ("hello world " * 100, 250)):
        request = parse("chat", orjson.dumps({"messages": [{"role": "user", "content": text}]}))
        assert request.prompt_tokens >= at_least, text[:8]
        assert request.prompt_tokens <= len(text.encode()) + 64  # never past what a hold allows


def test_steady_success_reports_its_latency_once_per_interval() -> None:
    view = HealthView(latency_report_seconds=0.2)
    view.apply(
        health_pb2.ProviderEvent(
            snapshot=True, providers=[health_pb2.ProviderState(provider="p", state=health_pb2.STATE_HEALTHY)]
        )
    )
    sent = view._reports
    for _ in range(5):
        view.report("p", "http://x", True, 42.0, 200, "")
    time.sleep(0.25)
    view.report("p", "http://x", True, 43.0, 200, "")
    view.report("p", "http://x", True, 44.0, 200, "")
    assert [sent.get_nowait().latency_ms for _ in range(sent.qsize())] == [42.0, 43.0]
