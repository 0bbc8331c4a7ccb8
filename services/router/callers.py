"""Whom a completion is for: the user the gateway names, or the owner of the tg- key the call carries itself.

The gateway authenticated its users and is believed about them. A caller of the native gRPC API presents
its own tg- key (checked by the guard through keyvault): every caller field of its request is replaced by
that key's owner, so a user can never speak for another; its request id is made here, because ledger keys
derive from it; and the key's rate limits apply as they do at the HTTP edge.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from services.router.catalog import Catalog
from services.router.pipeline import Caller
from services.runtime import identity
from services.runtime.channels import Deadline
from services.runtime.errors import DomainError
from services.runtime.logging import request_id
from services.runtime.ratelimit import Admission, Limiter
from tollgate.router.v1 import router_pb2


@dataclass
class Callers:
    limiter: Limiter
    default_timeout: float

    async def admit(self, req: router_pb2.CompletionRequest, context: Any) -> tuple[Caller, Admission | None]:
        """The caller of this completion, counted against its key's limits when it came with its own key."""
        peer = identity.current()
        user = peer.user if peer is not None else None
        admission = None
        allowed, team_allowed = allow_lists(req)
        if user is None:
            rid, user_id, key_id = req.request_id, req.caller.user_id, req.caller.key_id
            team_id, team_pays = req.caller.team_id, req.caller.team_pays
        else:
            if user.policy.max_parallel or user.team_policy.max_parallel:
                # The cap's leases live at the HTTP edge: a capped key calls there, so the cap always holds.
                raise DomainError(
                    "permission_denied",
                    "This API key has a cap on parallel requests (max_parallel), kept by the HTTP API only: "
                    "call the gateway over HTTP with it",
                )
            rid, user_id, key_id = f"grpc-{uuid.uuid4().hex}", user.user_id, user.key_id
            team_id, team_pays = user.team_id, user.team_pays
            admission = await self.limiter.admit(user)
        request_id.set(rid)
        caller = Caller(
            request_id=rid,
            user_id=user_id,
            key_id=key_id,
            deadline=Deadline.of(context, self.default_timeout),
            inline_provider=req.inline_key.provider,
            inline_key=req.inline_key.api_key,
            team_id=team_id,
            team_pays=team_pays,
            allowed_models=allowed,
            team_allowed_models=team_allowed,
        )
        return caller, admission

    async def admit_model(self, name: str | None, catalog: Catalog) -> Admission | None:
        """For a caller with its own key: count the request in the windows of the model it names (its key's and
        its team's `model_limits`, the catalog's rpm/tpm), as the HTTP edge does for its callers."""
        peer = identity.current()
        user = peer.user if peer is not None else None
        model = catalog.resolve(name) if user is not None and name else None
        if user is None or model is None:
            return None
        return await self.limiter.admit_model(user, model.id, model.rpm, model.tpm, model.aliases)

    async def spend(self, admission: Admission | None, outcome: router_pb2.Outcome) -> None:
        """Count a finished completion's tokens against the key's token windows."""
        await self.limiter.spend(admission, outcome.prompt_tokens + outcome.completion_tokens)


def allow_lists(req: router_pb2.CompletionRequest) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The key's and its team's model allow-lists: the gateway's word for its users; for a caller with its own
    key, that key's policy in keyvault, never what its request says about itself."""
    peer = identity.current()
    user = peer.user if peer is not None else None
    if user is None:
        return tuple(req.caller.allowed_models), tuple(req.caller.team_allowed_models)
    return tuple(user.policy.models), tuple(user.team_policy.models)
