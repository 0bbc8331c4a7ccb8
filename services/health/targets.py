"""What health probes: every catalog provider that has an `api_base`.

The catalog is read and validated by the router's own loader, so both services see the same providers
(with `${VAR:-default}` placeholders expanded the same way). Providers that `litellm` reaches at its own
default endpoints have no `api_base`; they are not probed and stay unknown until routers report outcomes.
Each target knows its provider's kind (how it lists models and takes its key): Anthropic and Gemini through
`litellm`, everything else OpenAI-compatible.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.router.catalog import Catalog, CatalogError, load

__all__ = ["CatalogError", "Target", "kind_of", "load_targets", "targets_of"]


@dataclass(frozen=True, slots=True)
class Target:
    """One probed endpoint: a provider at its base URL."""

    provider: str
    base_url: str
    api_key_env: str = ""
    timeout_s: float = 0.0  # 0: the probe timeout setting alone
    kind: str = "openai"  # openai | anthropic | gemini: which listing path and auth header the probe uses

    @property
    def key(self) -> tuple[str, str]:
        return (self.provider, self.base_url)


# litellm providers whose own API is not OpenAI's; any other litellm provider given an api_base speaks OpenAI's.
_NATIVE_KINDS = {"anthropic": "anthropic", "gemini": "gemini", "vertex_ai": "gemini"}


def kind_of(adapter: str, litellm_provider: str | None) -> str:
    return _NATIVE_KINDS.get(litellm_provider or "", "openai") if adapter == "litellm" else "openai"


def targets_of(catalog: Catalog) -> list[Target]:
    return [
        Target(p.name, p.api_base.rstrip("/"), p.api_key_env or "", p.timeout_s, kind_of(p.adapter, p.litellm_provider))
        for p in catalog.providers.values()
        if p.api_base
    ]


def load_targets(path: Path) -> list[Target]:
    """The targets of the catalog at `path`; raises CatalogError naming the offending entry."""
    return targets_of(load(path))
