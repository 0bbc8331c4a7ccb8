"""Catalog loading and strict validation; `tollgate catalog check`."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from services.cli import catalog as catalog_cli
from services.router.catalog import CatalogError, expand, load, parse
from services.router.settings import DEMO_CATALOG

ROOT = Path(__file__).resolve().parents[3]

BASE = """
version: 1
providers:
  p1: {api_base: "http://127.0.0.1:1/v1", adapter: openai}
  local: {api_base: "http://127.0.0.1:2/v1", adapter: openai, free: true}
models:
  - {id: a, provider: p1, tier: BALANCED, price: {input: 0.01, output: 0.02}, aliases: [alpha]}
  - {id: b, provider: p1, tier: STARTER, price: {input: 0.001, output: 0.002}}
  - {id: c, provider: local, tier: FREE}
"""


def test_demo_catalog_loads_with_micro_prices() -> None:
    cat = load(DEMO_CATALOG, env={})
    echo = cat.models["demo-echo"]
    assert (echo.input_micro_per_1k, echo.output_micro_per_1k) == (10_000, 20_000)
    assert echo.provider.api_base == "http://127.0.0.1:8090/v1"
    assert cat.models["demo-free"].free and not echo.free
    assert cat.resolve("echo") is echo
    assert [m.id for m in cat.fallback_chain(cat.models["demo-fallback"])] == ["demo-echo"]
    assert set(cat.providers) == {"demo", "demo-free"}


def test_api_base_expands_from_the_environment() -> None:
    cat = load(DEMO_CATALOG, env={"TOLLGATE_DEMO_UPSTREAM_URL": "http://10.0.0.1:9/v1/"})
    assert cat.providers["demo"].api_base == "http://10.0.0.1:9/v1"
    assert expand("${A:-x}/${B}", {"B": "y"}) == "x/y"
    with pytest.raises(CatalogError, match="C is not set"):
        expand("${C}", {})


def test_default_catalog_has_47_models_9_providers_6_tiers() -> None:
    path = ROOT / "catalog" / "default.yaml"
    if not path.exists():
        pytest.skip("catalog/default.yaml is not in this tree yet")
    cat = load(path, env={})
    assert len(cat.models) == 47
    assert len(cat.providers) == 9
    assert {m.tier for m in cat.models.values()} == {
        "FREE",
        "STARTER",
        "BALANCED",
        "PROFESSIONAL",
        "PREMIUM",
        "SPECIALIZED",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("tier: STARTER,", "tier: STARTER, colour: red,"), "model b: unknown key colour"),
        (("provider: p1, tier: STARTER", "provider: nowhere, tier: STARTER"), "model b: unknown provider 'nowhere'"),
        (("aliases: [alpha]", "aliases: [b]"), "model b: id or alias 'b' is already used by a"),
        (("- {id: c,", "- {id: a,"), "model a: id or alias 'a' is already used by a"),
        ((", price: {input: 0.001, output: 0.002}", ""), "model b: price is required (provider p1 is paid)"),
        (("{input: 0.001, output: 0.002}", "{input: 0.001}"), "model b: price.output is required"),
        (("adapter: openai}", "adapter: grpc}"), "provider p1: adapter 'grpc'"),
        (("tier: FREE}", "tier: CHEAP}"), "model c: tier 'CHEAP'"),
        (("version: 1", "version: 1\nextra: true"), "catalog: unknown key extra"),
        (("{input: 0.001,", "{input: 0.0000001,"), "model b: price.input: 1e-07 is finer than one micro-credit"),
        (("aliases: [alpha]}", "aliases: [alpha], fallbacks: [zzz]}"), "model a: fallback 'zzz' is not a model"),
        (("p1: {api_base", "p1: {api_base: x}\n  p1: {api_base"), "duplicate key 'p1'"),
        (("tier: STARTER,", "tier: STARTER, tokenizer: gpt2,"), "model b: tokenizer 'gpt2' is not one of o200k_base"),
        (("tier: STARTER,", "tier: STARTER, tokenizer: [a],"), "model b: tokenizer ['a'] is not one of"),
        (("tier: STARTER,", "tier: STARTER, image_tokens: 5,"), "model b: image_tokens: must be a mapping"),
        (("tier: STARTER,", "tier: STARTER, image_tokens: {tiles: 2},"), "model b: image_tokens: unknown key tiles"),
        (("tier: STARTER,", "tier: STARTER, image_tokens: {low: 0},"), "model b: image_tokens.low: must be an integer"),
        (
            ("tier: STARTER,", "tier: STARTER, image_tokens: {low: 90, high: 80},"),
            "model b: image_tokens.low must not exceed image_tokens.high",
        ),
    ],
)
def test_invalid_catalog_names_the_entry(change: tuple[str, str], message: str) -> None:
    text = BASE.replace(*change, 1)
    assert text != BASE
    with pytest.raises(CatalogError) as err:
        parse(text, env={})
    assert message in str(err.value)


def test_hold_settings_of_a_model() -> None:
    text = BASE.replace("tier: STARTER,", "tier: STARTER, tokenizer: o200k_base, image_tokens: {low: 85, high: 1445},")
    cat = parse(text, env={})
    b, a = cat.models["b"], cat.models["a"]
    assert (b.tokenizer, b.image_tokens_low, b.image_tokens_high) == ("o200k_base", 85, 1445)
    assert (a.tokenizer, a.image_tokens_low, a.image_tokens_high) == (None, 1445, 1445)  # low only where said
    only_high = parse(BASE.replace("tier: STARTER,", "tier: STARTER, image_tokens: {high: 1600},"), env={})
    assert (only_high.models["b"].image_tokens_low, only_high.models["b"].image_tokens_high) == (1600, 1600)


def test_fallback_cycle_refuses_to_load() -> None:
    text = (
        BASE.replace("aliases: [alpha]}", "aliases: [alpha], fallbacks: [b]}")
        .replace("output: 0.002}}", "output: 0.002}, fallbacks: [c]}")
        .replace("tier: FREE}", "tier: FREE, fallbacks: [alpha]}")
    )
    with pytest.raises(CatalogError, match=r"fallback cycle a -> b -> c -> a"):
        parse(text, env={})


def test_fallback_to_itself_refuses_to_load() -> None:
    with pytest.raises(CatalogError, match="model a: falls back to itself"):
        parse(BASE.replace("aliases: [alpha]}", "aliases: [alpha], fallbacks: [alpha]}"), env={})


def test_power_levels_are_checked() -> None:
    bad = BASE + "power_levels:\n  TURBO: {strategy: cheapest}\n"
    with pytest.raises(CatalogError, match="power_levels: unknown power level 'TURBO'"):
        parse(bad, env={})
    with pytest.raises(CatalogError, match="default_power_level"):
        parse(BASE + "default_power_level: FAST\n", env={})


def _check(path: Path) -> int:
    parser = argparse.ArgumentParser()
    catalog_cli.register(parser.add_subparsers())
    args = parser.parse_args(["catalog", "check", str(path)])
    result: int = args.func(args)
    return result


def test_cli_check_accepts_the_demo_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    assert _check(DEMO_CATALOG) == 0
    assert "4 models" in capsys.readouterr().out


def test_cli_check_fails_naming_the_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BASE.replace("provider: p1, tier: STARTER", "provider: nowhere, tier: STARTER"))
    assert _check(path) == 1
    assert "model b: unknown provider 'nowhere'" in capsys.readouterr().err
