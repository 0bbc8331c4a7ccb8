"""`tollgate teams`: create, list, show and update teams and add or remove their members, talking gRPC to
keyvault as the operator. The keyvault address is `--keyvault-addr` or `TOLLGATE_KEYVAULT_ADDR`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from services.cli.common import actor, add_connection, print_json, runner, when
from services.cli.keys import add_policy, policy_of, policy_row
from tollgate.keyvault.v1 import keyvault_pb2 as pb
from tollgate.keyvault.v1 import keyvault_pb2_grpc

if TYPE_CHECKING:
    Stub = keyvault_pb2_grpc.KeyVaultAsyncStub


def team_row(team: pb.Team) -> dict[str, Any]:
    return {
        "team_id": team.team_id,
        "name": team.name,
        "pooled": team.pooled,
        "created": when(team.created_unix_ms),
        **policy_row(team.policy),
        "members": [{"user_id": m.user_id, "role": m.role, "added": when(m.added_unix_ms)} for m in team.members],
    }


async def create(stub: Stub, args: argparse.Namespace) -> int:
    team = await stub.CreateTeam(
        pb.CreateTeamRequest(
            team_id=args.team_id or "", name=args.name, pooled=args.pooled, policy=policy_of(args), actor=actor()
        ),
        timeout=args.timeout,
    )
    print_json(team_row(team))
    return 0


async def list_teams(stub: Stub, args: argparse.Namespace) -> int:
    reply = await stub.ListTeams(pb.ListTeamsRequest(), timeout=args.timeout)
    if args.json:
        print_json([team_row(t) for t in reply.teams])
        return 0
    for team in reply.teams:
        pooled = "pooled" if team.pooled else "members pay"
        print(f"{team.team_id}  {team.name}  {pooled}  {len(team.members)} members")
    return 0


async def show(stub: Stub, args: argparse.Namespace) -> int:
    print_json(team_row(await stub.GetTeam(pb.GetTeamRequest(team_id=args.team_id), timeout=args.timeout)))
    return 0


async def update(stub: Stub, args: argparse.Namespace) -> int:
    current = await stub.GetTeam(pb.GetTeamRequest(team_id=args.team_id), timeout=args.timeout)
    team = await stub.UpdateTeam(
        pb.UpdateTeamRequest(
            team_id=args.team_id,
            name=args.name or current.name,
            pooled=current.pooled if args.pooled is None else args.pooled,
            policy=policy_of(args, current.policy),
            actor=actor(),
        ),
        timeout=args.timeout,
    )
    print_json(team_row(team))
    return 0


async def add_member(stub: Stub, args: argparse.Namespace) -> int:
    member = await stub.SetTeamMember(
        pb.SetTeamMemberRequest(team_id=args.team_id, user_id=args.user, role=args.role, actor=actor()),
        timeout=args.timeout,
    )
    print(f"{member.user_id} is {member.role} of {member.team_id}")
    return 0


async def remove_member(stub: Stub, args: argparse.Namespace) -> int:
    reply = await stub.RemoveTeamMember(
        pb.RemoveTeamMemberRequest(team_id=args.team_id, user_id=args.user, actor=actor()), timeout=args.timeout
    )
    print(f"removed {args.user} from {args.team_id}" if reply.removed else f"{args.user} is not in {args.team_id}")
    return 0 if reply.removed else 1


def register(sub: Any) -> None:
    """Add `tollgate teams create|list|show|update|add-member|remove-member` to the CLI's subparsers."""
    teams = sub.add_parser("teams", help="teams: create, list, show, update, add and remove members")
    commands = teams.add_subparsers(dest="teams_command", required=True)

    def command(name: str, help: str, func: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = commands.add_parser(name, help=help)
        add_connection(p, "keyvault")
        p.set_defaults(func=runner("keyvault", keyvault_pb2_grpc.KeyVaultStub, func))
        return p

    p = command("create", "create a team", create)
    p.add_argument("team_id", nargs="?", help="a-z 0-9 _ . - (default: generated)")
    p.add_argument("--name", default="", help="a display name")
    p.add_argument("--pooled", action="store_true", help="the team's credits account pays for its members")
    add_policy(p)

    p = command("list", "list teams", list_teams)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("show", "a team, its policy and members", show)
    p.add_argument("team_id")

    p = command("update", "change a team's name, pooling or policy (options left out keep their value)", update)
    p.add_argument("team_id")
    p.add_argument("--name", default="", help="a new display name")
    p.add_argument("--pooled", action=argparse.BooleanOptionalAction, help="the team's pool pays (--no-pooled: not)")
    add_policy(p)

    p = command("add-member", "add a user to a team (moving it from another) or set its role", add_member)
    p.add_argument("team_id")
    p.add_argument("user")
    p.add_argument("--role", choices=["member", "admin"], default="member", help="admin: manages the team")

    p = command("remove-member", "remove a user from a team", remove_member)
    p.add_argument("team_id")
    p.add_argument("user")
