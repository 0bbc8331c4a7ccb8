"""What health probes: every catalog provider and each distinct deployment base URL.

Reads only the `providers` section of the catalog YAML (and an optional per-model `api_base`), expanding
`${VAR}` / `${VAR:-default}` placeholders from the environment the same way the router does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class CatalogError(ValueError):
    """The catalog cannot be read; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Target:
    """One probed endpoint: a provider at one base URL."""

    provider: str
    base_url: str
    api_key_env: str = ""
    timeout_s: float = 0.0  # 0: the probe timeout setting alone

    @property
    def key(self) -> tuple[str, str]:
        return (self.provider, self.base_url)


def expand(value: str, env: Mapping[str, str] | None = None) -> str:
    """`${VAR}` and `${VAR:-default}` replaced from `env` (the process environment by default)."""
    source = os.environ if env is None else env

    def one(match: re.Match[str]) -> str:
        found = source.get(match[1])
        if found:
            return found
        return match[2] if match[2] is not None else ""

    return _PLACEHOLDER.sub(one, value)


def _base(url: object, where: str, path: Path) -> str:
    if not isinstance(url, str) or not url.strip():
        raise CatalogError(f"{path}: {where}: api_base must be a non-empty string")
    expanded = expand(url).strip().rstrip("/")
    if not expanded.startswith(("http://", "https://")):
        raise CatalogError(f"{path}: {where}: api_base must be an http(s) URL after expansion")
    return expanded


def parse_targets(doc: Any, path: Path) -> list[Target]:
    if not isinstance(doc, dict) or not isinstance(doc.get("providers"), dict):
        raise CatalogError(f"{path}: a `providers` mapping is required")
    providers: dict[str, Target] = {}
    for name, spec in doc["providers"].items():
        if not isinstance(spec, dict):
            raise CatalogError(f"{path}: providers.{name} must be a mapping")
        key_env = spec.get("api_key_env") or ""
        timeout = spec.get("timeout_s") or 0
        if not isinstance(key_env, str) or not isinstance(timeout, int | float):
            raise CatalogError(f"{path}: providers.{name}: api_key_env must be a string, timeout_s a number")
        base = _base(spec.get("api_base"), f"providers.{name}", path)
        providers[str(name)] = Target(str(name), base, key_env, float(timeout))

    targets = dict.fromkeys(providers.values())
    models = doc.get("models") or []
    for i, model in enumerate(models if isinstance(models, list) else []):
        if not isinstance(model, dict) or not model.get("api_base"):
            continue
        owner = providers.get(str(model.get("provider")))
        if owner is None:
            continue
        base = _base(model["api_base"], f"models[{i}]", path)
        targets[Target(owner.provider, base, owner.api_key_env, owner.timeout_s)] = None
    return list(targets)


def load_targets(path: Path) -> list[Target]:
    """The targets of the catalog at `path`; raises CatalogError naming the problem."""
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the catalog: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from None
    return parse_targets(doc, path)
