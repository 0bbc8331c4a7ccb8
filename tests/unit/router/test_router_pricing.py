"""Cached and reasoning tokens: the catalog's prices for them, the exact charge, the hold that bounds it, and
the provider usage they are read from."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.router import normalize
from services.router.catalog import CatalogError, Model, load, parse
from services.router.pricing import Usage, charge_micro, cost_micro, hold_tokens, worst_case_micro
from services.router.request import parse as parse_request

ROOT = Path(__file__).resolve().parents[3]

CATALOG = """
version: 1
providers:
  p: {api_base: "http://h/v1"}
  free: {api_base: "http://f/v1", free: true}
models:
  - {id: claude, provider: p, tier: PROFESSIONAL, context_window: 200000, max_output_tokens: 64000,
     price: {input: 0.003, output: 0.015, cache_read: 0.0003, cache_write: 0.00375}}
  - {id: gpt, provider: p, tier: BALANCED, context_window: 128000, max_output_tokens: 16384,
     price: {input: 0.00125, output: 0.01, cache_read: 0.000125}}
  - {id: thinker, provider: p, tier: PREMIUM, context_window: 8000, max_output_tokens: 1000,
     price: {input: 0.001, output: 0.002, reasoning: 0.004}}
  - {id: plain, provider: p, tier: BALANCED, price: {input: 0.01, output: 0.02}}
  - {id: local, provider: free, tier: FREE}
"""


@pytest.fixture(scope="module")
def models() -> dict[str, Model]:
    return parse(CATALOG, env={}).models


def _catalog_with(price: str) -> str:
    return f"""
version: 1
providers:
  p: {{api_base: "http://h/v1"}}
models:
  - {{id: m, provider: p, tier: BALANCED, price: {price}}}
"""


def test_prices_become_micro_credits_and_default_to_their_parent(models: dict[str, Model]) -> None:
    claude, gpt, thinker = models["claude"], models["gpt"], models["thinker"]
    assert (claude.cache_read_price, claude.cache_write_price, claude.reasoning_price) == (300, 3750, 15_000)
    assert (gpt.cache_read_price, gpt.cache_write_price) == (125, 1250)  # a cache write costs input at OpenAI
    assert (thinker.cache_read_price, thinker.reasoning_price) == (1000, 4000)
    assert models["plain"].reasoning_micro_per_1k is None and models["plain"].reasoning_price == 20_000


@pytest.mark.parametrize(
    ("price", "field"),
    [
        ("{input: 0.001, output: 0.002, cache_read: -0.0001}", "price.cache_read: must not be negative"),
        ("{input: 0.001, output: 0.002, cache_read: 0.002}", "price.cache_read must not exceed price.input"),
        ("{input: 0.001, output: 0.002, cache_write: 0.0005}", "price.cache_write must not be below"),
        (
            "{input: 0.001, output: 0.002, cache_read: 0.0005, cache_write: 0.0004}",
            "price.cache_write must not be below price.cache_read",
        ),
        ("{input: 0.001, output: 0.002, reasoning: lots}", "price.reasoning: 'lots' is not a number"),
        ("{input: 0.001, output: 0.002, reasoning: 0.0000001}", "price.reasoning: 1e-07 is finer"),
        ("{input: 0.001, output: 0.002, cached: 0.0001}", "price: unknown key cached"),
    ],
)
def test_nonsense_prices_are_refused_naming_the_field(price: str, field: str) -> None:
    with pytest.raises(CatalogError, match="model m: " + field.replace("(", r"\(")):
        parse(_catalog_with(price), env={})


def test_a_charge_prices_each_part_exactly(models: dict[str, Model]) -> None:
    claude = models["claude"]
    # 1000 plain input x 3000 + 4000 read x 300 + 2000 written x 3750 + 500 output x 15000, per 1k tokens
    used = Usage(prompt=7000, completion=500, cache_read=4000, cache_write=2000)
    assert charge_micro(claude, used) == (1000 * 3000 + 4000 * 300 + 2000 * 3750 + 500 * 15_000) // 1000 == 19_200
    # reasoning within the completion: 300 plain output x 2000 + 700 reasoning x 4000
    assert charge_micro(models["thinker"], Usage(prompt=10, completion=1000, reasoning=700)) == 10 + 600 + 2800
    # rounded up once, on the sum, never per part
    assert charge_micro(models["gpt"], Usage(prompt=3, completion=0, cache_read=1)) == 3  # ceil(2.625)
    assert cost_micro(models["plain"], 10, 5) == charge_micro(models["plain"], Usage(10, 5)) == 200
    assert charge_micro(models["local"], Usage(10_000, 10_000, 5000, 5000, 5000)) == 0


def test_an_odd_report_never_prices_a_token_twice(models: dict[str, Model]) -> None:
    claude = models["claude"]
    assert Usage(100, 10, cache_read=150, cache_write=40, reasoning=50).consistent() == Usage(100, 10, 100, 0, 10)
    assert charge_micro(claude, Usage(100, 0, cache_read=150)) == charge_micro(claude, Usage(100, 0, cache_read=100))


@given(
    prompt=st.integers(0, 10**7),
    completion=st.integers(0, 10**6),
    read=st.integers(0, 10**7),
    write=st.integers(0, 10**7),
    reasoning=st.integers(0, 10**6),
)
def test_the_charge_is_exact_integer_arithmetic(
    prompt: int, completion: int, read: int, write: int, reasoning: int
) -> None:
    model = parse(CATALOG, env={}).models["claude"]
    used = Usage(prompt, completion, read, write, reasoning).consistent()
    exact = (
        Decimal(used.prompt - used.cache_read - used.cache_write) * Decimal("0.003")
        + Decimal(used.cache_read) * Decimal("0.0003")
        + Decimal(used.cache_write) * Decimal("0.00375")
        + Decimal(used.completion - used.reasoning) * Decimal("0.015")
        + Decimal(used.reasoning) * Decimal("0.015")
    ) * 1000  # credits per 1k tokens -> micro-credits per token
    charged = charge_micro(model, used)
    assert charged == math.ceil(exact)
    # The hold's prices bound every charge the same tokens can make.
    assert charged <= -(-(used.prompt * 3750 + used.completion * 15_000) // 1000)


def test_the_hold_prices_every_input_as_a_cache_write_and_every_output_as_reasoning(
    models: dict[str, Model],
) -> None:
    request = parse_request("chat", orjson.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}))
    claude, thinker = models["claude"], models["thinker"]
    prompt, completion = hold_tokens(claude, request)
    assert worst_case_micro(claude, request) == -(-(prompt * 3750 + completion * 15_000) // 1000)
    worst = charge_micro(claude, Usage(prompt, completion, cache_write=prompt))
    assert worst_case_micro(claude, request) >= worst > cost_micro(claude, prompt, completion)
    prompt, completion = hold_tokens(thinker, request)
    assert worst_case_micro(thinker, request) == -(-(prompt * 1000 + completion * 4000) // 1000)
    assert worst_case_micro(thinker, request) >= charge_micro(thinker, Usage(prompt, completion, reasoning=completion))


def test_usage_is_read_from_openai_and_anthropic_reports() -> None:
    openai = {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0},
    }
    assert normalize.usage_of({"usage": openai}) == Usage(2006, 300, cache_read=1920, reasoning=256)
    # litellm's Anthropic usage: prompt_tokens already counts the cache's tokens
    anthropic = {
        "prompt_tokens": 1510,
        "completion_tokens": 20,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 500,
        "prompt_tokens_details": {"cached_tokens": 1000, "cache_creation_tokens": 500},
    }
    assert normalize.usage_of({"usage": anthropic}) == Usage(1510, 20, cache_read=1000, cache_write=500)
    assert normalize.usage_of({"usage": {"prompt_tokens": 5, "cache_read_input_tokens": 3}}) == Usage(5, 0, 3)
    odd = {"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": "9"}}
    assert normalize.usage_of({"usage": odd}) == Usage(5, 2)
    assert normalize.usage_of({"usage": {"prompt_tokens": True}}) is None


def test_the_shipped_catalogs_price_cached_input_where_providers_do() -> None:
    default = load(ROOT / "catalog" / "default.yaml", env={}).models
    assert (
        default["claude-sonnet-4-6"].cache_write_price == 3750 and default["claude-sonnet-4-6"].cache_read_price == 300
    )
    assert default["gpt-5"].cache_read_price == 125 and default["gpt-5"].cache_write_price == 1250
    assert all(m.cache_read_price <= m.input_micro_per_1k for m in default.values())
