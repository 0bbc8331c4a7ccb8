"""Reading probe targets from the catalog: providers, distinct deployment base URLs, placeholders."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.health.targets import CatalogError, Target, expand, load_targets


def test_placeholders_expand_from_the_environment() -> None:
    env = {"PORT": "9000", "EMPTY": ""}
    assert expand("http://h:${PORT:-1}/v1", env) == "http://h:9000/v1"
    assert expand("http://h:${MISSING:-8090}/v1", env) == "http://h:8090/v1"
    assert expand("http://h:${EMPTY:-7}/v1", env) == "http://h:7/v1"
    assert expand("${MISSING}", env) == ""


def test_providers_and_distinct_deployment_bases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_PORT", "8123")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        """
version: 1
providers:
  demo:
    api_base: http://127.0.0.1:${DEMO_PORT:-8090}/v1/
  openai:
    api_base: https://api.openai.com/v1
    api_key_env: OPENAI_API_KEY
    timeout_s: 60
models:
  - {id: a, provider: demo, upstream: a}
  - {id: b, provider: openai, upstream: b, api_base: https://eu.example.com/v1}
  - {id: c, provider: openai, upstream: c, api_base: https://eu.example.com/v1}
"""
    )
    assert load_targets(catalog) == [
        Target("demo", "http://127.0.0.1:8123/v1"),
        Target("openai", "https://api.openai.com/v1", "OPENAI_API_KEY", 60.0),
        Target("openai", "https://eu.example.com/v1", "OPENAI_API_KEY", 60.0),
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("models: []", "providers"),
        ("providers: {x: {api_base: ''}}", "providers.x"),
        ("providers: {x: {api_base: 'ftp://h'}}", "http(s)"),
        ("providers: [", "YAML"),
    ],
)
def test_bad_catalogs_are_named(tmp_path: Path, text: str, problem: str) -> None:
    catalog = tmp_path / "bad.yaml"
    catalog.write_text(text)
    with pytest.raises(CatalogError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        load_targets(catalog)


def test_a_missing_catalog_is_named(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read"):
        load_targets(tmp_path / "nope.yaml")
