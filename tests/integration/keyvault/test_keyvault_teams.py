"""Teams and key access policies over real gRPC, on SQLite and PostgreSQL: what admins do, what team admins
may do for their own team, and the attacks of a team admin (or member) on another team."""

from __future__ import annotations

from typing import Any, cast

import grpc
import pytest

from tests import identities
from tollgate.keyvault.v1 import keyvault_pb2 as pb
from tollgate.keyvault.v1 import keyvault_pb2_grpc

RunningKeyvault = Any


def code_of(exc: grpc.aio.AioRpcError) -> str:
    return str(dict(exc.trailing_metadata() or ()).get("tollgate-code", ""))


def acting(keyvault: RunningKeyvault, user: str) -> keyvault_pb2_grpc.KeyVaultAsyncStub:
    """The gateway acting for `user` with the user scope only (a team admin or member, not a platform admin)."""
    channel = identities.aio_channel(keyvault.address, "gateway")
    return cast(
        "keyvault_pb2_grpc.KeyVaultAsyncStub",
        keyvault_pb2_grpc.KeyVaultStub(identities.ActingChannel(channel, user, ("user",))),
    )


async def refused(call: Any, code: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert code_of(err.value) == code, err.value.details()


POLICY = pb.AccessPolicy(models=["demo-small"], max_parallel=2, model_limits={"demo-small": pb.ModelLimit(rpm=5)})


async def two_teams(kv: RunningKeyvault) -> None:
    await kv.stub.CreateTeam(pb.CreateTeamRequest(team_id="red", name="Red", pooled=True, policy=POLICY, actor="admin"))
    await kv.stub.CreateTeam(pb.CreateTeamRequest(team_id="blue", name="Blue", actor="admin"))
    for team, user, role in (("red", "rita", "admin"), ("red", "rob", "member"), ("blue", "bea", "admin")):
        await kv.stub.SetTeamMember(pb.SetTeamMemberRequest(team_id=team, user_id=user, role=role, actor="admin"))


async def test_authenticate_carries_the_team_and_both_policies(keyvault: RunningKeyvault) -> None:
    kv = keyvault
    await two_teams(kv)
    own = pb.AccessPolicy(models=["demo-large", "tier:eco"], max_parallel=3)
    made = await kv.stub.CreateApiKey(pb.CreateApiKeyRequest(user_id="rob", policy=own, actor="admin"))
    assert made.info.team_id == "red" and list(made.info.policy.models) == ["demo-large", "tier:eco"]
    principal = await kv.stub.Authenticate(pb.AuthenticateRequest(api_key=made.api_key))
    assert (principal.team_id, principal.team_role, principal.team_pays) == ("red", "member", True)
    assert principal.policy.max_parallel == 3 and list(principal.team_policy.models) == ["demo-small"]
    assert principal.team_policy.model_limits["demo-small"].rpm == 5
    loner = await kv.stub.CreateApiKey(pb.CreateApiKeyRequest(user_id="lou", actor="admin"))
    alone = await kv.stub.Authenticate(pb.AuthenticateRequest(api_key=loner.api_key))
    assert (alone.team_id, alone.team_role, alone.team_pays, alone.policy.max_parallel) == ("", "", False, 0)


async def test_admin_manages_teams_and_a_user_is_in_one_team(keyvault: RunningKeyvault) -> None:
    kv = keyvault
    await two_teams(kv)
    await refused(kv.stub.CreateTeam(pb.CreateTeamRequest(team_id="red")), "conflict")
    await refused(kv.stub.CreateTeam(pb.CreateTeamRequest(team_id="Bad Id!")), "invalid_request")
    bad = pb.AccessPolicy(model_limits={"demo-small": pb.ModelLimit()})
    await refused(kv.stub.CreateTeam(pb.CreateTeamRequest(team_id="x", policy=bad)), "invalid_request")
    await refused(
        kv.stub.CreateTeam(pb.CreateTeamRequest(team_id="y", policy=pb.AccessPolicy(max_parallel=-1))),
        "invalid_request",
    )
    listed = await kv.stub.ListTeams(pb.ListTeamsRequest())
    assert sorted(t.team_id for t in listed.teams) == ["blue", "red"]
    # An admin moves bea from blue to red: she is then in red only.
    await kv.stub.SetTeamMember(pb.SetTeamMemberRequest(team_id="red", user_id="bea", role="member"))
    red = await kv.stub.GetTeam(pb.GetTeamRequest(team_id="red"))
    blue = await kv.stub.GetTeam(pb.GetTeamRequest(team_id="blue"))
    assert {m.user_id for m in red.members} == {"rita", "rob", "bea"} and not blue.members
    updated = await kv.stub.UpdateTeam(pb.UpdateTeamRequest(team_id="red", pooled=False, actor="admin"))
    assert updated.name == "Red" and not updated.pooled and not updated.policy.models
    removed = await kv.stub.RemoveTeamMember(pb.RemoveTeamMemberRequest(team_id="red", user_id="bea"))
    assert removed.removed
    events = await kv.stub.ListAuditEvents(pb.ListAuditEventsRequest(limit=50))
    actions = {e.action for e in events.events}
    assert {"team.create", "team.update", "team.member.set", "team.member.remove"} <= actions


async def test_team_user_ids_are_refused(keyvault: RunningKeyvault) -> None:
    kv = keyvault
    await two_teams(kv)
    for user in ("team:red", "TEAM:x"):
        await refused(kv.stub.CreateApiKey(pb.CreateApiKeyRequest(user_id=user)), "invalid_request")
        await refused(kv.stub.SetTeamMember(pb.SetTeamMemberRequest(team_id="red", user_id=user)), "invalid_request")


async def test_a_team_admin_manages_its_own_team(keyvault: RunningKeyvault) -> None:
    kv = keyvault
    await two_teams(kv)
    rita = acting(kv, "rita")
    added = await rita.SetTeamMember(pb.SetTeamMemberRequest(team_id="red", user_id="newbie", role="member"))
    assert added.team_id == "red"
    made = await rita.CreateApiKey(pb.CreateApiKeyRequest(user_id="newbie", team_id="red", actor="rita"))
    assert made.info.team_id == "red"
    changed = await rita.UpdateApiKey(pb.UpdateApiKeyRequest(key_id=made.info.key_id, team_id="red", policy=POLICY))
    assert changed.policy.max_parallel == 2
    keys = await rita.ListApiKeys(pb.ListApiKeysRequest(team_id="red"))
    assert {k.user_id for k in keys.keys} == {"newbie"}
    gone = await rita.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=made.info.key_id, team_id="red", actor="rita"))
    assert gone.revoked_unix_ms > 0
    promoted = await rita.SetTeamMember(pb.SetTeamMemberRequest(team_id="red", user_id="rob", role="admin"))
    assert promoted.role == "admin"
    team = await acting(kv, "rob").GetTeam(pb.GetTeamRequest(team_id="red"))
    assert {m.user_id for m in team.members} == {"rita", "rob", "newbie"}


async def test_a_team_admin_cannot_touch_another_team(keyvault: RunningKeyvault) -> None:
    kv = keyvault
    await two_teams(kv)
    bea_key = await kv.stub.CreateApiKey(pb.CreateApiKeyRequest(user_id="bea", actor="admin"))
    rita = acting(kv, "rita")
    denied = "permission_denied"
    # Naming the other team: refused, whatever the call.
    await refused(rita.GetTeam(pb.GetTeamRequest(team_id="blue")), denied)
    await refused(rita.SetTeamMember(pb.SetTeamMemberRequest(team_id="blue", user_id="rita", role="admin")), denied)
    await refused(rita.SetTeamMember(pb.SetTeamMemberRequest(team_id="blue", user_id="bea", role="member")), denied)
    await refused(rita.RemoveTeamMember(pb.RemoveTeamMemberRequest(team_id="blue", user_id="bea")), denied)
    await refused(rita.UpdateApiKey(pb.UpdateApiKeyRequest(key_id=bea_key.info.key_id, team_id="blue")), denied)
    await refused(rita.ListApiKeys(pb.ListApiKeysRequest(team_id="blue")), denied)
    await refused(rita.CreateApiKey(pb.CreateApiKeyRequest(user_id="bea", team_id="blue")), denied)
    # Naming its own team for another team's member or key: refused too.
    await refused(rita.SetTeamMember(pb.SetTeamMemberRequest(team_id="red", user_id="bea", role="admin")), "conflict")
    assert (await rita.RemoveTeamMember(pb.RemoveTeamMemberRequest(team_id="red", user_id="bea"))).removed is False
    await refused(rita.UpdateApiKey(pb.UpdateApiKeyRequest(key_id=bea_key.info.key_id, team_id="red")), "not_found")
    await refused(rita.CreateApiKey(pb.CreateApiKeyRequest(user_id="bea", team_id="red")), denied)
    # A user outside any team who already has a key cannot be pulled in (its key would spend its credits).
    await kv.stub.CreateApiKey(pb.CreateApiKeyRequest(user_id="lou", actor="admin"))
    await refused(rita.SetTeamMember(pb.SetTeamMemberRequest(team_id="red", user_id="lou")), denied)
    # A platform admin in the team: its keys are no team admin's to make or change.
    await kv.stub.SetTeamMember(pb.SetTeamMemberRequest(team_id="red", user_id="root", role="member"))
    root = await kv.stub.CreateApiKey(pb.CreateApiKeyRequest(user_id="root", scopes=["admin", "user"]))
    await refused(rita.CreateApiKey(pb.CreateApiKeyRequest(user_id="root", team_id="red")), denied)
    await refused(rita.UpdateApiKey(pb.UpdateApiKeyRequest(key_id=root.info.key_id, team_id="red")), denied)
    await refused(rita.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=root.info.key_id, team_id="red")), denied)
    await refused(rita.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=bea_key.info.key_id, team_id="red")), "not_found")
    await refused(rita.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=bea_key.info.key_id, team_id="blue")), denied)
    await refused(rita.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=bea_key.info.key_id)), denied)
    # Without a team named: refused; admin keys: refused; admin-only calls: refused.
    await refused(rita.UpdateApiKey(pb.UpdateApiKeyRequest(key_id=bea_key.info.key_id)), denied)
    await refused(rita.CreateApiKey(pb.CreateApiKeyRequest(user_id="rob", team_id="red", scopes=["admin"])), denied)
    await refused(rita.CreateTeam(pb.CreateTeamRequest(team_id="mine")), denied)
    await refused(rita.ListTeams(pb.ListTeamsRequest()), denied)
    await refused(rita.UpdateTeam(pb.UpdateTeamRequest(team_id="red", pooled=False)), denied)
    bea = await kv.stub.GetTeam(pb.GetTeamRequest(team_id="blue"))
    assert [(m.user_id, m.role) for m in bea.members] == [("bea", "admin")]
    events = await kv.stub.ListAuditEvents(pb.ListAuditEventsRequest(user_id="rita", limit=100))
    assert sum(e.outcome == "denied" for e in events.events) >= 6


async def test_a_member_is_no_team_admin(keyvault: RunningKeyvault) -> None:
    kv = keyvault
    await two_teams(kv)
    rob = acting(kv, "rob")
    assert (await rob.GetTeam(pb.GetTeamRequest(team_id="red"))).team_id == "red"
    await refused(
        rob.SetTeamMember(pb.SetTeamMemberRequest(team_id="red", user_id="rob", role="admin")), "permission_denied"
    )
    await refused(rob.CreateApiKey(pb.CreateApiKeyRequest(user_id="rob", team_id="red")), "permission_denied")
    await refused(rob.ListApiKeys(pb.ListApiKeysRequest(team_id="red")), "permission_denied")
    await refused(acting(kv, "lou").GetTeam(pb.GetTeamRequest(team_id="red")), "permission_denied")


async def test_concurrent_additions_leave_a_user_in_one_team(keyvault: RunningKeyvault) -> None:
    import asyncio

    kv = keyvault
    await two_teams(kv)
    calls = [
        kv.stub.SetTeamMember(pb.SetTeamMemberRequest(team_id=("red", "blue")[i % 2], user_id="racer"))
        for i in range(10)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, grpc.aio.AioRpcError):
            assert code_of(result) == "conflict", result.details()
    homes = [
        t.team_id
        for t in (await kv.stub.ListTeams(pb.ListTeamsRequest())).teams
        if any(m.user_id == "racer" for m in t.members)
    ]
    assert len(homes) == 1
