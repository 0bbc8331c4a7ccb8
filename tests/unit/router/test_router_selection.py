"""Power levels, capability filters, context windows and health-aware ordering on a fixture catalog."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
import pytest

from services.router.catalog import Catalog, parse
from services.router.health_view import HealthView
from services.router.request import parse as parse_request
from services.router.selection import Decision, select
from services.runtime.errors import DomainError
from tollgate.health.v1 import health_pb2

FIXTURE = """
version: 1
providers:
  local: {api_base: "http://h/v1", free: true}
  cheap: {api_base: "http://h/v1"}
  mid: {api_base: "http://h/v1"}
  big: {api_base: "http://h/v1"}
models:
  - {id: tiny-free, provider: local, tier: FREE, quality: 40, capabilities: [chat], context_window: 4096}
  - {id: starter, provider: cheap, tier: STARTER, price: {input: 0.0002, output: 0.0004}, quality: 62,
     capabilities: [chat, tools, json], context_window: 32000}
  - {id: balanced, provider: mid, tier: BALANCED, price: {input: 0.001, output: 0.002}, quality: 78,
     capabilities: [chat, tools, json, vision], context_window: 128000}
  - {id: pro, provider: big, tier: PROFESSIONAL, price: {input: 0.003, output: 0.015}, quality: 88,
     capabilities: [chat, tools, json, vision], context_window: 200000, fallbacks: [balanced]}
  - {id: premium, provider: big, tier: PREMIUM, price: {input: 0.015, output: 0.075}, quality: 95,
     capabilities: [chat, tools, vision], context_window: 200000}
  - {id: embedder, provider: cheap, tier: SPECIALIZED, price: {input: 0.00002, output: 0}, quality: 70,
     capabilities: [embeddings]}
  - {id: retired, provider: big, tier: PREMIUM, price: {input: 1, output: 1}, quality: 99, enabled: false}
"""


@pytest.fixture
def catalog() -> Catalog:
    return parse(FIXTURE, env={})


def decide(
    catalog: Catalog, body: Mapping[str, object], level: str = "", route: str = "chat", health: HealthView | None = None
) -> Decision:
    request = parse_request(route, orjson.dumps(body), level)  # type: ignore[arg-type]
    return select(catalog, request, "BALANCED", health or HealthView())


def ids(decision: Decision) -> list[str]:
    return [c.model.id for c in decision.candidates]


MSG: dict[str, object] = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("level", "chosen"),
    [("ECO", "tiny-free"), ("BALANCED", "balanced"), ("PRECISION", "premium"), ("", "balanced")],
)
def test_each_power_level_picks_its_model(catalog: Catalog, level: str, chosen: str) -> None:
    decision = decide(catalog, MSG, level)
    assert ids(decision)[0] == chosen
    assert decision.power_level == (level or "BALANCED")


def test_eco_orders_by_price_free_first(catalog: Catalog) -> None:
    assert ids(decide(catalog, MSG, "ECO")) == ["tiny-free", "starter", "balanced"]


def test_balanced_orders_by_quality_per_cost(catalog: Catalog) -> None:
    # 78 quality at 0.003/1k beats 62 at 0.0006/1k; a tenfold price must buy clearly more quality
    assert ids(decide(catalog, MSG, "BALANCED")) == ["balanced", "starter", "pro"]


def test_precision_orders_by_quality(catalog: Catalog) -> None:
    assert ids(decide(catalog, MSG, "PRECISION")) == ["premium", "pro", "balanced"]


def test_body_power_level_wins_over_header(catalog: Catalog) -> None:
    assert decide(catalog, {**MSG, "power_level": "eco"}, "PRECISION").power_level == "ECO"


def test_custom_is_exactly_the_named_model(catalog: Catalog) -> None:
    assert ids(decide(catalog, {**MSG, "model": "pro"}, "CUSTOM")) == ["pro"]
    with pytest.raises(DomainError, match="CUSTOM needs a model"):
        decide(catalog, MSG, "CUSTOM")


def test_named_model_comes_first_then_its_fallbacks_then_the_level(catalog: Catalog) -> None:
    assert ids(decide(catalog, {**MSG, "model": "pro"}, "ECO")) == ["pro", "balanced", "tiny-free", "starter"]


def test_unknown_and_disabled_models_are_not_found(catalog: Catalog) -> None:
    for name in ("nope", "retired"):
        with pytest.raises(DomainError) as err:
            decide(catalog, {**MSG, "model": name})
        assert (err.value.code, err.value.param) == ("model_not_found", "model")


def test_tools_filter(catalog: Catalog) -> None:
    body = {**MSG, "tools": [{"type": "function", "function": {"name": "f"}}]}
    assert ids(decide(catalog, body, "ECO")) == ["starter", "balanced"]


def test_vision_filter(catalog: Catalog) -> None:
    content = [{"type": "text", "text": "what"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    body = {"messages": [{"role": "user", "content": content}]}
    assert ids(decide(catalog, body, "ECO")) == ["balanced"]


def test_json_mode_filter(catalog: Catalog) -> None:
    body = {**MSG, "response_format": {"type": "json_object"}}
    assert ids(decide(catalog, body, "PRECISION")) == ["pro", "balanced"]


def test_embeddings_only_go_to_embedding_models(catalog: Catalog) -> None:
    assert ids(decide(catalog, {"input": "hello"}, "ECO", route="embedding")) == ["embedder"]
    with pytest.raises(DomainError) as err:
        decide(catalog, {"input": "x", "model": "pro"}, route="embedding")
    assert err.value.code == "invalid_request" and "does not support embeddings" in err.value.message


def test_context_window_must_hold_prompt_and_max_tokens(catalog: Catalog) -> None:
    decision = decide(catalog, {**MSG, "max_tokens": 20_000}, "ECO")
    assert ids(decision) == ["starter", "balanced"]
    assert "context window 4096" in decision.skipped["tiny-free"]


def _health(**states: health_pb2.State) -> HealthView:
    view = HealthView()
    view.apply(
        health_pb2.ProviderEvent(
            snapshot=True,
            providers=[
                health_pb2.ProviderState(provider=name, state=state, consecutive_failures=3 if state == 3 else 0)
                for name, state in states.items()
            ],
        )
    )
    return view


def test_down_providers_are_skipped(catalog: Catalog) -> None:
    decision = decide(catalog, MSG, "ECO", health=_health(local=health_pb2.STATE_DOWN))
    assert ids(decision) == ["starter", "balanced"]
    assert "down" in decision.skipped["tiny-free"]


def test_degraded_providers_go_last(catalog: Catalog) -> None:
    decision = decide(catalog, MSG, "ECO", health=_health(local=health_pb2.STATE_DEGRADED))
    assert ids(decision) == ["starter", "balanced", "tiny-free"]


def test_all_down_tries_the_least_bad(catalog: Catalog) -> None:
    view = _health(local=health_pb2.STATE_DOWN, cheap=health_pb2.STATE_DOWN, mid=health_pb2.STATE_DOWN)
    view.states["cheap"].consecutive_failures = 1
    decision = decide(catalog, MSG, "ECO", health=view)
    assert ids(decision)[0] == "starter"
    assert "least-bad" in decision.reason


def test_named_model_on_a_down_provider_falls_to_its_chain(catalog: Catalog) -> None:
    decision = decide(catalog, {**MSG, "model": "pro"}, "PRECISION", health=_health(big=health_pb2.STATE_DOWN))
    assert ids(decision)[0] == "balanced"


# A named model keeps its word: first unless down, refused when it cannot serve, substituted only as declared.


def test_named_model_on_a_degraded_provider_stays_first(catalog: Catalog) -> None:
    health = _health(big=health_pb2.STATE_DEGRADED)
    assert ids(decide(catalog, {**MSG, "model": "pro"}, health=health))[0] == "pro"
    assert ids(decide(catalog, {**MSG, "model": "pro"}, "ECO", health=health))[0] == "pro"


def test_named_model_without_a_level_falls_back_only_as_declared(catalog: Catalog) -> None:
    decision = decide(catalog, {**MSG, "model": "pro"})
    assert ids(decision) == ["pro", "balanced"]
    assert [c.reason for c in decision.candidates] == ["requested", "declared fallback of pro"]
    assert ids(decide(catalog, {**MSG, "model": "starter"})) == ["starter"]


def test_an_explicit_level_adds_its_ranking_after_the_declared_fallbacks(catalog: Catalog) -> None:
    decision = decide(catalog, {**MSG, "model": "pro", "power_level": "eco"})
    assert [c.reason for c in decision.candidates][2:] == ["power level ECO", "power level ECO"]


IMAGE = {"type": "image_url", "image_url": {"url": "data:,"}}


@pytest.mark.parametrize(
    ("model", "extra", "param", "words"),
    [
        ("tiny-free", {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "does not support tools"),
        ("premium", {"response_format": {"type": "json_object"}}, "response_format", "does not support json"),
        ("starter", {"messages": [{"role": "user", "content": [IMAGE]}]}, "messages", "does not support vision"),
        ("tiny-free", {"max_tokens": 5000}, "max_tokens", "context window of 4096"),
        ("tiny-free", {"messages": [{"role": "user", "content": "word " * 20_000}]}, "messages", "context window"),
    ],
)
def test_a_named_model_that_cannot_serve_is_refused_naming_why(
    catalog: Catalog, model: str, extra: dict[str, object], param: str, words: str
) -> None:
    for level in ("", "ECO", "CUSTOM"):
        with pytest.raises(DomainError) as err:
            decide(catalog, {**MSG, "model": model, **extra}, level)
        assert (err.value.code, err.value.param) == ("invalid_request", param)
        assert words in err.value.message and f"`{model}`" in err.value.message


def test_a_provider_forced_down_is_never_chosen_not_even_as_least_bad(catalog: Catalog) -> None:
    view = _health(local=health_pb2.STATE_DOWN, cheap=health_pb2.STATE_DOWN, mid=health_pb2.STATE_DOWN)
    view.states["local"].forced = "down"
    decision = decide(catalog, MSG, "ECO", health=view)
    assert "tiny-free" not in ids(decision) and "maintenance" in decision.skipped["tiny-free"]
    with pytest.raises(DomainError) as err:
        decide(catalog, {**MSG, "model": "tiny-free"}, health=view)
    assert err.value.code == "provider_unavailable" and "maintenance" in err.value.message


TWINS = """
version: 1
providers:
  slow-host: {api_base: "http://slow/v1"}
  fast-host: {api_base: "http://fast/v1"}
  other: {api_base: "http://o/v1"}
models:
  - {id: a-slow, provider: slow-host, tier: BALANCED, price: {input: 0.001, output: 0.002}, quality: 70}
  - {id: b-fast, provider: fast-host, tier: BALANCED, price: {input: 0.001, output: 0.002}, quality: 70}
  - {id: c-better, provider: other, tier: BALANCED, price: {input: 0.001, output: 0.002}, quality: 80}
"""


def test_equally_suitable_models_go_fastest_first_by_health_latency() -> None:
    twins = parse(TWINS, env={})
    view = _health(**{"slow-host": health_pb2.STATE_HEALTHY, "fast-host": health_pb2.STATE_HEALTHY})
    assert ids(decide(twins, MSG, health=view)) == ["c-better", "a-slow", "b-fast"]  # unmeasured: by id
    view.states["slow-host"].latency_ewma_ms = 900.0
    view.states["fast-host"].latency_ewma_ms = 80.0
    # latency orders only what the level cannot tell apart; the better model stays first however slow
    view.states["other"] = health_pb2.ProviderState(
        provider="other", state=health_pb2.STATE_HEALTHY, latency_ewma_ms=5000.0
    )
    assert ids(decide(twins, MSG, health=view)) == ["c-better", "b-fast", "a-slow"]
