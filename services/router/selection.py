"""Which models may serve a request, in which order: power levels, capability filters and health.

ECO takes the cheapest capable model (free first), BALANCED the best quality per cost, PRECISION the
highest quality, CUSTOM exactly the named model. A named model comes first and the power level shapes
what follows it. Models whose provider is down are left out unless every candidate is down; then the
least-bad goes first rather than none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from services.router.catalog import Catalog, Model, Policy
from services.router.health_view import RANK, HealthView
from services.router.pricing import worst_case_micro
from services.router.request import CAPABILITY_OF_ROUTE, Request
from services.runtime.errors import DomainError


@dataclass(slots=True)
class Choice:
    model: Model
    score: float
    reason: str
    health: str
    estimated_cost_micro: int


@dataclass
class Decision:
    power_level: str
    reason: str
    candidates: list[Choice]
    skipped: dict[str, str] = field(default_factory=dict)  # model id -> why it was left out

    def as_dict(self) -> dict[str, object]:
        return {
            "power_level": self.power_level,
            "reason": self.reason,
            "candidates": [
                {"model": c.model.id, "provider": c.model.provider.name, "score": round(c.score, 4), "health": c.health}
                for c in self.candidates
            ],
            "skipped": self.skipped,
        }


def score(policy: Policy, model: Model) -> float:
    """Higher is better under the policy's strategy."""
    if policy.strategy == "cheapest":
        return -model.blended_micro_per_1k / 1_000_000
    if policy.strategy == "quality_per_cost":
        # Quality per order of magnitude of price: a tenfold price must buy a clearly better model.
        return model.quality / math.log10(10 + model.blended_micro_per_1k)
    return float(model.quality)


# Needs whose meaning is one model's own (its tokenizer's ids, its vector size): never served by another.
PINNED = frozenset({"token_ids", "dimensions"})


def rank(catalog: Catalog, level: str, needs: frozenset[str]) -> tuple[list[Model], str]:
    """The catalog's models for an automatic choice at `level`, best first, with the reason."""
    policy = catalog.policies[level]
    enabled = [m for m in catalog.models.values() if m.enabled and needs <= m.capabilities]
    pool = [m for m in enabled if m.tier in policy.tiers and m.quality >= policy.min_quality]
    reason = {
        "cheapest": "cheapest capable model, free first",
        "quality_per_cost": "best quality per cost",
        "highest_quality": "highest quality",
        "exact": "exact model",
    }[policy.strategy]
    if not pool:
        pool = enabled
        reason += " (no capable model in the level's tiers, so from every tier)"
    if policy.strategy == "cheapest":
        pool.sort(key=lambda m: (m.blended_micro_per_1k, -m.quality, m.id))
    else:
        pool.sort(key=lambda m: (-score(policy, m), m.blended_micro_per_1k, m.id))
    return pool, f"{level}: {reason}"


def select(catalog: Catalog, request: Request, default_level: str, health: HealthView) -> Decision:
    level = request.power_level or default_level
    policy = catalog.policies[level]
    if request.model is not None:
        named = catalog.resolve(request.model)
        if named is None or not named.enabled:
            raise DomainError("model_not_found", f"The model `{request.model}` does not exist", "model")
        route_capability = CAPABILITY_OF_ROUTE[request.route]
        if route_capability not in named.capabilities:
            raise DomainError(
                "invalid_request", f"The model `{request.model}` does not support {route_capability}", "model"
            )
        pinned = sorted((request.needs & PINNED) - named.capabilities)
        if pinned:
            raise DomainError(
                "invalid_request",
                f"The model `{request.model}` does not take {' or '.join(pinned)} (its catalog entry does not "
                "list them); send text, or name a model that does",
                "model",
            )
        chain = [named]
        reason = f"{level}: requested model {named.id}"
        if level != "CUSTOM":
            ranked, _ = rank(catalog, level, request.needs)
            # Token ids and vector sizes mean something for one model's weights only: no other model stands in.
            chain += catalog.fallback_chain(named) + ([] if request.needs & PINNED else ranked)
    else:
        if level == "CUSTOM":
            raise DomainError("invalid_request", "power level CUSTOM needs a model", "model")
        chain, reason = rank(catalog, level, request.needs)

    skipped: dict[str, str] = {}
    fit: list[Model] = []
    seen: set[str] = set()
    needed = request.prompt_tokens + (request.max_tokens or 0)
    for model in chain:
        if model.id in seen:
            continue
        seen.add(model.id)
        missing = sorted(request.needs - model.capabilities)
        if not model.enabled:
            skipped[model.id] = "disabled"
        elif missing:
            skipped[model.id] = "lacks " + ", ".join(missing)
        elif needed > model.context_window:
            skipped[model.id] = f"context window {model.context_window} < {needed} tokens"
        else:
            fit.append(model)
    if not fit:
        if request.model is not None:
            named_id = chain[0].id
            raise DomainError(
                "invalid_request",
                f"The model `{request.model}` cannot serve this request: {skipped[named_id]}",
                "model",
            )
        raise DomainError(
            "invalid_request",
            "no model in the catalog can serve this request (needs " + ", ".join(sorted(request.needs)) + ")",
            "model",
        )

    live = [m for m in fit if health.state(m.provider.name) != "down"]
    if live:
        for m in fit:
            if m not in live:
                skipped[m.id] = f"provider {m.provider.name} is down"
        ordered = sorted(live, key=lambda m: RANK[health.state(m.provider.name)])
    else:
        ordered = sorted(fit, key=lambda m: health.badness(m.provider.name))
        reason += "; every candidate's provider is down, trying the least-bad"
    candidates = [
        Choice(
            model=m,
            score=score(policy, m) if policy.strategy != "exact" else float(m.quality),
            reason="requested" if m is chain[0] and request.model is not None else ("chosen" if i == 0 else "fallback"),
            health=health.state(m.provider.name),
            estimated_cost_micro=worst_case_micro(m, request),
        )
        for i, m in enumerate(ordered)
    ]
    return Decision(level, reason, candidates, skipped)
