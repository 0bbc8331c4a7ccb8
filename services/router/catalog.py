"""The model catalog: the YAML file that names providers, models, fallback chains and power-level policies.

`load()` reads and strictly validates it. Any problem (an unknown key, an unknown reference, a duplicate id or
alias, a fallback cycle, a paid model without a price) raises one `CatalogError` naming the offending entry,
so a bad catalog never starts a router. Prices become integer micro-credits per 1k tokens here, once:
`input` and `output`, and where a provider charges differently `cache_read` (cached input read back),
`cache_write` (input written to a prompt cache) and `reasoning` (reasoning output); each defaults to the
price of the tokens it is part of.

A model runs on one provider (`provider` + `upstream`) or on several `deployments` (each a provider entry,
with its own base URL and key, an upstream name, a region and a weight); `routing` says how a request picks
among them (`weighted`, `least-busy`, `lowest-latency`). `rpm`/`tpm` are a model's own limits across every
caller, which the gateway enforces.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from services.router.tokens import IMAGE_HIGH_TOKENS, TOKENIZERS

TIERS = ("FREE", "STARTER", "BALANCED", "PROFESSIONAL", "PREMIUM", "SPECIALIZED")
# `token_ids`: takes prompts (completions) or inputs (embeddings) as arrays of token ids; `dimensions`: an
# embedding model that shortens its vectors to the `dimensions` asked for.
CAPABILITIES = ("chat", "completion", "embeddings", "tools", "vision", "json", "token_ids", "dimensions")
ADAPTERS = ("openai", "litellm")
POWER_LEVELS = ("ECO", "BALANCED", "PRECISION", "CUSTOM")
STRATEGIES = ("cheapest", "quality_per_cost", "highest_quality", "exact")
# How a request picks among a model's deployments (services/router/deployments.py).
ROUTINGS = ("weighted", "least-busy", "lowest-latency")
MICRO = 1_000_000
# input and output per 1k tokens; cache_read, cache_write and reasoning where a provider charges them apart
PRICE_PARTS = ("input", "output", "cache_read", "cache_write", "reasoning")

DEFAULT_POLICIES: dict[str, dict[str, Any]] = {
    "ECO": {"strategy": "cheapest", "tiers": ["FREE", "STARTER", "BALANCED"]},
    "BALANCED": {"strategy": "quality_per_cost", "tiers": ["STARTER", "BALANCED", "PROFESSIONAL"]},
    "PRECISION": {"strategy": "highest_quality", "tiers": ["PROFESSIONAL", "PREMIUM", "BALANCED"]},
    "CUSTOM": {"strategy": "exact"},
}

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PROVIDER_KEYS = {
    "api_base",
    "api_key_env",
    "adapter",
    "litellm_provider",
    "timeout_s",
    "connect_timeout_s",
    "free",
    "byok",
    "responses",
}
_MODEL_KEYS = {
    "id",
    "aliases",
    "provider",
    "upstream",
    "tier",
    "price",
    "context_window",
    "max_output_tokens",
    "capabilities",
    "quality",
    "enabled",
    "fallbacks",
    "tokenizer",
    "image_tokens",
    "deployments",
    "routing",
    "rpm",
    "tpm",
}
_DEPLOYMENT_KEYS = {"id", "provider", "upstream", "region", "weight"}
_TOP_KEYS = {"version", "providers", "models", "tier_fallbacks", "power_levels", "default_power_level"}
_POLICY_KEYS = {"strategy", "tiers", "min_quality"}


class CatalogError(ValueError):
    """The catalog is invalid; the message names the offending entry."""


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    api_base: str
    api_key_env: str | None
    adapter: str
    litellm_provider: str | None
    timeout_s: float
    connect_timeout_s: float
    free: bool
    byok: bool = False  # the provider checks the key it is sent, so a caller's own key may replace the platform's
    responses: bool = False  # it serves OpenAI's `/v1/responses`: Responses requests are passed through to it


@dataclass(frozen=True, slots=True)
class Deployment:
    """One place a model runs: a provider entry (its base URL and key), the model's name there, a region, a weight."""

    id: str  # unique within its model; the provider's name unless given
    provider: Provider
    upstream: str
    region: str = ""
    weight: float = 1.0  # share of the traffic under `weighted`; 0: only when the others cannot serve


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    aliases: tuple[str, ...]
    provider: Provider
    upstream: str
    tier: str
    input_micro_per_1k: int
    output_micro_per_1k: int
    context_window: int
    max_output_tokens: int | None
    capabilities: frozenset[str]
    quality: int
    enabled: bool
    fallbacks: tuple[str, ...]
    tokenizer: str | None = None  # exact for this model's family: counts its message text instead of bytes
    image_tokens_low: int = IMAGE_HIGH_TOKENS  # most an image at detail "low" can cost
    image_tokens_high: int = IMAGE_HIGH_TOKENS  # most any other image can cost
    cache_read_micro_per_1k: int | None = None  # None: cached input costs the input price
    cache_write_micro_per_1k: int | None = None  # None: input written to a cache costs the input price
    reasoning_micro_per_1k: int | None = None  # None: reasoning costs the output price
    # Where it runs; `provider`/`upstream` above are the first deployment's, or the one this copy is bound to.
    deployments: tuple[Deployment, ...] = ()
    routing: str = "weighted"
    rpm: int = 0  # the model's own limits across every caller (enforced by the gateway); 0: none
    tpm: int = 0
    deployment_id: str = ""  # the deployment this copy of the model is bound to (`on`); "" for the entry itself
    region: str = ""

    def on(self, deployment: Deployment) -> Model:
        """This model bound to one of its deployments: what an attempt calls.

        A model with one deployment is its own (its `provider` and `upstream` are that deployment's).
        """
        if len(self.deployments) == 1:
            return dataclasses.replace(self, deployment_id=deployment.id, region=deployment.region)
        return dataclasses.replace(
            self,
            provider=deployment.provider,
            upstream=deployment.upstream,
            deployment_id=deployment.id,
            region=deployment.region,
        )

    @property
    def places(self) -> tuple[Provider, ...]:
        """The provider entries it runs on, in catalog order: its own once bound to a deployment."""
        if len(self.deployments) <= 1 or self.deployment_id:
            return (self.provider,)
        return tuple(d.provider for d in self.deployments)

    @property
    def providers(self) -> tuple[str, ...]:
        """The names of the providers its deployments run on, in catalog order, each once."""
        return tuple(dict.fromkeys(p.name for p in self.places))

    @property
    def cache_read_price(self) -> int:
        return self.input_micro_per_1k if self.cache_read_micro_per_1k is None else self.cache_read_micro_per_1k

    @property
    def cache_write_price(self) -> int:
        return self.input_micro_per_1k if self.cache_write_micro_per_1k is None else self.cache_write_micro_per_1k

    @property
    def reasoning_price(self) -> int:
        return self.output_micro_per_1k if self.reasoning_micro_per_1k is None else self.reasoning_micro_per_1k

    @property
    def free(self) -> bool:
        prices = (self.input_micro_per_1k, self.output_micro_per_1k, self.cache_write_price, self.reasoning_price)
        # Not free while any deployment it may be sent to charges: holds are made before the deployment is known.
        return all(p.free for p in self.places) or not any(prices)

    @property
    def blended_micro_per_1k(self) -> int:
        return self.input_micro_per_1k + self.output_micro_per_1k


@dataclass(frozen=True, slots=True)
class Policy:
    strategy: str
    tiers: tuple[str, ...]
    min_quality: int = 0


@dataclass(frozen=True)
class Catalog:
    providers: dict[str, Provider]
    models: dict[str, Model]  # by id, in file order
    tier_fallbacks: dict[str, tuple[str, ...]]
    policies: dict[str, Policy]
    default_power_level: str
    names: dict[str, str] = field(default_factory=dict)  # id or alias -> id

    def resolve(self, name: str) -> Model | None:
        model_id = self.names.get(name)
        return self.models[model_id] if model_id is not None else None

    def fallback_chain(self, model: Model) -> list[Model]:
        """The models to try after `model`: its own chain (followed transitively) or its tier's."""
        chain: list[Model] = []
        seen = {model.id}

        def walk(ids: tuple[str, ...]) -> None:
            for model_id in ids:
                if model_id in seen:
                    continue
                seen.add(model_id)
                nxt = self.models[model_id]
                chain.append(nxt)
                walk(nxt.fallbacks)

        walk(model.fallbacks or self.tier_fallbacks.get(model.tier, ()))
        return chain


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping with the same key twice instead of keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise CatalogError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def expand(value: str, env: dict[str, str] | None = None) -> str:
    """Replace `${VAR}` and `${VAR:-default}` with the environment's value (or the default)."""
    environ = os.environ if env is None else env

    def sub(match: re.Match[str]) -> str:
        found = environ.get(match[1])
        if found:
            return found
        if match[2] is not None:
            return match[2]
        raise CatalogError(f"environment variable {match[1]} is not set and has no default")

    return _PLACEHOLDER.sub(sub, value)


def load(path: str | Path, env: dict[str, str] | None = None) -> Catalog:
    """Read and validate the catalog file at `path`."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from None
    return parse(text, env)


def parse(text: str, env: dict[str, str] | None = None) -> Catalog:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise CatalogError(f"not valid YAML: {exc}") from None
    return _Builder(env).build(data)


def micro_per_1k(value: object, where: str) -> int:
    """Credits per 1k tokens as integer micro-credits per 1k tokens; sub-micro prices are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise CatalogError(f"{where}: must be a number of credits per 1k tokens")
    try:
        amount = Decimal(str(value)) * MICRO
    except InvalidOperation:
        raise CatalogError(f"{where}: {value!r} is not a number") from None
    if amount < 0:
        raise CatalogError(f"{where}: must not be negative")
    if amount != amount.to_integral_value():
        raise CatalogError(f"{where}: {value} is finer than one micro-credit per 1k tokens")
    return int(amount)


class _Builder:
    def __init__(self, env: dict[str, str] | None) -> None:
        self.env = env

    def build(self, data: object) -> Catalog:
        top = self._mapping(data, "catalog")
        self._keys(top, _TOP_KEYS, "catalog")
        if top.get("version", 1) != 1:
            raise CatalogError(f"catalog: unsupported version {top.get('version')!r} (expected 1)")
        providers_raw = self._mapping(top.get("providers"), "providers")
        if not providers_raw:
            raise CatalogError("providers: at least one provider is required")
        providers = {name: self._provider(str(name), spec) for name, spec in providers_raw.items()}

        models_raw = top.get("models")
        if not isinstance(models_raw, list) or not models_raw:
            raise CatalogError("models: must be a non-empty list")
        models: dict[str, Model] = {}
        names: dict[str, str] = {}
        for index, spec in enumerate(models_raw):
            model = self._model(index, spec, providers)
            for name in (model.id, *model.aliases):
                if name in names:
                    raise CatalogError(f"model {model.id}: id or alias {name!r} is already used by {names[name]}")
                names[name] = model.id
            models[model.id] = model

        models = {mid: self._resolved_fallbacks(m, names) for mid, m in models.items()}
        self._no_cycles(models)
        tier_fallbacks = self._tier_fallbacks(top.get("tier_fallbacks"), names)
        policies = self._policies(top.get("power_levels"))
        default = top.get("default_power_level", "BALANCED")
        if default not in policies:
            raise CatalogError(f"default_power_level: {default!r} is not one of {', '.join(policies)}")
        return Catalog(providers, models, tier_fallbacks, policies, str(default), names)

    # entries

    def _provider(self, name: str, spec: object) -> Provider:
        where = f"provider {name}"
        raw = self._mapping(spec, where)
        self._keys(raw, _PROVIDER_KEYS, where)
        adapter = raw.get("adapter", "openai")
        if adapter not in ADAPTERS:
            raise CatalogError(f"{where}: adapter {adapter!r} is not one of {', '.join(ADAPTERS)}")
        litellm_provider = raw.get("litellm_provider")
        if adapter == "litellm" and not litellm_provider:
            raise CatalogError(f"{where}: adapter litellm needs litellm_provider (e.g. anthropic)")
        if adapter == "openai" and litellm_provider is not None:
            raise CatalogError(f"{where}: litellm_provider is only for adapter litellm")
        api_base = raw.get("api_base")
        if api_base is not None and not isinstance(api_base, str):
            raise CatalogError(f"{where}: api_base must be a string")
        if adapter == "openai" and not api_base:
            raise CatalogError(f"{where}: api_base is required for adapter openai")
        try:
            base = expand(api_base, self.env).rstrip("/") if api_base else ""
        except CatalogError as exc:
            raise CatalogError(f"{where}: api_base: {exc}") from None
        key_env = raw.get("api_key_env")
        if key_env is not None and (not isinstance(key_env, str) or not key_env):
            raise CatalogError(f"{where}: api_key_env must be the name of an environment variable")
        return Provider(
            name=name,
            api_base=base,
            api_key_env=key_env,
            adapter=str(adapter),
            litellm_provider=str(litellm_provider) if litellm_provider else None,
            timeout_s=self._positive(raw.get("timeout_s", 60), f"{where}: timeout_s"),
            connect_timeout_s=self._positive(raw.get("connect_timeout_s", 5), f"{where}: connect_timeout_s"),
            free=self._bool(raw.get("free", False), f"{where}: free"),
            byok=self._bool(raw.get("byok", False), f"{where}: byok"),
            responses=self._responses(raw.get("responses", False), adapter, where),
        )

    def _responses(self, value: object, adapter: object, where: str) -> bool:
        responses = self._bool(value, f"{where}: responses")
        if responses and adapter != "openai":
            raise CatalogError(f"{where}: responses is only for adapter openai (it calls {{api_base}}/responses)")
        return responses

    def _model(self, index: int, spec: object, providers: dict[str, Provider]) -> Model:
        raw = self._mapping(spec, f"models[{index}]")
        model_id = raw.get("id")
        if not isinstance(model_id, str) or not model_id:
            raise CatalogError(f"models[{index}]: id must be a non-empty string")
        where = f"model {model_id}"
        self._keys(raw, _MODEL_KEYS, where)
        aliases = self._strings(raw.get("aliases", []), f"{where}: aliases")
        deployments = self._deployments(raw, model_id, providers, where)
        provider, upstream = deployments[0].provider, deployments[0].upstream
        routing = raw.get("routing", "weighted")
        if routing not in ROUTINGS:
            raise CatalogError(f"{where}: routing {routing!r} is not one of {', '.join(ROUTINGS)}")
        tier = raw.get("tier")
        if tier not in TIERS:
            raise CatalogError(f"{where}: tier {tier!r} is not one of {', '.join(TIERS)}")
        capabilities = self._strings(raw.get("capabilities", ["chat"]), f"{where}: capabilities")
        for cap in capabilities:
            if cap not in CAPABILITIES:
                raise CatalogError(f"{where}: capability {cap!r} is not one of {', '.join(CAPABILITIES)}")
        paid = [d.provider for d in deployments if not d.provider.free]
        price = self._price(raw.get("price"), paid[0] if paid else provider, where)
        max_output = raw.get("max_output_tokens")
        tokenizer = raw.get("tokenizer")
        if tokenizer is not None and (not isinstance(tokenizer, str) or tokenizer not in TOKENIZERS):
            raise CatalogError(f"{where}: tokenizer {tokenizer!r} is not one of {', '.join(TOKENIZERS)}")
        image_low, image_high = self._image_tokens(raw.get("image_tokens"), where)
        return Model(
            id=model_id,
            aliases=tuple(aliases),
            provider=provider,
            upstream=upstream,
            tier=str(tier),
            input_micro_per_1k=price["input"] or 0,
            output_micro_per_1k=price["output"] or 0,
            cache_read_micro_per_1k=price["cache_read"],
            cache_write_micro_per_1k=price["cache_write"],
            reasoning_micro_per_1k=price["reasoning"],
            context_window=self._int(raw.get("context_window", 8192), f"{where}: context_window", 1),
            # 0 is how an embedding model says it writes no tokens
            max_output_tokens=None
            if max_output is None
            else (self._int(max_output, f"{where}: max_output_tokens", 0) or None),
            capabilities=frozenset(capabilities),
            quality=self._int(raw.get("quality", 50), f"{where}: quality", 0, 100),
            enabled=self._bool(raw.get("enabled", True), f"{where}: enabled"),
            fallbacks=tuple(self._strings(raw.get("fallbacks", []), f"{where}: fallbacks")),
            tokenizer=tokenizer,
            image_tokens_low=image_low,
            image_tokens_high=image_high,
            deployments=deployments,
            routing=str(routing),
            rpm=self._int(raw.get("rpm", 0), f"{where}: rpm", 0),
            tpm=self._int(raw.get("tpm", 0), f"{where}: tpm", 0),
        )

    def _deployments(
        self, raw: dict[Any, Any], model_id: str, providers: dict[str, Provider], where: str
    ) -> tuple[Deployment, ...]:
        """A model's deployments: its `deployments` list, or the one its `provider` and `upstream` name."""
        if "deployments" not in raw:
            provider_name = raw.get("provider")
            if not isinstance(provider_name, str) or provider_name not in providers:
                raise CatalogError(f"{where}: unknown provider {provider_name!r}")
            upstream = raw.get("upstream", model_id)
            if not isinstance(upstream, str) or not upstream:
                raise CatalogError(f"{where}: upstream must be a non-empty string")
            return (Deployment(str(provider_name), providers[provider_name], upstream),)
        for key in ("provider", "upstream"):
            if key in raw:
                raise CatalogError(f"{where}: {key} and deployments exclude each other (give each deployment its own)")
        specs = raw["deployments"]
        if not isinstance(specs, list) or not specs:
            raise CatalogError(f"{where}: deployments must be a non-empty list")
        found: list[Deployment] = []
        for index, spec in enumerate(specs):
            place = f"{where}: deployments[{index}]"
            entry = self._mapping(spec, place)
            if not entry:
                raise CatalogError(f"{place}: must name a provider")
            self._keys(entry, _DEPLOYMENT_KEYS, place)
            provider_name = entry.get("provider")
            if not isinstance(provider_name, str) or provider_name not in providers:
                raise CatalogError(f"{place}: unknown provider {provider_name!r}")
            upstream = entry.get("upstream", model_id)
            if not isinstance(upstream, str) or not upstream:
                raise CatalogError(f"{place}: upstream must be a non-empty string")
            deployment_id = entry.get("id", provider_name)
            if not isinstance(deployment_id, str) or not deployment_id:
                raise CatalogError(f"{place}: id must be a non-empty string")
            if any(d.id == deployment_id for d in found):
                raise CatalogError(
                    f"{place}: id {deployment_id!r} is already used by another deployment of {model_id} "
                    "(give deployments on one provider each their own id)"
                )
            region = entry.get("region", "")
            if not isinstance(region, str):
                raise CatalogError(f"{place}: region must be a string")
            weight = entry.get("weight", 1)
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0:
                raise CatalogError(f"{place}: weight must be a number >= 0")
            if weight == float("inf"):
                raise CatalogError(f"{place}: weight must be finite")
            found.append(Deployment(deployment_id, providers[provider_name], upstream, region, float(weight)))
        if sum(d.weight for d in found) <= 0:
            raise CatalogError(f"{where}: deployments: weights sum to zero (at least one must be above 0)")
        return tuple(found)

    def _price(self, value: object, provider: Provider, where: str) -> dict[str, int | None]:
        """Micro-credits per 1k tokens by part; the cache and reasoning parts None when not given."""
        prices: dict[str, int | None] = dict.fromkeys(PRICE_PARTS)
        if value is None:
            if not provider.free:
                raise CatalogError(f"{where}: price is required (provider {provider.name} is paid)")
            return {**prices, "input": 0, "output": 0}
        raw = self._mapping(value, f"{where}: price")
        self._keys(raw, set(PRICE_PARTS), f"{where}: price")
        for part in ("input", "output"):
            if part not in raw and not provider.free:
                raise CatalogError(f"{where}: price.{part} is required (provider {provider.name} is paid)")
        for part in PRICE_PARTS:
            if part in raw or part in ("input", "output"):
                prices[part] = micro_per_1k(raw.get(part, 0), f"{where}: price.{part}")
        base_in = prices["input"] or 0
        read, write = prices["cache_read"], prices["cache_write"]
        if read is not None and read > base_in:
            raise CatalogError(f"{where}: price.cache_read must not exceed price.input (a cache hit is never dearer)")
        if write is not None and write < (base_in if read is None else read):
            raise CatalogError(f"{where}: price.cache_write must not be below price.cache_read (or price.input)")
        return prices

    def _image_tokens(self, value: object, where: str) -> tuple[int, int]:
        """(low, high): what one image may cost at detail low and otherwise; low is high unless given."""
        if value is None:
            return IMAGE_HIGH_TOKENS, IMAGE_HIGH_TOKENS
        raw = self._mapping(value, f"{where}: image_tokens")
        self._keys(raw, {"low", "high"}, f"{where}: image_tokens")
        high = self._int(raw.get("high", IMAGE_HIGH_TOKENS), f"{where}: image_tokens.high", 1)
        low = self._int(raw.get("low", high), f"{where}: image_tokens.low", 1)
        if low > high:
            raise CatalogError(f"{where}: image_tokens.low must not exceed image_tokens.high")
        return low, high

    def _resolved_fallbacks(self, model: Model, names: dict[str, str]) -> Model:
        resolved = []
        for name in model.fallbacks:
            if name not in names:
                raise CatalogError(f"model {model.id}: fallback {name!r} is not a model id or alias")
            if names[name] == model.id:
                raise CatalogError(f"model {model.id}: falls back to itself")
            resolved.append(names[name])
        return dataclasses.replace(model, fallbacks=tuple(resolved))

    def _no_cycles(self, models: dict[str, Model]) -> None:
        done: set[str] = set()

        def visit(model_id: str, path: list[str]) -> None:
            if model_id in path:
                cycle = " -> ".join([*path[path.index(model_id) :], model_id])
                raise CatalogError(f"model {path[path.index(model_id)]}: fallback cycle {cycle}")
            if model_id in done:
                return
            for nxt in models[model_id].fallbacks:
                visit(nxt, [*path, model_id])
            done.add(model_id)

        for model_id in models:
            visit(model_id, [])

    def _tier_fallbacks(self, raw: object, names: dict[str, str]) -> dict[str, tuple[str, ...]]:
        if raw is None:
            return {}
        chains = self._mapping(raw, "tier_fallbacks")
        out: dict[str, tuple[str, ...]] = {}
        for tier, chain in chains.items():
            if tier not in TIERS:
                raise CatalogError(f"tier_fallbacks: unknown tier {tier!r}")
            ids = []
            for name in self._strings(chain, f"tier_fallbacks.{tier}"):
                if name not in names:
                    raise CatalogError(f"tier_fallbacks.{tier}: {name!r} is not a model id or alias")
                ids.append(names[name])
            out[str(tier)] = tuple(ids)
        return out

    def _policies(self, raw: object) -> dict[str, Policy]:
        specs = dict(DEFAULT_POLICIES)
        if raw is not None:
            given = self._mapping(raw, "power_levels")
            for level in given:
                if level not in POWER_LEVELS:
                    raise CatalogError(f"power_levels: unknown power level {level!r}")
            specs.update(given)
        policies: dict[str, Policy] = {}
        for level, spec in specs.items():
            where = f"power_levels.{level}"
            body = self._mapping(spec, where)
            self._keys(body, _POLICY_KEYS, where)
            strategy = body.get("strategy")
            if strategy not in STRATEGIES:
                raise CatalogError(f"{where}: strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
            if (strategy == "exact") != (level == "CUSTOM"):
                raise CatalogError(f"{where}: strategy exact belongs to CUSTOM and only to it")
            tiers = self._strings(body.get("tiers", list(TIERS)), f"{where}: tiers")
            for tier in tiers:
                if tier not in TIERS:
                    raise CatalogError(f"{where}: unknown tier {tier!r}")
            min_quality = self._int(body.get("min_quality", 0), f"{where}: min_quality", 0, 100)
            policies[str(level)] = Policy(str(strategy), tuple(tiers), min_quality)
        return policies

    # value checks

    @staticmethod
    def _mapping(value: object, where: str) -> dict[Any, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise CatalogError(f"{where}: must be a mapping")
        return value

    @staticmethod
    def _keys(raw: dict[Any, Any], allowed: set[str], where: str) -> None:
        unknown = sorted(str(k) for k in raw if k not in allowed)
        if unknown:
            raise CatalogError(f"{where}: unknown key {', '.join(unknown)}")

    @staticmethod
    def _strings(value: object, where: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise CatalogError(f"{where}: must be a list of strings")
        return value

    @staticmethod
    def _bool(value: object, where: str) -> bool:
        if not isinstance(value, bool):
            raise CatalogError(f"{where}: must be true or false")
        return value

    @staticmethod
    def _int(value: object, where: str, low: int, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            bound = f" from {low} to {high}" if high is not None else f" >= {low}"
            raise CatalogError(f"{where}: must be an integer{bound}")
        return value

    @staticmethod
    def _positive(value: object, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise CatalogError(f"{where}: must be a positive number of seconds")
        return float(value)
