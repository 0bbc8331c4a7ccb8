"""Which models may serve a request, in which order: power levels, capability filters, health and latency.

A named model is a promise: it is tried first unless its provider is down, and a request it cannot serve
(a capability it lacks, a context window too small) is refused naming why, never handed to another model.
Another model answers only through the named model's declared fallbacks (its own, else its tier's) or, when
the request itself sets a power level, that level's ranking; CUSTOM pins the named model alone. Without a
named model the power level ranks the capable models: ECO the cheapest (free first), BALANCED the best
quality per cost, PRECISION the highest quality; equally suitable models go fastest first by health's
measured latency. Models whose provider is down are left out unless every candidate is down; then the
least-bad goes first rather than none. A model with several deployments is as healthy as its best provider.
The caller's allow-lists (`model_access.py`) and the request's provider preferences (`preferences.py`) only
narrow this: a named model outside the lists is refused, and nothing outside them is ever a candidate.
Which deployment of a candidate answers is `deployments.py`'s choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from services.router.catalog import Catalog, Model, Policy
from services.router.health_view import RANK, HealthView
from services.router.model_access import ModelAccess
from services.router.preferences import Preferences
from services.router.pricing import worst_case_micro
from services.router.request import CAPABILITY_OF_ROUTE, Request
from services.runtime.errors import DomainError

# Why a named model is refused, by the capability it lacks: the request field that needs it.
_PARAM_OF_CAPABILITY = {"tools": "tools", "json": "response_format", "vision": "messages"}
_NOT_ALLOWED = "not allowed for this key"
_NO_DEPLOYMENT = "no deployment on a provider the request's provider preferences allow"
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
        return next((c.reason for c in self.candidates if c.model.id == model.id), "")


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
    catalog: Catalog,
    level: str,
    needs: frozenset[str],
    health: HealthView | None = None,
    access: ModelAccess | None = None,
) -> tuple[list[Model], str]:
    """The catalog's models for an automatic choice at `level`, best first, with the reason.

    Models the level cannot tell apart (the same score and price) go fastest first by the latency health
    measured on their provider; one never measured counts as fastest, so it gets measured.
    """
    policy = catalog.policies[level]
    enabled = [
        m
        for m in catalog.models.values()
        if m.enabled and needs <= m.capabilities and (access is None or access.allows(m))
    ]
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
        if health is None:
            return 0.0
        return min(health.latency(p) for p in m.providers)

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


def _providers(model: Model, prefs: Preferences | None) -> list[str]:
    """The providers the model may be called on for this request."""
    return [p for p in model.providers if prefs is None or prefs.permits(p)]


def _state(health: HealthView, model: Model, prefs: Preferences | None) -> str:
    """A model is as healthy as the best provider it may run on."""
    return min((health.state(p) for p in _providers(model, prefs)), key=lambda s: RANK[s], default="down")


def _badness(health: HealthView, model: Model, prefs: Preferences | None) -> tuple[int, int]:
    return min((health.badness(p) for p in _providers(model, prefs)), default=(RANK["down"], 0))


def _held(health: HealthView, model: Model, prefs: Preferences | None) -> bool:
    return all(health.forced(p) == "down" for p in _providers(model, prefs))


def select(
    catalog: Catalog,
    request: Request,
    default_level: str,
    health: HealthView,
    access: ModelAccess | None = None,
) -> Decision:
    level = request.power_level or default_level
    policy = catalog.policies[level]
    prefs = request.provider
    if prefs is not None:
        prefs.check(catalog)
    access = access if access is not None else ModelAccess()
    # (model, why it is a candidate), best first before health
    chain: list[tuple[Model, str]]
    named: Model | None = None
    if request.model is not None:
        named = catalog.resolve(request.model)
        if named is None or not named.enabled:
            raise DomainError("model_not_found", f"The model `{request.model}` does not exist", "model")
        access.require(request.model, named)
        if not _providers(named, prefs):
            raise DomainError(
                "invalid_request",
                f"The model `{request.model}` runs on no provider that provider.only and provider.ignore allow",
                "provider",
            )
        _refuse_named(request.model, named, request)
        chain = [(named, "requested")]
        reason = f"{level}: requested model {named.id}"
        if level != "CUSTOM":
            chain += [(m, f"declared fallback of {named.id}") for m in catalog.fallback_chain(named)]
            # Token ids and vector sizes mean something for one model's weights only: no ranked model stands in.
            if request.power_level is not None and not request.needs & PINNED:
                ranked, _ = rank(catalog, level, request.needs, health, access)
                chain += [(m, f"power level {level}") for m in ranked]
    else:
        if level == "CUSTOM":
            raise DomainError("invalid_request", "power level CUSTOM needs a model", "model")
        ranked, reason = rank(catalog, level, request.needs, health, access)
        chain = [(m, "chosen" if i == 0 else "fallback") for i, m in enumerate(ranked)]

    skipped: dict[str, str] = {}
    fit: list[tuple[Model, str]] = []
    seen: set[str] = set()
    for model, why in chain:
        if model.id in seen:
            continue
        seen.add(model.id)
        unfit = _unfit(model, request)
        if not access.allows(model):
            skipped[model.id] = _NOT_ALLOWED
        elif not _providers(model, prefs):
            skipped[model.id] = _NO_DEPLOYMENT
        elif unfit is not None:
            skipped[model.id] = unfit[0]
        else:
            fit.append((model, why))
    if not fit:
        reasons = set(skipped.values())
        if reasons == {_NO_DEPLOYMENT}:
            raise DomainError(
                "invalid_request",
                "no model runs on a provider that provider.only and provider.ignore allow",
                "provider",
            )
        if not access.unrestricted and reasons <= {_NOT_ALLOWED, _NO_DEPLOYMENT}:
            raise DomainError("model_not_allowed", "no model this key may use can serve this request", "model")
        raise DomainError(
            "invalid_request",
            "no model in the catalog can serve this request (needs " + ", ".join(sorted(request.needs)) + ")",
            "model",
        )
    # An admin's maintenance is absolute: a provider forced down is never tried, not even as the least-bad.
    held = [(m, why) for m, why in fit if _held(health, m, prefs)]
    for m, _ in held:
        skipped[m.id] = f"provider {m.provider.name} is down for maintenance"
    fit = [c for c in fit if c not in held]
    if not fit:
        first = held[0][0].provider
        raise DomainError(
            "provider_unavailable",
            f"{first.name} is down for maintenance and no other model may serve this request (see GET /v1/providers)",
        )

    live = [(m, why) for m, why in fit if _state(health, m, prefs) != "down"]
    if live:
        for m, _ in fit:
            if _state(health, m, prefs) == "down":
                skipped[m.id] = f"provider {m.provider.name} is down"
        ordered = sorted(live, key=lambda c: _preferred(health, c[0], prefs))
        if named is not None and live[0][0] is named:
            # The named model keeps its place whatever its provider's state short of down.
            ordered = [live[0], *[c for c in ordered if c[0] is not named]]
    else:
        ordered = sorted(fit, key=lambda c: _badness(health, c[0], prefs))
        reason += "; every candidate's provider is down, trying the least-bad"
    if named is not None and ordered[0][0] is not named and named.id in skipped:
        reason += f"; {named.id} left out: {skipped[named.id]}"
    candidates = [
        Choice(
            model=m,
            score=score(policy, m) if policy.strategy != "exact" else float(m.quality),
            reason=why,
            health=_state(health, m, prefs),
            estimated_cost_micro=worst_case_micro(m, request),
        )
        for m, why in ordered
    ]
    return Decision(level, reason, candidates, skipped, named.id if named is not None else None)


def _preferred(health: HealthView, model: Model, prefs: Preferences | None) -> tuple[float, ...]:
    """Sort key of live candidates: health first, then what the provider preferences ask for (stable)."""
    state = float(RANK[_state(health, model, prefs)])
    if prefs is None:
        return (state,)
    order = float(min(prefs.rank(p) for p in _providers(model, prefs)))
    if prefs.sort == "price":
        return (state, order, float(model.blended_micro_per_1k))
    if prefs.sort in ("latency", "throughput"):
        return (state, order, min(health.latency(p) for p in _providers(model, prefs)))
    return (state, order)
