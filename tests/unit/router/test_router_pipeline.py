"""The pipeline against the demo upstream: holds, charges, fallbacks, streams, BYOK."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any, cast

import orjson
import pytest

from services.demo_upstream.server import Upstream
from services.router.pipeline import Caller, Router
from services.router.pricing import cost_micro
from services.router.request import parse
from services.runtime.channels import Deadline
from services.runtime.errors import DomainError
from tollgate.router.v1 import router_pb2

from .conftest import FakeLedger, FakeVault

CHAT = {"messages": [{"role": "user", "content": "hello there friend"}]}


def caller(seconds: float = 10.0, **extra: Any) -> Caller:
    return Caller(request_id=uuid.uuid4().hex, user_id="u1", key_id="k1", deadline=Deadline(seconds), **extra)


def ledger(router: Router) -> FakeLedger:
    return cast(FakeLedger, router.ledger)


def chat(model: str, **extra: Any) -> bytes:
    return orjson.dumps({**CHAT, "model": model, **extra})


async def test_chat_charges_exactly_tokens_times_price(router: Router) -> None:
    body, outcome = await router.complete(parse("chat", chat("echo")), caller())
    reply = orjson.loads(body)
    assert reply["choices"][0]["message"]["content"] == "echo: hello there friend"
    # demo upstream: prompt = 3 words, completion = "echo: hello there friend" = 4 words
    assert reply["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    expected = -(-(3 * 10_000 + 4 * 20_000) // 1000)
    assert outcome.cost_micro == expected == 110
    assert ledger(router).kinds() == ["reserve", "settle"]
    assert ledger(router).charged() == [110]
    meta = reply["_metadata"]
    assert meta["provider_used"] == "up" and meta["model_used"] == "echo" and meta["fallbacks"] == 0
    assert meta["cost_incurred"] == pytest.approx(0.00011)
    assert b'"cost_incurred":0.00011' in body
    assert meta["byok"] is False and meta["power_level"] == "BALANCED"
    assert meta["requested_model"] == "echo" and meta["reason"] == "requested model"
    usage = ledger(router).usage[0]
    decision = orjson.loads(usage.decision)
    assert decision["chosen"] == "echo" and decision["attempts"][0]["result"] == "ok"
    assert usage.status == "ok" and usage.route == "chat"


@pytest.mark.parametrize("model", ["broken-500", "broken-429", "garbled", "stuck", "unreachable"])
async def test_failure_falls_back_with_exactly_one_charge(router: Router, model: str) -> None:
    body, outcome = await router.complete(parse("chat", chat(model)), caller())
    assert outcome.model == "spare" and outcome.fallbacks == 1
    assert orjson.loads(body)["_metadata"]["fallbacks"] == 1
    calls = ledger(router).kinds()
    assert calls == ["reserve", "release", "reserve", "settle"]
    assert len(ledger(router).charged()) == 1
    assert ledger(router).charged()[0] == outcome.cost_micro > 0
    assert not ledger(router).holds
    attempts = orjson.loads(ledger(router).usage[-1].decision)["attempts"]
    assert [a["result"] for a in attempts] == ["error", "ok"]
    meta = orjson.loads(body)["_metadata"]
    assert meta["model_used"] == "spare" and meta["requested_model"] == model
    assert meta["reason"].startswith(f"declared fallback of {model} after {model}: ")


async def test_client_error_does_not_fall_back_and_is_not_charged(router: Router) -> None:
    with pytest.raises(DomainError) as err:
        await router.complete(parse("chat", chat("broken-400")), caller())
    assert err.value.code == "invalid_request"
    assert ledger(router).kinds() == ["reserve", "release", "usage"]
    assert ledger(router).usage[-1].status == "error"


async def test_every_candidate_failing_names_providers_and_status(router: Router) -> None:
    with pytest.raises(DomainError) as err:
        await router.complete(parse("chat", chat("broken-500"), "CUSTOM"), caller())
    assert err.value.code == "provider_error"
    assert "up (HTTP 500)" in err.value.message
    assert ledger(router).kinds() == ["reserve", "release", "usage"]


async def test_attempts_are_bounded(router: Router, upstream: Upstream) -> None:
    router.settings.max_attempts = 1
    with pytest.raises(DomainError) as err:
        await router.complete(parse("chat", chat("broken-429")), caller())
    assert err.value.code == "provider_unavailable"
    assert upstream.stats["total"] == 1


async def test_unknown_model_is_model_not_found(router: Router) -> None:
    with pytest.raises(DomainError) as err:
        await router.complete(parse("chat", chat("nope")), caller())
    assert (err.value.code, err.value.param) == ("model_not_found", "model")
    assert "nope" in err.value.message
    assert ledger(router).calls == []


async def test_insufficient_credits_stops_before_the_provider(router: Router, upstream: Upstream) -> None:
    ledger(router).available = 10
    with pytest.raises(DomainError) as err:
        await router.complete(parse("chat", chat("echo")), caller())
    assert err.value.code == "insufficient_credits"
    assert upstream.stats["total"] == 0


async def test_free_model_holds_nothing_and_records_its_call(router: Router) -> None:
    body, outcome = await router.complete(parse("chat", chat("gratis")), caller())
    assert outcome.cost_micro == 0
    assert ledger(router).calls[0][::2] == ("reserve", 0)
    assert ledger(router).kinds() == ["reserve", "settle"] and ledger(router).charged() == [0]
    assert orjson.loads(body)["_metadata"]["cost_incurred"] == 0


async def test_ledger_keys_are_the_routers_own_never_the_request_id(router: Router) -> None:
    ask = caller()
    await router.complete(parse("chat", chat("echo")), ask)
    again = Caller(request_id=ask.request_id, user_id="u1", key_id="k1", deadline=Deadline(10))
    await router.complete(parse("chat", chat("echo")), again)
    keys = [key for _, key, _ in ledger(router).calls]
    assert all(ask.request_id not in key for key in keys)
    assert len(set(keys)) == 4 and ledger(router).kinds() == ["reserve", "settle"] * 2
    assert ledger(router).charged() == [110, 110]
    assert {u.request_id for u in ledger(router).usage} == {ask.request_id}  # kept for correlation


async def test_stored_byok_key_is_used_and_not_charged(router: Router, upstream: Upstream) -> None:
    cast(FakeVault, router.vault).keys[("u1", "up")] = "sk-user-own-key-123456"
    body, outcome = await router.complete(parse("chat", chat("echo")), caller())
    assert outcome.byok and outcome.cost_micro == 0
    assert ledger(router).kinds() == ["reserve", "settle"] and ledger(router).charged() == [0]
    assert ledger(router).usage[0].byok
    assert upstream.stats["last_authorization"]["demo-echo"] == "Bearer sk-user-own-key-123456"
    assert b"sk-user-own-key" not in body


async def test_own_keys_only_where_the_provider_checks_keys(router: Router, upstream: Upstream) -> None:
    cast(FakeVault, router.vault).keys[("u1", "backup")] = "sk-junk-that-nobody-checks-000"
    _, outcome = await router.complete(parse("chat", chat("spare"), "CUSTOM"), caller())
    assert not outcome.byok and outcome.cost_micro > 0  # the stored key is not used; the platform's call is charged
    with pytest.raises(DomainError) as err:
        await router.complete(
            parse("chat", chat("spare"), "CUSTOM"), caller(inline_provider="backup", inline_key="sk-junk-0123456789")
        )
    assert (err.value.code, err.value.param) == ("invalid_request", "api_key")
    assert "backup does not take callers' own keys" in err.value.message
    assert upstream.stats["total"] == 1


async def test_a_users_own_key_failing_does_not_mark_the_provider(router: Router, upstream: Upstream) -> None:
    reports: list[tuple[str, bool]] = []
    router.health.report = lambda provider, *args: reports.append((provider, args[1]))  # type: ignore[method-assign]
    upstream.control(model="demo-echo", status=429, times=1)
    cast(FakeVault, router.vault).keys[("u1", "up")] = "sk-user-own-key-123456"
    with pytest.raises(DomainError) as err:
        await router.complete(parse("chat", chat("echo"), "CUSTOM"), caller())
    assert err.value.code == "provider_unavailable"
    assert upstream.stats["total"] == 1
    assert ("up", False) not in reports
    _, outcome = await router.complete(parse("chat", chat("echo"), "CUSTOM"), caller())
    assert outcome.byok and ("up", True) in reports


async def test_inline_key_must_match_the_provider(router: Router) -> None:
    with pytest.raises(DomainError) as err:
        await router.complete(
            parse("chat", chat("echo"), "CUSTOM"), caller(inline_provider="other", inline_key="sk-inline-0123456789")
        )
    assert err.value.code == "invalid_request"
    assert "sk-inline" not in err.value.message


async def test_rejected_byok_key_falls_back_to_platform_when_configured(
    router: Router, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.control(model="demo-echo", require_key="sk-platform-key-abcdef")
    router.settings.byok_fallback_to_platform = True
    ask = caller(inline_provider="keyed", inline_key="sk-wrong-user-key-000000")
    monkeypatch.setenv("TOLLGATE_TEST_KEYED_KEY", "sk-platform-key-abcdef")
    _, outcome = await router.complete(parse("chat", chat("locked"), "CUSTOM"), ask)
    assert not outcome.byok and outcome.cost_micro > 0
    assert ledger(router).kinds() == ["reserve", "release", "reserve", "settle"]
    assert ledger(router).charged() == [outcome.cost_micro]


async def test_provider_without_platform_key_is_skipped(router: Router) -> None:
    with pytest.raises(DomainError) as err:
        await router.complete(parse("chat", chat("locked"), "CUSTOM"), caller())
    assert err.value.code == "provider_unavailable"
    assert "TOLLGATE_TEST_KEYED_KEY" in err.value.message


async def test_missing_usage_is_estimated_and_marked(router: Router) -> None:
    body, outcome = await router.complete(parse("chat", chat("quiet")), caller())
    assert outcome.usage_estimated
    assert orjson.loads(body)["usage"]["completion_tokens"] == outcome.completion_tokens > 0


async def test_embeddings(router: Router) -> None:
    raw = orjson.dumps({"model": "vectors", "input": ["one two", "three"]})
    body, outcome = await router.complete(parse("embedding", raw), caller())
    reply = orjson.loads(body)
    assert reply["object"] == "list" and len(reply["data"]) == 2
    assert reply["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert outcome.cost_micro == 1  # ceil(3 * 100 / 1000)


async def collect(router: Router, raw: bytes, ask: Caller | None = None) -> list[router_pb2.StreamEvent]:
    return [e async for e in router.stream(parse("chat", raw), ask or caller())]


async def test_stream_relays_chunks_and_usage_when_asked(router: Router) -> None:
    events = await collect(router, chat("echo", stream=True, stream_options={"include_usage": True}))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-1] == "outcome" and "error" not in kinds
    chunks = [orjson.loads(e.chunk) for e in events if e.WhichOneof("event") == "chunk"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "echo: hello there friend"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    outcome = events[-1].outcome
    assert outcome.cost_micro == 110 and not outcome.usage_estimated
    assert ledger(router).charged() == [110]


async def test_stream_hides_usage_when_not_asked_but_still_charges(router: Router) -> None:
    events = await collect(router, chat("echo", stream=True))
    chunks = [orjson.loads(e.chunk) for e in events if e.WhichOneof("event") == "chunk"]
    assert all(c["choices"] for c in chunks)
    assert events[-1].outcome.cost_micro == 110


async def test_stream_falls_back_before_the_first_chunk(router: Router) -> None:
    events = await collect(router, chat("broken-500", stream=True))
    assert events[-1].outcome.model == "spare" and events[-1].outcome.fallbacks == 1
    assert events[-1].outcome.reason == "declared fallback of broken-500 after broken-500: HTTP 500"
    assert ledger(router).kinds() == ["reserve", "release", "reserve", "settle"]


async def test_a_named_model_without_declared_fallbacks_is_not_substituted(router: Router) -> None:
    # `quiet` declares no fallback and the request sets no power level: a failure is an error, not another model
    router.catalog.models["quiet"] = dataclasses.replace(router.catalog.models["quiet"], upstream="fail-500")
    with pytest.raises(DomainError) as err:
        await router.complete(parse("chat", chat("quiet")), caller())
    assert err.value.code == "provider_error" and "HTTP 500" in err.value.message
    # with an explicit power level the level's choice may stand in, and says so
    body, outcome = await router.complete(parse("chat", chat("quiet", power_level="eco")), caller())
    meta = orjson.loads(body)["_metadata"]
    assert outcome.model != "quiet" and meta["reason"] == "power level ECO after quiet: HTTP 500"


async def test_an_automatic_choice_says_its_level_reason(router: Router) -> None:
    body, _ = await router.complete(parse("chat", orjson.dumps({**CHAT, "power_level": "eco"})), caller())
    meta = orjson.loads(body)["_metadata"]
    assert meta["requested_model"] is None and meta["reason"].startswith("ECO: cheapest")


async def test_mid_stream_cut_ends_with_error_event_and_partial_charge(router: Router) -> None:
    events = await collect(router, chat("cut", stream=True))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["chunk", "chunk", "chunk", "error", "outcome"]
    error = orjson.loads(events[-2].error)["error"]
    assert error["code"] == "provider_error" and "up" in error["message"]
    outcome = events[-1].outcome
    assert outcome.model == "cut" and outcome.fallbacks == 0  # no silent switch to `spare`
    assert outcome.usage_estimated and outcome.completion_tokens > 0
    model = router.catalog.models["cut"]
    assert outcome.cost_micro == cost_micro(model, outcome.prompt_tokens, outcome.completion_tokens) > 0
    assert ledger(router).kinds() == ["reserve", "settle"]
    assert ledger(router).usage[-1].status == "partial"


async def test_stream_without_usage_synthesizes_it_when_asked(router: Router) -> None:
    events = await collect(router, chat("quiet", stream=True, stream_options={"include_usage": True}))
    last_chunk = orjson.loads(events[-2].chunk)
    assert last_chunk["choices"] == [] and last_chunk["usage"]["completion_tokens"] > 0
    assert events[-1].outcome.usage_estimated


async def test_cancelled_call_pays_the_prompt_the_provider_had(router: Router, upstream: Upstream) -> None:
    task = asyncio.create_task(router.complete(parse("chat", chat("stuck"), "CUSTOM"), caller()))
    for _ in range(200):  # until the upstream holds the request
        if upstream.stats["total"]:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if "settle" in ledger(router).kinds():
            break
        await asyncio.sleep(0.01)
    assert ledger(router).kinds() == ["reserve", "settle"]
    assert not ledger(router).holds
    usage = ledger(router).usage[-1]
    assert usage.status == "cancelled" and usage.completion_tokens == 0 and usage.prompt_tokens > 0
    assert ledger(router).charged() == [cost_micro(router.catalog.models["stuck"], usage.prompt_tokens, 0)]


async def test_the_callers_deadline_cutting_a_call_pays_its_prompt(router: Router) -> None:
    """A caller that picks a deadline shorter than the provider's answer leaves like one that hangs up."""
    with pytest.raises(DomainError) as err:
        await router.complete(parse("chat", chat("stuck"), "CUSTOM"), caller(seconds=0.2))
    assert err.value.code == "timeout"
    assert ledger(router).kinds() == ["reserve", "settle", "usage"]
    cut = ledger(router).usage[0]
    assert cut.status == "cancelled" and cut.completion_tokens == 0
    assert ledger(router).charged() == [cost_micro(router.catalog.models["stuck"], cut.prompt_tokens, 0)] != [0]


async def test_the_callers_deadline_says_nothing_of_the_provider(router: Router) -> None:
    """Short deadlines of one client must not mark a provider failing (and eject it) for everyone."""
    reports: list[tuple[str, bool]] = []
    router.health.report = lambda provider, *args: reports.append((provider, args[1]))  # type: ignore[method-assign]
    for _ in range(3):
        with pytest.raises(DomainError):
            await router.complete(parse("chat", chat("stuck"), "CUSTOM"), caller(seconds=0.2))
    assert not [r for r in reports if not r[1]]
    with pytest.raises(DomainError):
        await router.complete(parse("chat", chat("stuck"), "CUSTOM"), caller(seconds=10))
    assert [r for r in reports if not r[1]], "the provider's own timeout is still its failure"


async def test_a_provider_slower_than_its_own_timeout_costs_nothing(router: Router) -> None:
    with pytest.raises(DomainError) as err:
        await router.complete(parse("chat", chat("stuck"), "CUSTOM"), caller(seconds=10))
    assert err.value.code == "provider_unavailable"
    assert ledger(router).kinds() == ["reserve", "release", "usage"]


async def test_a_body_refused_before_sending_costs_nothing(router: Router, upstream: Upstream) -> None:
    raw = chat("echo")[:-1] + b',"logit_bias":' + b"[" * 300 + b"]" * 300 + b"}"  # deeper than can be sent
    with pytest.raises(DomainError) as err:
        await router.complete(parse("chat", raw, "CUSTOM"), caller())
    assert err.value.code == "invalid_request"
    assert upstream.stats["total"] == 0
    assert ledger(router).kinds() == ["reserve", "release"]
    assert ledger(router).usage[-1].status == "error"


async def test_an_inline_key_that_would_break_its_header_is_refused(router: Router, upstream: Upstream) -> None:
    for junk in ("abc\r\nX-Evil: 1", "abc\x00", "has space", "ключ"):
        with pytest.raises(DomainError) as err:
            await router.complete(parse("chat", chat("echo")), caller(inline_provider="up", inline_key=junk))
        assert (err.value.code, err.value.param) == ("invalid_request", "api_key")
    assert upstream.stats["total"] == 0 and ledger(router).calls == []


async def test_client_leaving_mid_stream_settles_what_was_delivered(router: Router, upstream: Upstream) -> None:
    stream = router.stream(parse("chat", chat("echo", stream=True)), caller())
    first = await anext(stream)
    assert first.WhichOneof("event") == "chunk"
    await stream.aclose()
    for _ in range(100):
        if "settle" in ledger(router).kinds():
            break
        await asyncio.sleep(0.01)
    assert ledger(router).kinds() == ["reserve", "settle"]
    usage = ledger(router).usage[-1]
    assert usage.status == "cancelled" and usage.usage_estimated
    assert usage.completion_tokens == 1  # "echo", the first of six chunks, is all that went out
    assert ledger(router).charged() == [cost_micro(router.catalog.models["echo"], usage.prompt_tokens, 1)]


async def test_an_estimated_reply_is_never_charged_past_its_hold(router: Router) -> None:
    """A provider that reports no usage: the estimate of its reply stays within max_tokens times n."""
    _, outcome = await router.complete(parse("chat", chat("quiet", max_tokens=1)), caller())
    assert outcome.usage_estimated and outcome.completion_tokens == 1
    events = await collect(router, chat("quiet", stream=True, max_tokens=1))
    assert events[-1].outcome.usage_estimated and events[-1].outcome.completion_tokens == 1
    reserved = [amount for kind, _, amount in ledger(router).calls if kind == "reserve"]
    assert ledger(router).charged() == [outcome.cost_micro, events[-1].outcome.cost_micro]
    assert all(c <= r for c, r in zip(ledger(router).charged(), reserved, strict=True))


async def test_a_pooled_teams_member_reserves_on_the_team_account_with_key_and_team(router: Router) -> None:
    from services.router.clients import Payer

    await router.complete(parse("chat", chat("echo")), caller(team_id="t1", team_pays=True))
    await router.complete(parse("chat", chat("echo")), caller(team_id="t1"))
    await router.complete(parse("chat", chat("echo")), caller(team_pays=True))  # no team: the user pays
    assert ledger(router).payers == [
        Payer(account_id="team:t1", key_id="k1", team_id="t1"),
        Payer(account_id="", key_id="k1", team_id="t1"),
        Payer(account_id="", key_id="k1", team_id=""),
    ]
