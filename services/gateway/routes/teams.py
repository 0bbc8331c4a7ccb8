"""Teams over HTTP: admins create, list, change and staff teams; a team's admins manage its members; members read
their team. keyvault owns teams and holds a team admin's calls to its team; the gateway names that team from
the caller's key (never from the request) and refuses the rest before calling. A change of membership or
policy reaches the caller's requests within the authentication cache's TTL (`TOLLGATE_AUTH_CACHE_TTL`).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.gateway.edge import edge, is_admin, json_response, read_body, read_json, require_admin
from services.gateway.openapi import extend, operation, path_param
from services.gateway.routes.keys import acting_team, policy_json, read_policy
from services.runtime.errors import DomainError
from tollgate.keyvault.v1 import keyvault_pb2


def team_json(team: keyvault_pb2.Team) -> dict[str, Any]:
    return {
        "id": team.team_id,
        "object": "team",
        "name": team.name,
        "pooled": team.pooled,
        "created_at": team.created_unix_ms // 1000,
        **policy_json(team.policy),
        "members": [member_json(m) for m in team.members],
    }


def member_json(member: keyvault_pb2.TeamMember) -> dict[str, Any]:
    return {
        "object": "team.member",
        "team_id": member.team_id,
        "user_id": member.user_id,
        "role": member.role,
        "added_at": member.added_unix_ms // 1000,
    }


def _string(payload: dict[str, Any], name: str, default: str = "") -> str:
    value = payload.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise DomainError("invalid_request", f"'{name}' must be a string", name)
    return value


def _bool(payload: dict[str, Any], name: str, default: bool) -> bool:
    value = payload.get(name, default)
    if not isinstance(value, bool):
        raise DomainError("invalid_request", f"'{name}' must be true or false", name)
    return value


async def _optional_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is `{}`."""
    body = await read_body(request)
    if not body.strip():
        return {}
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise DomainError("invalid_request", "The request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise DomainError("invalid_request", "The request body must be a JSON object")
    return payload


def _only(payload: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise DomainError("invalid_request", f"Unknown field '{unknown[0]}'", unknown[0])


_TEAM_FIELDS = {"name", "pooled", "models", "max_parallel", "model_limits"}


async def create_team(request: Request) -> Response:
    gateway = edge(request)
    principal = await gateway.principal(request)
    require_admin(principal)
    _body, payload = await read_json(request)
    _only(payload, _TEAM_FIELDS | {"id", "team_id"})
    message = keyvault_pb2.CreateTeamRequest(
        team_id=_string(payload, "team_id") or _string(payload, "id"),
        name=_string(payload, "name"),
        pooled=_bool(payload, "pooled", False),
        policy=await read_policy(gateway, payload),
        actor=principal.user_id,
    )
    team: keyvault_pb2.Team = await gateway.call(gateway.clients.keyvault.CreateTeam, message, "keyvault")
    return json_response(team_json(team), 201)


async def list_teams(request: Request) -> Response:
    """Admins see every team; anyone else the team of its key (or none)."""
    gateway = edge(request)
    principal = await gateway.principal(request)
    if is_admin(principal):
        require_admin(principal)
        reply: keyvault_pb2.ListTeamsReply = await gateway.call(
            gateway.clients.keyvault.ListTeams, keyvault_pb2.ListTeamsRequest(), "keyvault"
        )
        return json_response({"object": "list", "data": [team_json(t) for t in reply.teams]})
    if not principal.team_id:
        return json_response({"object": "list", "data": []})
    return json_response({"object": "list", "data": [team_json(await _team(request, principal.team_id))]})


async def _team(request: Request, team_id: str) -> keyvault_pb2.Team:
    gateway = edge(request)
    principal = await gateway.principal(request)
    acting_team(principal, team_id, admin=False)
    found: keyvault_pb2.Team = await gateway.call(
        gateway.clients.keyvault.GetTeam, keyvault_pb2.GetTeamRequest(team_id=team_id), "keyvault"
    )
    return found


async def get_team(request: Request) -> Response:
    return json_response(team_json(await _team(request, request.path_params["team_id"])))


async def update_team(request: Request) -> Response:
    """Change a team's name, pooling or policy (admin); fields left out keep their value."""
    gateway = edge(request)
    principal = await gateway.principal(request)
    require_admin(principal)
    _body, payload = await read_json(request)
    _only(payload, _TEAM_FIELDS)
    team_id = request.path_params["team_id"]
    current: keyvault_pb2.Team = await gateway.call(
        gateway.clients.keyvault.GetTeam, keyvault_pb2.GetTeamRequest(team_id=team_id), "keyvault"
    )
    message = keyvault_pb2.UpdateTeamRequest(
        team_id=team_id,
        name=_string(payload, "name", current.name) or current.name,
        pooled=_bool(payload, "pooled", current.pooled),
        policy=await read_policy(gateway, payload, current.policy),
        actor=principal.user_id,
    )
    team: keyvault_pb2.Team = await gateway.call(gateway.clients.keyvault.UpdateTeam, message, "keyvault")
    return json_response(team_json(team))


async def set_member(request: Request) -> Response:
    """Add a user to the team or change its role (admin, or the team's admin for a user new to teams)."""
    gateway = edge(request)
    principal = await gateway.principal(request)
    team_id = acting_team(principal, request.path_params["team_id"]) or request.path_params["team_id"]
    payload = await _optional_json(request)
    _only(payload, {"role"})
    message = keyvault_pb2.SetTeamMemberRequest(
        team_id=team_id,
        user_id=request.path_params["user_id"],
        role=_string(payload, "role", "member"),
        actor=principal.user_id,
    )
    member: keyvault_pb2.TeamMember = await gateway.call(gateway.clients.keyvault.SetTeamMember, message, "keyvault")
    return json_response(member_json(member))


async def remove_member(request: Request) -> Response:
    gateway = edge(request)
    principal = await gateway.principal(request)
    team_id = acting_team(principal, request.path_params["team_id"]) or request.path_params["team_id"]
    user_id = request.path_params["user_id"]
    message = keyvault_pb2.RemoveTeamMemberRequest(team_id=team_id, user_id=user_id, actor=principal.user_id)
    reply: keyvault_pb2.RemoveTeamMemberReply = await gateway.call(
        gateway.clients.keyvault.RemoveTeamMember, message, "keyvault"
    )
    if not reply.removed:
        raise DomainError("not_found", f"'{user_id}' is not a member of this team", "user_id")
    return json_response({"object": "team.member", "team_id": team_id, "user_id": user_id, "deleted": True})


extend(
    "/v1/teams",
    False,
    {
        "post": operation(
            "Create a team (admin). Body {team_id, name, pooled, models, max_parallel, model_limits: "
            "{model: {rpm, tpm}}}; pooled: the team's credits account pays for its members"
        ),
        "get": operation("Teams: every team for an admin, your own team otherwise"),
    },
)
extend(
    "/v1/teams/{team_id}",
    False,
    {
        "get": operation("A team and its members (admin, or a member of the team)", params=[path_param("team_id")]),
        "patch": operation(
            "Change a team's name, pooling or access policy (admin); fields left out keep their value",
            params=[path_param("team_id")],
        ),
    },
)
extend(
    "/v1/teams/{team_id}/members/{user_id}",
    False,
    {
        "put": operation(
            "Add a user to the team or set its role (admin, or the team's admin for a user without keys). Body "
            "{role: member | admin}",
            params=[path_param("team_id"), path_param("user_id")],
        ),
        "delete": operation(
            "Remove a member (admin, or the team's admin)", params=[path_param("team_id"), path_param("user_id")]
        ),
    },
)

ROUTES = [
    Route("/v1/teams", create_team, methods=["POST"]),
    Route("/v1/teams", list_teams, methods=["GET"]),
    Route("/v1/teams/{team_id}", get_team, methods=["GET"]),
    Route("/v1/teams/{team_id}", update_team, methods=["PATCH"]),
    Route("/v1/teams/{team_id}/members/{user_id}", set_member, methods=["PUT"]),
    Route("/v1/teams/{team_id}/members/{user_id}", remove_member, methods=["DELETE"]),
]
