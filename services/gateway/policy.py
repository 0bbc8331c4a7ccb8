"""What a key may use, applied at the edge: the router's `Caller` (built here, once, for every route), the
allow-lists of a key and its team for a model the request names, and that model's limits.

A named model outside either allow-list is refused with 403 `model_not_allowed` before any call; a model
the gateway does not know (an alias it cannot resolve, an automatic choice) is left to the router, which
holds its choices to the same lists (`Caller.allowed_models`). An allow-list entry is a catalog id, an
alias or `tier:<name>`. The model list is the router's, reused for `models_cache_ttl` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.gateway.limits import Admission, Slot
from services.runtime.errors import DomainError
from tollgate.keyvault.v1 import keyvault_pb2
from tollgate.router.v1 import router_pb2

if TYPE_CHECKING:
    from services.gateway.edge import Edge

_MODELS: dict[int, tuple[float, dict[str, router_pb2.Model]]] = {}


def caller(principal: keyvault_pb2.Principal) -> router_pb2.Caller:
    """Who the router serves: the key, its user and team, and the models both may use."""
    return router_pb2.Caller(
        user_id=principal.user_id,
        key_id=principal.key_id,
        scopes=principal.scopes,
        team_id=principal.team_id,
        team_pays=principal.team_pays,
        allowed_models=principal.policy.models,
        team_allowed_models=principal.team_policy.models,
    )


async def models(gateway: Edge) -> dict[str, router_pb2.Model]:
    """The catalog's models by id and by alias (ids win)."""
    now = time.monotonic()
    cached = _MODELS.get(id(gateway))
    if cached is not None and cached[0] > now:
        return cached[1]
    reply: router_pb2.ListModelsReply = await gateway.call(
        gateway.clients.router.ListModels, router_pb2.ListModelsRequest(), "router"
    )
    found: dict[str, router_pb2.Model] = {}
    for model in reply.models:
        for alias in model.aliases:
            found.setdefault(alias, model)
    found |= {m.id: m for m in reply.models}
    _MODELS[id(gateway)] = (now + gateway.settings.models_cache_ttl, found)
    return found


def permits(allowed: Sequence[str], model: router_pb2.Model) -> bool:
    """Whether an allow-list (empty: every model) admits `model`."""
    if not allowed:
        return True
    names = {model.id, *model.aliases, _tier(f"tier:{model.tier}")}
    return any(_tier(entry) in names for entry in allowed)


def _tier(entry: str) -> str:
    """A `tier:<name>` entry in one spelling (the router reads the prefix and the tier's name in any case)."""
    return "tier:" + entry[5:].upper() if entry[:5].lower() == "tier:" else entry


def unknown_models(names: Sequence[str], known: dict[str, router_pb2.Model]) -> str | None:
    """The first name of a policy that is no catalog id, alias or known tier."""
    tiers = {f"tier:{m.tier.upper()}" for m in known.values() if m.tier}
    return next((n for n in names if n not in known and _tier(n) not in tiers), None)


@dataclass
class Admitted:
    """What a completion holds from the edge's policies: its model windows and its parallel slot."""

    admission: Admission | None = None
    slot: Slot | None = None


async def admit(gateway: Edge, principal: keyvault_pb2.Principal, payload: dict[str, Any]) -> Admitted:
    """Refuse a named model outside the allow-lists (403), count it in its windows (429), take a slot (429)."""
    name = payload.get("model")
    restricted = bool(principal.policy.models or principal.team_policy.models)
    model: router_pb2.Model | None = None
    if isinstance(name, str) and name:
        try:
            model = (await models(gateway)).get(name)
        except DomainError:
            if restricted:
                raise
    admitted = Admitted()
    if model is not None:
        for allowed, whose in ((principal.policy.models, "this API key"), (principal.team_policy.models, "your team")):
            if not permits(allowed, model):
                raise DomainError("model_not_allowed", f"The model '{name}' is not allowed for {whose}", "model")
        admitted.admission = await gateway.limiter.admit_model(principal, model.id, model.rpm, model.tpm, model.aliases)
    admitted.slot = await gateway.parallel.acquire(principal)
    return admitted
