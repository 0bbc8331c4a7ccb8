"""Which models may serve a request, in which order: power levels, capability filters, health and latency.

A named model is a promise: it is tried first unless its provider is down, and a request it cannot serve
(a capability it lacks, a context window too small) is refused naming why, never handed to another model.
Another model answers only through the named model's declared fallbacks (its own, else its tier's) or, when
the request itself sets a power level, that level's ranking; CUSTOM pins the named model alone. Without a
named model the power level ranks the capable models: ECO the cheapest (free first), BALANCED the best
quality per cost, PRECISION the highest quality; equally suitable models go fastest first by health's
measured latency. Models whose provider is down are left out unless every candidate is down; then the
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

# Why a named model is refused, by the capability it lacks: the request field that needs it.
_PARAM_OF_CAPABILITY = {"tools": "tools", "json": "response_format", "vision": "messages"}
_INPUT_PARAM = {"chat": "messages", "completion": "prompt", "embedding": "input", "responses": "input"}


@dataclass(slots=True)
class Choice:
    model: Model
    score: float
    reason: str  # requested | chosen | fallback (automatic) | declared fallback of X | power level L
    health: str
    estimated_cost_micro: int


@dataclass
class Decision:
    power_level: str
    reason: str
    candidates: list[Choice]
    skipped: dict[str, str] = field(default_factory=dict)  # model id -> why it was left out
    requested: str | None = None  # the catalog id of the named model, None for an automatic choice

    def as_dict(self) -> dict[str, object]:
        return {
            "power_level": self.power_level,
            "reason": self.reason,
            "requested": self.requested,
            "candidates": [
                {
                    "model": c.model.id,
                    "provider": c.model.provider.name,
                    "score": round(c.score, 4),
                    "health": c.health,
                    "reason": c.reason,
                }
                for c in self.candidates
            ],
            "skipped": self.skipped,
        }

    def reason_of(self, model: Model) -> str:
        return next((c.reason for c in self.candidates if c.model is model), "")


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


def rank(
    catalog: Catalog, level: str, needs: frozenset[str], health: HealthView | None = None
) -> tuple[list[Model], str]:
    """The catalog's models for an automatic choice at `level`, best first, with the reason.

    Models the level cannot tell apart (the same score and price) go fastest first by the latency health
    measured on their provider; one never measured counts as fastest, so it gets measured.
    """
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

    def latency(m: Model) -> float:
        return health.latency(m.provider.name) if health is not None else 0.0

    if policy.strategy == "cheapest":
        pool.sort(key=lambda m: (m.blended_micro_per_1k, -m.quality, latency(m), m.id))
    else:
        pool.sort(key=lambda m: (-score(policy, m), m.blended_micro_per_1k, latency(m), m.id))
    return pool, f"{level}: {reason}"


def _unfit(model: Model, request: Request) -> tuple[str, str] | None:
    """Why `model` cannot serve `request`, with the request field at fault; None when it can."""
    if not model.enabled:
        return "disabled", "model"
    missing = sorted(request.needs - model.capabilities)
    if missing:
        param = _PARAM_OF_CAPABILITY.get(missing[0], "model")
        if missing[0] == "tools" and not request.body.get("tools"):
            param = "functions"
        return "lacks " + ", ".join(missing), param
    needed = request.prompt_tokens + (request.max_tokens or 0)
    if needed > model.context_window:
        param = _INPUT_PARAM[request.route]
        if request.max_tokens and request.prompt_tokens <= model.context_window:
            param = "max_tokens"
        return f"context window {model.context_window} < {needed} tokens", param
    return None


def _refuse_named(name: str, model: Model, request: Request) -> None:
    """The named model serves the request or the request is refused: another model never stands in silently."""
    route_capability = CAPABILITY_OF_ROUTE[request.route]
    if route_capability not in model.capabilities:
        raise DomainError("invalid_request", f"The model `{name}` does not support {route_capability}", "model")
    unfit = _unfit(model, request)
    if unfit is None:
        return
    why, param = unfit
    missing = sorted(request.needs - model.capabilities)
    if missing:
        message = f"The model `{name}` does not support {', '.join(missing)}, which this request uses"
    else:
        message = (
            f"This request needs {request.prompt_tokens + (request.max_tokens or 0)} tokens (about "
            f"{request.prompt_tokens} of input plus max_tokens {request.max_tokens or 0}), but the model "
            f"`{name}` has a context window of {model.context_window} tokens"
        )
    raise DomainError("invalid_request", f"{message} ({why}); name a model that can, or omit model", param)


def select(catalog: Catalog, request: Request, default_level: str, health: HealthView) -> Decision:
    level = request.power_level or default_level
    policy = catalog.policies[level]
    # (model, why it is a candidate), best first before health
    chain: list[tuple[Model, str]]
    named: Model | None = None
    if request.model is not None:
        named = catalog.resolve(request.model)
        if named is None or not named.enabled:
            raise DomainError("model_not_found", f"The model `{request.model}` does not exist", "model")
        _refuse_named(request.model, named, request)
        chain = [(named, "requested")]
        reason = f"{level}: requested model {named.id}"
        if level != "CUSTOM":
            chain += [(m, f"declared fallback of {named.id}") for m in catalog.fallback_chain(named)]
            # Token ids and vector sizes mean something for one model's weights only: no ranked model stands in.
            if request.power_level is not None and not request.needs & PINNED:
                ranked, _ = rank(catalog, level, request.needs, health)
                chain += [(m, f"power level {level}") for m in ranked]
    else:
        if level == "CUSTOM":
            raise DomainError("invalid_request", "power level CUSTOM needs a model", "model")
        ranked, reason = rank(catalog, level, request.needs, health)
        chain = [(m, "chosen" if i == 0 else "fallback") for i, m in enumerate(ranked)]

    skipped: dict[str, str] = {}
    fit: list[tuple[Model, str]] = []
    seen: set[str] = set()
    for model, why in chain:
        if model.id in seen:
            continue
        seen.add(model.id)
        unfit = _unfit(model, request)
        if unfit is not None:
            skipped[model.id] = unfit[0]
        else:
            fit.append((model, why))
    if not fit:
        raise DomainError(
            "invalid_request",
            "no model in the catalog can serve this request (needs " + ", ".join(sorted(request.needs)) + ")",
            "model",
        )
    # An admin's maintenance is absolute: a provider forced down is never tried, not even as the least-bad.
    held = [(m, why) for m, why in fit if health.forced(m.provider.name) == "down"]
    for m, _ in held:
        skipped[m.id] = f"provider {m.provider.name} is down for maintenance"
    fit = [c for c in fit if c not in held]
    if not fit:
        first = held[0][0].provider
        raise DomainError(
            "provider_unavailable",
            f"{first.name} is down for maintenance and no other model may serve this request (see GET /v1/providers)",
        )

    live = [(m, why) for m, why in fit if health.state(m.provider.name) != "down"]
    if live:
        for m, _ in fit:
            if health.state(m.provider.name) == "down":
                skipped[m.id] = f"provider {m.provider.name} is down"
        if named is not None and live[0][0] is named:
            # The named model keeps its place whatever its provider's state short of down.
            ordered = [live[0], *sorted(live[1:], key=lambda c: RANK[health.state(c[0].provider.name)])]
        else:
            ordered = sorted(live, key=lambda c: RANK[health.state(c[0].provider.name)])
    else:
        ordered = sorted(fit, key=lambda c: health.badness(c[0].provider.name))
        reason += "; every candidate's provider is down, trying the least-bad"
    if named is not None and ordered[0][0] is not named and named.id in skipped:
        reason += f"; {named.id} left out: {skipped[named.id]}"
    candidates = [
        Choice(
            model=m,
            score=score(policy, m) if policy.strategy != "exact" else float(m.quality),
            reason=why,
            health=health.state(m.provider.name),
            estimated_cost_micro=worst_case_micro(m, request),
        )
        for m, why in ordered
    ]
    return Decision(level, reason, candidates, skipped, named.id if named is not None else None)
