"""Credits and usage over HTTP: balance, admin grants, the transaction journal, the usage log and summaries.

A user sees only their own account; an admin key may name another user with `?user=` (and, on the usage
routes, every user with `?user=*`). A team's pool (account "team:<team_id>") is read with `?team=` by
admins and by that team's members, and granted to by admins (`team_id` instead of `user_id`). Amounts are
shown in credits (decimal strings, exact) and in integer micro-credits. The usage routes filter by `model`,
`key`, `end_user` and `tag.<name>`; the summary groups by day, model, provider, user, key, end_user or
`tag:<name>`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.gateway.edge import (
    Edge,
    aliased,
    edge,
    is_admin,
    is_team_admin,
    json_response,
    read_json,
    require_admin,
    target_user,
    team_members,
)
from services.gateway.openapi import extend, operation, query
from services.runtime import attribution
from services.runtime.errors import DomainError
from services.runtime.logging import request_id
from tollgate.credits.v1 import credits_pb2
from tollgate.keyvault.v1 import keyvault_pb2

MICRO = 1_000_000


def credits(micro: int) -> str:
    return str((Decimal(micro) / MICRO).quantize(Decimal("0.000001")))


def balance_json(b: credits_pb2.Balance) -> dict[str, Any]:
    return {
        "object": "credits.balance",
        "user_id": b.user_id,
        "balance": credits(b.balance_micro),
        "reserved": credits(b.reserved_micro),
        "available": credits(b.available_micro),
        "overdraft": credits(b.overdraft_micro),
        "low": b.low,
        "low_threshold": credits(b.low_threshold_micro),
        "tier": b.tier,
        "balance_micro": b.balance_micro,
        "reserved_micro": b.reserved_micro,
        "available_micro": b.available_micro,
        "credits_remaining": credits(b.available_micro),  # the seeds' name
    }


def _digits(raw: str, most: int = 18) -> bool:
    """ASCII digits only (`str.isdigit` also admits '²' and other digits `int` refuses), few enough for int64."""
    return raw.isascii() and raw.isdigit() and len(raw) <= most


def _int(request: Request, name: str, default: int, low: int = 0, high: int = 1000) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not _digits(raw) or not low <= int(raw) <= high:
        raise DomainError("invalid_request", f"'{name}' must be an integer from {low} to {high}", name)
    return int(raw)


def _cursor(request: Request) -> str:
    """`?before=`: the `next_before` of a previous page."""
    raw = request.query_params.get("before", "")
    if raw and not _digits(raw):
        raise DomainError("invalid_request", "'before' must be a cursor returned by a previous page", "before")
    return raw


def _time_ms(request: Request, name: str) -> int:
    """`?since=` / `?until=`: unix seconds or an ISO 8601 date or time (UTC when no zone)."""
    raw = request.query_params.get(name, "")
    if not raw:
        return 0
    if _digits(raw, most=12):
        return int(raw) * 1000
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise DomainError("invalid_request", f"'{name}' must be unix seconds or an ISO 8601 date", name) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


_MOST_MICRO = 2**63 - 1  # the ledger's int64


def _amount_micro(payload: dict[str, Any]) -> int:
    if "amount_micro" in payload:
        value = payload["amount_micro"]
        if not isinstance(value, int) or isinstance(value, bool) or abs(value) > _MOST_MICRO:
            raise DomainError("invalid_request", "'amount_micro' must be an integer (int64)", "amount_micro")
        return value
    value = payload.get("amount", payload.get("credits"))
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DomainError("invalid_request", "'amount' (credits) is required", "amount")
    try:
        micro = Decimal(str(value)) * MICRO
    except InvalidOperation:
        raise DomainError("invalid_request", "'amount' must be a number of credits", "amount") from None
    if not micro.is_finite() or abs(micro) > _MOST_MICRO:
        raise DomainError("invalid_request", "'amount' must be a finite number of credits", "amount")
    if micro != micro.to_integral_value():
        raise DomainError("invalid_request", "'amount' is finer than one micro-credit", "amount")
    return int(micro)


TEAM_ACCOUNT = "team:"


def _account(request: Request, principal: keyvault_pb2.Principal) -> str:
    """Whose balance: the caller's, another user's (admin, `?user=`) or a team pool's (`?team=`)."""
    team = request.query_params.get("team")
    if team is None:
        return target_user(request, principal)
    if not team or len(team) > 190:
        raise DomainError("invalid_request", "'team' must be a team id", "team")
    if team != principal.team_id:
        # Not the caller's team: admins only; anyone else learns nothing about that team.
        if "admin" not in principal.scopes:
            raise DomainError("not_found", f"No team {team[:60]!r} of yours", "team")
        require_admin(principal)
    return TEAM_ACCOUNT + team


async def balance(request: Request) -> Response:
    gateway = edge(request)
    user = _account(request, await gateway.principal(request))
    reply: credits_pb2.Balance = await gateway.call(
        gateway.clients.credits.GetBalance, credits_pb2.GetBalanceRequest(user_id=user), "credits"
    )
    return json_response(balance_json(reply))


async def grant(request: Request) -> Response:
    gateway = edge(request)
    principal = await gateway.principal(request)
    require_admin(principal)
    _body, payload = await read_json(request)
    team = payload.get("team_id")
    user: Any
    if team is not None:
        if not isinstance(team, str) or not team or len(team) > 190 or payload.get("user_id"):
            raise DomainError("invalid_request", "'team_id' must be a team id (and no user_id with it)", "team_id")
        user = TEAM_ACCOUNT + team
    else:
        user = payload.get("user_id") or payload.get("user")
    if not isinstance(user, str) or not user:
        raise DomainError("invalid_request", "'user_id' (or 'team_id') is required", "user_id")
    key = request.headers.get("idempotency-key") or payload.get("idempotency_key") or f"http:{request_id.get()}"
    if not isinstance(key, str):
        raise DomainError("invalid_request", "'idempotency_key' must be a string", "idempotency_key")
    kind, reason = payload.get("kind", "top-up"), payload.get("reason", "")
    if not isinstance(kind, str) or not isinstance(reason, str):
        raise DomainError("invalid_request", "'kind' and 'reason' must be strings", "kind")
    reply: credits_pb2.GrantReply = await gateway.call(
        gateway.clients.credits.Grant,
        credits_pb2.GrantRequest(
            user_id=user,
            amount_micro=_amount_micro(payload),
            idempotency_key=key,
            kind=kind,
            reason=reason,
            actor=principal.user_id,
        ),
        "credits",
    )
    return json_response({"transaction_id": reply.transaction_id, **balance_json(reply.balance)}, 201)


async def transactions(request: Request) -> Response:
    gateway = edge(request)
    user = target_user(request, await gateway.principal(request))
    reply: credits_pb2.ListTransactionsReply = await gateway.call(
        gateway.clients.credits.ListTransactions,
        credits_pb2.ListTransactionsRequest(
            user_id=user, limit=_int(request, "limit", 50, 1, 500), before_id=_cursor(request)
        ),
        "credits",
    )
    data = [
        {
            "id": t.id,
            "object": "credits.transaction",
            "kind": t.kind,
            "amount": credits(t.amount_micro),
            "amount_micro": t.amount_micro,
            "overdraft": credits(t.overdraft_micro),
            "request_id": t.request_id,
            "hold_id": t.hold_id,
            "reason": t.reason,
            "created_at": t.created_unix_ms // 1000,
        }
        for t in reply.transactions
    ]
    return json_response(
        {
            "object": "list",
            "data": data,
            "has_more": bool(reply.next_before_id),
            "next_before": reply.next_before_id or None,
        }
    )


_TAG_PREFIX = "tag."


async def _usage_of(gateway: Edge, request: Request, principal: keyvault_pb2.Principal) -> tuple[str, list[str]]:
    """Whose usage, as (user, members): the caller's own; another user's (`?user=`: an admin, or a team's admin
    for one of its members); a team's members' (`?team=`: an admin, or that team's admin); everyone's (an admin,
    `?user=*`). A team's members come back as `members` with user ''; a team with none has `[""]`, no row's user.
    """
    named, team = request.query_params.get("user"), request.query_params.get("team")
    if team is not None:
        if named is not None:
            raise DomainError("invalid_request", "Name a user or a team, not both", "team")
        if not team or len(team) > 190:
            raise DomainError("invalid_request", "'team' must be a team id", "team")
        return "", sorted(await team_members(gateway, principal, team)) or [""]
    if named == "*":
        require_admin(principal)
        return "", []
    if named and named != principal.user_id and not is_admin(principal) and is_team_admin(principal):
        if named not in await team_members(gateway, principal, principal.team_id):
            raise DomainError("not_found", f"No member {named[:60]!r} of your team", "user")
        return named, []
    return target_user(request, principal), []


def _usage_filter(request: Request, members: list[str]) -> credits_pb2.UsageFilter:
    """`?model=`, `?key=`, `?end_user=` and `?tag.<name>=<value>` (each at most once; all must match)."""
    query = request.query_params
    for name in {k for k in query if k in ("model", "key", "end_user") or k.startswith(_TAG_PREFIX)}:
        if len(query.getlist(name)) > 1:
            raise DomainError("invalid_request", f"'{name}' may be given once", name)
    tags = {k[len(_TAG_PREFIX) :]: v for k, v in query.items() if k.startswith(_TAG_PREFIX)}
    for name in ("model", "key", "end_user"):
        if len(query.get(name, "")) > attribution.MAX_END_USER:
            raise DomainError(
                "invalid_request", f"'{name}' must be at most {attribution.MAX_END_USER} characters", name
            )
    return credits_pb2.UsageFilter(
        model=query.get("model", ""),
        api_key_id=query.get("key", ""),
        end_user=query.get("end_user", ""),
        tags=attribution.tags(tags, "tag"),
        user_ids=members,
    )


def _parts(message: credits_pb2.UsageRecord | credits_pb2.UsageGroup) -> dict[str, int]:
    return {
        "cache_read_tokens": message.cache_read_tokens,
        "cache_write_tokens": message.cache_write_tokens,
        "reasoning_tokens": message.reasoning_tokens,
    }


async def usage(request: Request) -> Response:
    gateway = edge(request)
    user, members = await _usage_of(gateway, request, await gateway.principal(request))
    reply: credits_pb2.ListUsageReply = await gateway.call(
        gateway.clients.credits.ListUsage,
        credits_pb2.ListUsageRequest(
            user_id=user,
            since_unix_ms=_time_ms(request, "since"),
            until_unix_ms=_time_ms(request, "until"),
            limit=_int(request, "limit", 100, 1, 1000),
            before_id=_cursor(request),
            filter=_usage_filter(request, members),
        ),
        "credits",
    )
    data = [
        {
            "object": "usage.record",
            "request_id": r.usage.request_id,
            "model": r.usage.model,
            "provider": r.usage.provider,
            "power_level": r.usage.power_level,
            "route": r.usage.route,
            "status": r.usage.status,
            "prompt_tokens": r.usage.prompt_tokens,
            "completion_tokens": r.usage.completion_tokens,
            **_parts(r.usage),
            "cost": credits(r.usage.cost_micro),
            "cost_micro": r.usage.cost_micro,
            "latency_ms": round(r.usage.latency_ms, 1),
            "byok": r.usage.byok,
            "cache_hit": r.usage.cache_hit,
            "fallback_count": r.usage.fallback_count,
            "user_id": r.usage.user_id,
            "key_id": r.usage.api_key_id,
            "end_user": r.usage.end_user,
            "tags": dict(r.usage.tags),
            "created_at": r.created_unix_ms // 1000,
        }
        for r in reply.rows
    ]
    return json_response(
        {
            "object": "list",
            "data": data,
            "has_more": bool(reply.next_before_id),
            "next_before": reply.next_before_id or None,
        }
    )


async def usage_summary(request: Request) -> Response:
    gateway = edge(request)
    user, members = await _usage_of(gateway, request, await gateway.principal(request))
    group_by = request.query_params.get("group_by", "day")
    reply: credits_pb2.UsageSummaryReply = await gateway.call(
        gateway.clients.credits.UsageSummary,
        credits_pb2.UsageSummaryRequest(
            user_id=user,
            group_by=group_by,
            since_unix_ms=_time_ms(request, "since"),
            until_unix_ms=_time_ms(request, "until"),
            filter=_usage_filter(request, members),
        ),
        "credits",
    )
    data = [
        {
            "key": g.key,
            "requests": g.requests,
            "prompt_tokens": g.prompt_tokens,
            "completion_tokens": g.completion_tokens,
            **_parts(g),
            "cost": credits(g.cost_micro),
            "cost_micro": g.cost_micro,
        }
        for g in reply.groups
    ]
    whose: dict[str, Any] = {"team": request.query_params["team"]} if members else {"user_id": user or "*"}
    return json_response({"object": "usage.summary", "group_by": group_by, **whose, "data": data})


_USER = query("user", "admin only: another user's account")
_USAGE_USER = query("user", "another user's usage (admin, or a team admin for a member), or * for every user's (admin)")
_USAGE_TEAM = query("team", "the usage of a team's members (admin, or that team's admin)")
_FILTERS = [
    query("model", "only this model (catalog id)"),
    query("key", "only this API key id"),
    query("end_user", "only this end user (the body's OpenAI `user`)"),
    query("tag.<name>", "only rows whose tag <name> has this value (metadata or X-Tollgate-Tags)"),
]
_PAGE = [_USER, query("limit", "rows, 1-500", "integer"), query("before", "cursor from the previous page")]
_SPAN = [query("since", "unix seconds or ISO 8601"), query("until", "unix seconds or ISO 8601")]
_TEAM = query("team", "a team's pool: admins, or members of that team")
_BALANCE = {"get": operation("Your balance, reserved and available credits, low flag", params=[_USER, _TEAM])}
_GRANT = {
    "post": operation(
        "Add credits to a user or a team's pool (admin); body {user_id | team_id, amount, kind?, reason?}",
        body="Object",
    )
}
extend("/v1/credits", False, _BALANCE)
extend("/api/v1/llm/credits/balance", False, _BALANCE)
extend("/v1/admin/credits", False, _GRANT)
extend("/api/v1/llm/credits/add", False, _GRANT)
extend("/v1/credits/transactions", True, {"get": operation("Your journal, newest first", params=_PAGE)})
extend(
    "/v1/usage",
    True,
    {
        "get": operation(
            "Your usage log, newest first", params=[_USAGE_USER, _USAGE_TEAM, *_PAGE[1:], *_SPAN, *_FILTERS]
        )
    },
)
extend(
    "/v1/usage/summary",
    True,
    {
        "get": operation(
            "Usage totals by day, model, provider, user, API key, end user or tag",
            params=[
                _USAGE_USER,
                _USAGE_TEAM,
                query("group_by", "day | model | provider | user | key | end_user | tag:<name>"),
                *_SPAN,
                *_FILTERS,
            ],
        )
    },
)

ROUTES = [
    Route("/v1/credits", balance, methods=["GET"]),
    Route("/api/v1/llm/credits/balance", balance, methods=["GET"]),
    Route("/v1/admin/credits", grant, methods=["POST"]),
    Route("/api/v1/llm/credits/add", grant, methods=["POST"]),
    *aliased("/credits/transactions", transactions, ["GET"]),
    *aliased("/usage", usage, ["GET"]),
    *aliased("/usage/summary", usage_summary, ["GET"]),
]
