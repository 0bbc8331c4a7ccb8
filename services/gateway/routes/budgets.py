"""Budgets over HTTP: `GET/POST /v1/budgets`, `DELETE /v1/budgets/{budget_id}`.

Who reaches which budgets: an admin key every budget; a team admin (its key's user is an admin of a team)
the budgets of its team and of its members and their keys, except that a budget set by someone outside the team
(an operator's cap) stays read-only to it; any other user may list the budgets that apply to its own requests
(its user, the key it calls with, its team) and never set or delete one. A budget outside the
caller's reach reads as not found, so ids of other teams' budgets reveal nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.gateway.edge import (
    Edge,
    edge,
    is_admin,
    is_team_admin,
    json_response,
    read_json,
    require_admin,
    team_members,
)
from services.gateway.openapi import extend, operation, path_param, query
from services.gateway.routes.credits import credits
from services.runtime.errors import DomainError
from tollgate.credits.v1 import credits_pb2
from tollgate.keyvault.v1 import keyvault_pb2

MICRO = 1_000_000
_MOST_MICRO = 2**63 - 1
_MOST_ALERTS = 10


@dataclass
class Reach:
    """The budgets a caller may see (and, when `manage`, set and delete); `everything` for admins."""

    everything: bool = False
    manage: bool = False
    team_id: str = ""
    users: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)

    def covers(self, scope: str, scope_id: str) -> bool:
        if self.everything:
            return True
        if scope == "team":
            return bool(self.team_id) and scope_id == self.team_id
        if scope == "user":
            return scope_id in self.users
        if scope == "key":
            return scope_id in self.keys
        return False


async def _keys_of(gateway: Edge, user_id: str) -> set[str]:
    reply: keyvault_pb2.ListApiKeysReply = await gateway.call(
        gateway.clients.keyvault.ListApiKeys, keyvault_pb2.ListApiKeysRequest(user_id=user_id), "keyvault"
    )
    return {k.key_id for k in reply.keys if k.user_id == user_id}


async def team_reach(gateway: Edge, principal: keyvault_pb2.Principal) -> Reach:
    """A team admin's reach: the team, its members (keyvault's `GetTeam`) and each member's keys."""
    team_id = principal.team_id
    users = await team_members(gateway, principal, team_id)
    keys: set[str] = set()
    for user in sorted(users):
        keys |= await _keys_of(gateway, user)
    return Reach(manage=True, team_id=team_id, users=users, keys=keys)


async def reach_of(gateway: Edge, principal: keyvault_pb2.Principal) -> Reach:
    """What this caller reaches: asked of keyvault (the team's members and their keys) at each call."""
    if is_admin(principal):
        require_admin(principal)
        return Reach(everything=True, manage=True)
    if is_team_admin(principal):
        return await team_reach(gateway, principal)
    # Anyone else: the budgets its own requests count against (its user, the key it calls with, its team).
    return Reach(team_id=principal.team_id, users={principal.user_id}, keys={principal.key_id} - {""})


def budget_json(b: credits_pb2.Budget) -> dict[str, Any]:
    return {
        "object": "budget",
        "id": b.budget_id,
        "scope": b.scope,
        "scope_id": b.scope_id,
        "period": b.period,
        "timezone": b.timezone,
        "limit": credits(b.limit_micro),
        "limit_micro": b.limit_micro,
        "soft_limit": credits(b.soft_limit_micro),
        "soft_limit_micro": b.soft_limit_micro,
        "alert_percents": list(b.alert_percents),
        "spent": credits(b.spent_micro),
        "spent_micro": b.spent_micro,
        "reserved": credits(b.reserved_micro),
        "reserved_micro": b.reserved_micro,
        "period_start": b.period_start_unix_ms // 1000,
        "resets_at": b.resets_unix_ms // 1000,
        "actor": b.actor,
    }


def _money(payload: dict[str, Any], name: str) -> int:
    """`<name>_micro` (an integer) or `<name>` (credits, a number or decimal string); absent: 0."""
    if f"{name}_micro" in payload:
        value = payload[f"{name}_micro"]
        if not isinstance(value, int) or isinstance(value, bool) or abs(value) > _MOST_MICRO:
            raise DomainError("invalid_request", f"'{name}_micro' must be an integer (int64)", name)
        return value
    value = payload.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DomainError("invalid_request", f"'{name}' must be a number of credits", name)
    try:
        micro = Decimal(str(value)) * MICRO
    except InvalidOperation:
        raise DomainError("invalid_request", f"'{name}' must be a number of credits", name) from None
    if not micro.is_finite() or abs(micro) > _MOST_MICRO or micro != micro.to_integral_value():
        raise DomainError("invalid_request", f"'{name}' must be a finite number of whole micro-credits", name)
    return int(micro)


def _text(payload: dict[str, Any], name: str, default: str = "") -> str:
    value = payload.get(name, default)
    if not isinstance(value, str):
        raise DomainError("invalid_request", f"'{name}' must be a string", name)
    return value


def _percents(payload: dict[str, Any]) -> list[int]:
    value = payload.get("alert_percents", [])
    if (
        not isinstance(value, list)
        or len(value) > _MOST_ALERTS
        or any(not isinstance(p, int) or isinstance(p, bool) or not 1 <= p <= 1000 for p in value)
    ):
        raise DomainError(
            "invalid_request",
            f"'alert_percents' must be a list of at most {_MOST_ALERTS} integers from 1 to 1000",
            "alert_percents",
        )
    return value


def budget_request(payload: dict[str, Any], actor: str) -> credits_pb2.Budget:
    """The budget a POST body asks for, its types checked here and its meaning by credits."""
    return credits_pb2.Budget(
        budget_id=_text(payload, "id"),
        scope=_text(payload, "scope"),
        scope_id=_text(payload, "scope_id"),
        period=_text(payload, "period"),
        timezone=_text(payload, "timezone"),
        limit_micro=_money(payload, "limit"),
        soft_limit_micro=_money(payload, "soft_limit"),
        alert_percents=_percents(payload),
        actor=actor,
    )


async def list_budgets(request: Request) -> Response:
    gateway = edge(request)
    reach = await reach_of(gateway, await gateway.principal(request))
    scope, scope_id = request.query_params.get("scope", ""), request.query_params.get("scope_id", "")
    reply: credits_pb2.ListBudgetsReply = await gateway.call(
        gateway.clients.credits.ListBudgets,
        credits_pb2.ListBudgetsRequest(scope=scope, scope_id=scope_id),
        "credits",
    )
    data = [budget_json(b) for b in reply.budgets if reach.covers(b.scope, b.scope_id)]
    return json_response({"object": "list", "data": data})


async def set_budget(request: Request) -> Response:
    gateway = edge(request)
    principal = await gateway.principal(request)
    reach = await reach_of(gateway, principal)
    if not reach.manage:
        raise DomainError("permission_denied", "Setting a budget needs an admin key or a team admin's key")
    _body, payload = await read_json(request)
    wanted = budget_request(payload, principal.user_id)
    if wanted.scope in ("key", "user", "team") and not reach.covers(wanted.scope, wanted.scope_id):
        raise DomainError(
            "permission_denied", "A team admin sets budgets of its own team, members and their keys only", "scope_id"
        )
    if wanted.budget_id:
        _held_by_operator(reach, await _reachable(gateway, reach, wanted.budget_id))
    elif not reach.everything:
        same: credits_pb2.ListBudgetsReply = await gateway.call(
            gateway.clients.credits.ListBudgets,
            credits_pb2.ListBudgetsRequest(scope=wanted.scope, scope_id=wanted.scope_id),
            "credits",
        )
        for existing in same.budgets:
            if existing.period == wanted.period and existing.scope_id == wanted.scope_id:
                _held_by_operator(reach, existing)
    reply: credits_pb2.Budget = await gateway.call(gateway.clients.credits.SetBudget, wanted, "credits")
    return json_response(budget_json(reply), 201)


async def _reachable(gateway: Edge, reach: Reach, budget_id: str) -> credits_pb2.Budget:
    """The budget when the caller reaches it; not found otherwise (another team's id reveals nothing)."""
    found: credits_pb2.ListBudgetsReply = await gateway.call(
        gateway.clients.credits.ListBudgets, credits_pb2.ListBudgetsRequest(budget_id=budget_id), "credits"
    )
    mine = [b for b in found.budgets if b.budget_id == budget_id and reach.covers(b.scope, b.scope_id)]
    if not mine:
        raise DomainError("not_found", f"No budget {budget_id[:60]!r}", "budget_id")
    return mine[0]


def _held_by_operator(reach: Reach, budget: credits_pb2.Budget) -> None:
    """A budget set by someone outside the team (an operator's cap) is not the team admin's to lift."""
    if not reach.everything and budget.actor not in reach.users:
        raise DomainError(
            "permission_denied",
            f"Budget {budget.budget_id} was set by an admin outside the team; only an admin may change it",
            "budget_id",
        )


async def delete_budget(request: Request) -> Response:
    gateway = edge(request)
    principal = await gateway.principal(request)
    reach = await reach_of(gateway, principal)
    if not reach.manage:
        raise DomainError("permission_denied", "Deleting a budget needs an admin key or a team admin's key")
    budget_id = request.path_params["budget_id"]
    _held_by_operator(reach, await _reachable(gateway, reach, budget_id))
    reply: credits_pb2.DeleteBudgetReply = await gateway.call(
        gateway.clients.credits.DeleteBudget,
        credits_pb2.DeleteBudgetRequest(budget_id=budget_id, actor=principal.user_id),
        "credits",
    )
    return json_response({"object": "budget.deleted", "id": budget_id, "deleted": reply.deleted})


extend(
    "/v1/budgets",
    False,
    {
        "get": operation(
            "Budgets you reach: every one (admin), your team's (team admin), those that apply to you (user)",
            params=[query("scope", "key | user | team"), query("scope_id", "the key, user or team id")],
        ),
        "post": operation(
            "Create or replace the budget of (scope, scope_id, period) (admin, or a team admin for its team); "
            "body {scope, scope_id, period, timezone, limit?, soft_limit?, alert_percents?}",
            body="Object",
        ),
    },
)
extend(
    "/v1/budgets/{budget_id}",
    False,
    {"delete": operation("Delete a budget (admin, or a team admin for its team)", params=[path_param("budget_id")])},
)

ROUTES = [
    Route("/v1/budgets", list_budgets, methods=["GET"]),
    Route("/v1/budgets", set_budget, methods=["POST"]),
    Route("/v1/budgets/{budget_id}", delete_budget, methods=["DELETE"]),
]
