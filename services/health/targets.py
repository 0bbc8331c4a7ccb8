"""What health probes: every catalog provider that has an `api_base`.

The catalog is read and validated by the router's own loader, so both services see the same providers
(with `${VAR:-default}` placeholders expanded the same way). Providers that `litellm` reaches at its own
default endpoints have no `api_base`; they are not probed and stay unknown until routers report outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.router.catalog import Catalog, CatalogError, load

__all__ = ["CatalogError", "Target", "load_targets", "targets_of"]


@dataclass(frozen=True, slots=True)
class Target:
    """One probed endpoint: a provider at its base URL."""

    provider: str
    base_url: str
    api_key_env: str = ""
    timeout_s: float = 0.0  # 0: the probe timeout setting alone

    @property
    def key(self) -> tuple[str, str]:
        return (self.provider, self.base_url)


def targets_of(catalog: Catalog) -> list[Target]:
    return [
        Target(p.name, p.api_base.rstrip("/"), p.api_key_env or "", p.timeout_s)
        for p in catalog.providers.values()
        if p.api_base
    ]


def load_targets(path: Path) -> list[Target]:
    """The targets of the catalog at `path`; raises CatalogError naming the offending entry."""
    return targets_of(load(path))
