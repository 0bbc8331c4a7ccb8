"""Probe targets come from the catalog as the router reads it: providers with a base URL, placeholders expanded."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.health.targets import CatalogError, Target, load_targets

ROOT = Path(__file__).resolve().parents[3]
MODEL = (
    "{id: %s, provider: %s, upstream: x, tier: FREE, price: {input: 0, output: 0}, context_window: 1000, "
    "capabilities: [chat], quality: 1}"
)


def test_providers_with_a_base_url_are_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_PORT", "8123")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        f"""
version: 1
providers:
  demo: {{api_base: "http://127.0.0.1:${{DEMO_PORT:-8090}}/v1/", adapter: openai, free: true}}
  openai: {{api_base: https://api.openai.com/v1, api_key_env: OPENAI_API_KEY, adapter: openai, timeout_s: 60,
            free: true}}
  hf: {{adapter: litellm, litellm_provider: huggingface, free: true}}
models:
  - {MODEL % ("a", "demo")}
  - {MODEL % ("b", "openai")}
  - {MODEL % ("c", "hf")}
"""
    )
    assert load_targets(catalog) == [
        Target("demo", "http://127.0.0.1:8123/v1", "", 60.0),
        Target("openai", "https://api.openai.com/v1", "OPENAI_API_KEY", 60.0),
    ]


def test_the_default_catalog_loads() -> None:
    targets = load_targets(ROOT / "catalog" / "default.yaml")
    assert {t.provider for t in targets} >= {"openai", "groq", "together", "local"}
    assert "huggingface" not in {t.provider for t in targets}


def test_a_bad_catalog_is_named(tmp_path: Path) -> None:
    catalog = tmp_path / "bad.yaml"
    catalog.write_text("providers: [")
    with pytest.raises(CatalogError):
        load_targets(catalog)
    with pytest.raises(CatalogError, match="cannot read"):
        load_targets(tmp_path / "nope.yaml")


def test_each_deployment_with_its_own_base_url_is_a_target(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        """
version: 1
providers:
  east: {api_base: "http://east.example/v1", api_key_env: EAST_KEY, free: true}
  west: {api_base: "http://west.example/v1", free: true}
  lib: {adapter: litellm, litellm_provider: huggingface, free: true}
models:
  - id: spread
    tier: FREE
    deployments: [{provider: east}, {provider: west, region: us}, {provider: lib}]
"""
    )
    targets = {t.provider: t for t in load_targets(catalog)}
    assert set(targets) == {"east", "west"}  # the litellm default endpoint has no address to probe
    assert targets["east"] == Target("east", "http://east.example/v1", "EAST_KEY", 60.0, "openai")
    assert targets["west"].base_url == "http://west.example/v1"
