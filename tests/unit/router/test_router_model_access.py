"""Allow-lists (a key's and its team's) and provider preferences narrowing what selection may pick."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
import pytest

from services.router.catalog import Catalog, parse
from services.router.health_view import HealthView
from services.router.model_access import ModelAccess
from services.router.preferences import Preferences
from services.router.preferences import parse as parse_prefs
from services.router.request import parse as parse_request
from services.router.selection import Decision, select
from services.runtime.errors import ERRORS, DomainError

FIXTURE = """
version: 1
providers:
  local: {api_base: "http://h/v1", free: true}
  cheap: {api_base: "http://h/v1"}
  mid: {api_base: "http://h/v1"}
  big: {api_base: "http://h/v1"}
models:
  - {id: tiny-free, provider: local, tier: FREE, quality: 40}
  - {id: starter, provider: cheap, tier: STARTER, price: {input: 0.0002, output: 0.0004}, quality: 62}
  - {id: balanced, aliases: [bal], provider: mid, tier: BALANCED, price: {input: 0.001, output: 0.002}, quality: 78,
     fallbacks: [starter, tiny-free]}
  - id: pro
    tier: PROFESSIONAL
    price: {input: 0.003, output: 0.015}
    quality: 88
    fallbacks: [balanced]
    deployments:
      - {provider: big}
      - {provider: mid, upstream: pro-on-mid}
"""

MSG: dict[str, object] = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def catalog() -> Catalog:
    return parse(FIXTURE, env={})


def decide(
    catalog: Catalog, body: Mapping[str, object], access: ModelAccess | None = None, level: str = ""
) -> Decision:
    request = parse_request("chat", orjson.dumps({**MSG, **body}), level)
    return select(catalog, request, "BALANCED", HealthView(), access)


def ids(decision: Decision) -> list[str]:
    return [c.model.id for c in decision.candidates]


def refusal(catalog: Catalog, body: Mapping[str, object], access: ModelAccess | None = None) -> DomainError:
    with pytest.raises(DomainError) as err:
        decide(catalog, body, access)
    return err.value


# allow-lists


def test_a_named_model_outside_the_key_list_is_refused_403_naming_it(catalog: Catalog) -> None:
    err = refusal(catalog, {"model": "bal"}, ModelAccess.of(["starter"], []))
    assert err.code == "model_not_allowed" and err.param == "model" and "`bal`" in err.message
    assert ERRORS[err.code].http_status == 403 and err.body()["error"]["type"] == "permission_error"
    err = refusal(catalog, {"model": "starter"}, ModelAccess.of([], ["tier:BALANCED"]))
    assert err.code == "model_not_allowed" and "team" in err.message


def test_both_lists_apply_and_entries_may_be_ids_aliases_or_tiers(catalog: Catalog) -> None:
    both = ModelAccess.of(["bal", "starter"], ["tier:balanced", "tier:PROFESSIONAL"])
    assert ids(decide(catalog, {"model": "balanced"}, both)) == ["balanced"]  # fallbacks outside a list dropped
    assert refusal(catalog, {"model": "starter"}, both).code == "model_not_allowed"  # in the key's, not the team's
    assert refusal(catalog, {"model": "pro"}, both).code == "model_not_allowed"  # in the team's, not the key's


def test_declared_fallbacks_and_automatic_choices_stay_inside_the_lists(catalog: Catalog) -> None:
    access = ModelAccess.of(["pro", "starter"], [])
    decision = decide(catalog, {"model": "pro"}, access, level="PRECISION")
    assert ids(decision) == ["pro", "starter"]
    assert decision.skipped["balanced"] == "not allowed for this key"
    for level in ("ECO", "BALANCED", "PRECISION"):
        chosen = ids(decide(catalog, {}, access, level))
        assert chosen and set(chosen) <= {"pro", "starter"}, level


def test_an_automatic_choice_with_nothing_allowed_is_refused(catalog: Catalog) -> None:
    err = refusal(catalog, {}, ModelAccess.of(["no-such-model"], []))
    assert err.code == "model_not_allowed"


def test_empty_lists_allow_everything(catalog: Catalog) -> None:
    assert ids(decide(catalog, {"model": "balanced"}, ModelAccess.of([], []))) == ["balanced", "starter", "tiny-free"]


# provider preferences


@pytest.mark.parametrize(
    ("value", "param"),
    [
        ("big", "provider"),
        (["big"], "provider"),
        ({"only": "big"}, "provider.only"),
        ({"order": [1]}, "provider.order"),
        ({"ignore": [""]}, "provider.ignore"),
        ({"sort": "cheapest"}, "provider.sort"),
        ({"api_base": "http://evil/v1"}, "provider.api_base"),
        ({"only": ["big"], "ignore": ["big"]}, "provider.ignore"),
    ],
)
def test_bad_preference_shapes_are_refused_naming_the_field(value: object, param: str) -> None:
    with pytest.raises(DomainError) as err:
        parse_prefs(value)
    assert err.value.code == "invalid_request" and err.value.param == param


def test_unknown_providers_are_refused_naming_the_field(catalog: Catalog) -> None:
    err = refusal(catalog, {"model": "pro", "provider": {"order": ["big", "evil.example.com"]}})
    assert err.code == "invalid_request" and err.param == "provider.order" and "evil.example.com" in err.message


def test_the_provider_field_never_travels_on() -> None:
    request = parse_request("chat", orjson.dumps({**MSG, "provider": {"only": ["big"], "sort": "price"}}))
    assert "provider" not in request.body
    assert request.provider == Preferences(only=("big",), sort="price")


def test_only_and_ignore_leave_out_models_without_an_allowed_deployment(catalog: Catalog) -> None:
    decision = decide(catalog, {"model": "balanced", "provider": {"ignore": ["cheap"]}})
    assert ids(decision) == ["balanced", "tiny-free"]
    assert "provider preferences" in decision.skipped["starter"]
    # pro also runs on mid: `only: [mid]` keeps it
    assert ids(decide(catalog, {"model": "pro", "provider": {"only": ["mid"]}})) == ["pro", "balanced"]
    err = refusal(catalog, {"model": "starter", "provider": {"only": ["big"]}})
    assert err.code == "invalid_request" and err.param == "provider" and "`starter`" in err.message


def test_preferences_never_widen_an_allow_list(catalog: Catalog) -> None:
    access = ModelAccess.of(["balanced"], [])
    decision = decide(catalog, {"model": "balanced", "provider": {"order": ["local", "cheap"]}}, access)
    assert ids(decision) == ["balanced"]
    assert refusal(catalog, {"model": "tiny-free", "provider": {"only": ["local"]}}, access).code == "model_not_allowed"


def test_sort_and_order_reorder_automatic_candidates(catalog: Catalog) -> None:
    by_price = ids(decide(catalog, {"provider": {"sort": "price"}}, level="PRECISION"))
    prices = [catalog.models[m].blended_micro_per_1k for m in by_price]
    assert prices == sorted(prices)
    assert ids(decide(catalog, {}, level="ECO"))[0] == "tiny-free"
    assert ids(decide(catalog, {"provider": {"order": ["mid"]}}, level="ECO"))[0] == "balanced"


def test_an_automatic_choice_takes_an_allowed_model_outside_the_levels_tiers(catalog: Catalog) -> None:
    # PRECISION ranks PROFESSIONAL, PREMIUM and BALANCED; the key may only use a FREE model
    decision = decide(catalog, {}, ModelAccess.of(["tiny-free"], []), level="PRECISION")
    assert ids(decision) == ["tiny-free"] and "from every tier" in decision.reason
