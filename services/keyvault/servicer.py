"""The KeyVault gRPC servicer: unpack, call the domain, pack. Who may call what is in `access.py`; a team admin's
call (the gateway acting for a user without the admin scope) is held to the team it names (`_team_scope`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.keyvault import audit, policies, rotation
from services.keyvault.apikeys import ApiKeyInfo, ApiKeys
from services.keyvault.byok import ProviderKeyInfo, ProviderKeys
from services.keyvault.masterkeys import KeyRing
from services.keyvault.policies import Policy
from services.keyvault.teams import Member, Team, Teams
from services.runtime import identity
from services.runtime.errors import DomainError, rpc
from services.runtime.identity import Peer
from tollgate.keyvault.v1 import keyvault_pb2 as pb
from tollgate.keyvault.v1 import keyvault_pb2_grpc

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def _api_key_info(info: ApiKeyInfo) -> pb.ApiKeyInfo:
    return pb.ApiKeyInfo(
        key_id=info.key_id,
        user_id=info.user_id,
        name=info.name,
        prefix=info.prefix,
        scopes=list(info.scopes),
        created_unix_ms=info.created_at,
        expires_unix_ms=info.expires_at or 0,
        revoked_unix_ms=info.revoked_at or 0,
        last_used_unix_ms=info.last_used_at or 0,
        rpm_limit=info.rpm_limit,
        tpm_limit=info.tpm_limit,
        policy=_policy_pb(info.policy),
        team_id=info.team_id,
    )


def _policy_pb(policy: Policy) -> pb.AccessPolicy:
    return pb.AccessPolicy(
        models=list(policy.models),
        max_parallel=policy.max_parallel,
        model_limits={m: pb.ModelLimit(rpm=rpm, tpm=tpm) for m, (rpm, tpm) in policy.model_limits.items()},
    )


def _policy(message: pb.AccessPolicy, param: str = "policy") -> Policy:
    limits = {m: (lim.rpm, lim.tpm) for m, lim in message.model_limits.items()}
    return policies.checked(list(message.models), message.max_parallel, limits, param)


def _member(member: Member) -> pb.TeamMember:
    return pb.TeamMember(
        team_id=member.team_id, user_id=member.user_id, role=member.role, added_unix_ms=member.added_at
    )


def _team(team: Team) -> pb.Team:
    return pb.Team(
        team_id=team.team_id,
        name=team.name,
        pooled=team.pooled,
        policy=_policy_pb(team.policy),
        created_unix_ms=team.created_at,
        members=[_member(m) for m in team.members],
    )


def _provider_key_info(info: ProviderKeyInfo) -> pb.ProviderKeyInfo:
    return pb.ProviderKeyInfo(
        key_id=info.key_id,
        user_id=info.user_id,
        provider=info.provider,
        masked=info.masked,
        label=info.label,
        created_unix_ms=info.created_at,
        last_used_unix_ms=info.last_used_at or 0,
        fingerprint=info.fingerprint,
        master_key_version=info.master_key_version,
    )


def _version(status: rotation.VersionStatus) -> pb.MasterKeyVersion:
    return pb.MasterKeyVersion(
        version=status.version,
        rows=status.rows,
        active=status.active,
        configured=status.configured,
        retired_unix_ms=status.retired_at or 0,
    )


@dataclass
class KeyVaultServicer(keyvault_pb2_grpc.KeyVaultServicer):
    engine: AsyncEngine
    ring: KeyRing
    api_keys: ApiKeys
    provider_keys: ProviderKeys
    teams: Teams
    rotate_batch: int = 500

    async def _team_scope(self, team_id: str, *, admin: bool, action: str) -> str:
        """ "" for an admin (or the operator): any team. Otherwise the gateway acts for a user, who must be a
        member (an admin, with `admin`) of the team the call names; that team is returned."""
        peer = identity.current()
        if peer is None or peer.admin:
            return ""
        return await self.teams.authorize(peer.acting_user, team_id, admin=admin, action=action)

    async def refused(self, method: str, request: object, peer: Peer | None, err: DomainError) -> None:
        """A refused attempt to read a provider key is written to the audit log (the guard refused it)."""
        if method == "GetProviderKey" and isinstance(request, pb.GetProviderKeyRequest):
            await audit.record_alone(
                self.engine,
                actor=peer.describe() if peer else "unknown caller",
                action="provider_key.reveal",
                outcome="denied",
                user_id=request.user_id,
                detail=f"provider={request.provider}",
            )

    @rpc
    async def Authenticate(self, request: pb.AuthenticateRequest, context: Context) -> pb.Principal:
        principal = await self.api_keys.authenticate(request.api_key)
        return pb.Principal(
            user_id=principal.user_id,
            key_id=principal.key_id,
            scopes=list(principal.scopes),
            rpm_limit=principal.rpm_limit,
            tpm_limit=principal.tpm_limit,
            expires_unix_ms=principal.expires_at or 0,
            team_id=principal.team_id,
            team_role=principal.team_role,
            team_pays=principal.team_pays,
            policy=_policy_pb(principal.policy),
            team_policy=_policy_pb(principal.team_policy),
        )

    @rpc
    async def CreateApiKey(self, request: pb.CreateApiKeyRequest, context: Context) -> pb.CreateApiKeyReply:
        team_id = await self._team_scope(request.team_id, admin=True, action="api_key.create") or request.team_id
        key, info = await self.api_keys.create(
            request.user_id,
            list(request.scopes),
            name=request.name,
            expires_at=request.expires_unix_ms or None,
            rpm_limit=request.rpm_limit,
            tpm_limit=request.tpm_limit,
            actor=request.actor,
            policy=_policy(request.policy),
            team_id=team_id,
        )
        return pb.CreateApiKeyReply(api_key=key, info=_api_key_info(info))

    @rpc
    async def ListApiKeys(self, request: pb.ListApiKeysRequest, context: Context) -> pb.ListApiKeysReply:
        team_id = request.team_id
        if team_id:
            team_id = await self._team_scope(team_id, admin=True, action="api_key.list") or team_id
        keys = await self.api_keys.list(request.user_id, team_id)
        return pb.ListApiKeysReply(keys=[_api_key_info(k) for k in keys])

    @rpc
    async def RevokeApiKey(self, request: pb.RevokeApiKeyRequest, context: Context) -> pb.ApiKeyInfo:
        team_id = await self._team_scope(request.team_id, admin=True, action="api_key.revoke") or request.team_id
        return _api_key_info(await self.api_keys.revoke(request.key_id, request.user_id, request.actor, team_id))

    @rpc
    async def PutProviderKey(self, request: pb.PutProviderKeyRequest, context: Context) -> pb.ProviderKeyInfo:
        info = await self.provider_keys.put(request.user_id, request.provider, request.api_key, request.label)
        return _provider_key_info(info)

    @rpc
    async def ListProviderKeys(self, request: pb.ListProviderKeysRequest, context: Context) -> pb.ListProviderKeysReply:
        keys = await self.provider_keys.list(request.user_id)
        return pb.ListProviderKeysReply(keys=[_provider_key_info(k) for k in keys])

    @rpc
    async def DeleteProviderKey(
        self, request: pb.DeleteProviderKeyRequest, context: Context
    ) -> pb.DeleteProviderKeyReply:
        return pb.DeleteProviderKeyReply(deleted=await self.provider_keys.delete(request.user_id, request.provider))

    @rpc
    async def GetProviderKey(self, request: pb.GetProviderKeyRequest, context: Context) -> pb.ProviderKeySecret:
        secret = await self.provider_keys.reveal(request.user_id, request.provider)
        if secret is None:
            return pb.ProviderKeySecret(found=False)
        return pb.ProviderKeySecret(found=True, api_key=secret.api_key, key_id=secret.key_id)

    @rpc
    async def RotateMasterKey(self, request: pb.RotateMasterKeyRequest, context: Context) -> pb.RotateMasterKeyReply:
        result = await rotation.rotate(
            self.engine, self.ring, request.limit or self.rotate_batch, request.actor, request.after_id
        )
        return pb.RotateMasterKeyReply(
            active_version=result.active_version,
            rewrapped=result.rewrapped,
            skipped=result.skipped,
            remaining=result.remaining,
            total=result.total,
            failed=result.failed,
            cursor=result.cursor,
        )

    @rpc
    async def VaultStatus(self, request: pb.VaultStatusRequest, context: Context) -> pb.VaultStatusReply:
        status = await rotation.vault_status(self.engine, self.ring)
        return pb.VaultStatusReply(
            active_version=status.active_version,
            versions=[_version(v) for v in status.versions],
            total=status.total,
        )

    @rpc
    async def RetireMasterKey(self, request: pb.RetireMasterKeyRequest, context: Context) -> pb.MasterKeyVersion:
        return _version(await rotation.retire(self.engine, self.ring, request.version, request.actor))

    @rpc
    async def ListAuditEvents(self, request: pb.ListAuditEventsRequest, context: Context) -> pb.ListAuditEventsReply:
        events = await audit.recent(self.engine, request.user_id, request.limit or 100)
        return pb.ListAuditEventsReply(
            events=[
                pb.AuditEvent(
                    at_unix_ms=e.at,
                    actor=e.actor,
                    action=e.action,
                    user_id=e.user_id,
                    key_id=e.key_id,
                    fingerprint=e.fingerprint,
                    outcome=e.outcome,
                    detail=e.detail,
                )
                for e in events
            ]
        )

    @rpc
    async def UpdateApiKey(self, request: pb.UpdateApiKeyRequest, context: Context) -> pb.ApiKeyInfo:
        team_id = await self._team_scope(request.team_id, admin=True, action="api_key.update") or request.team_id
        info = await self.api_keys.update_policy(request.key_id, _policy(request.policy), team_id, request.actor)
        return _api_key_info(info)

    @rpc
    async def CreateTeam(self, request: pb.CreateTeamRequest, context: Context) -> pb.Team:
        team = await self.teams.create(
            request.team_id, request.name, request.pooled, _policy(request.policy), request.actor
        )
        return _team(team)

    @rpc
    async def UpdateTeam(self, request: pb.UpdateTeamRequest, context: Context) -> pb.Team:
        team = await self.teams.update(
            request.team_id, request.name, request.pooled, _policy(request.policy), request.actor
        )
        return _team(team)

    @rpc
    async def GetTeam(self, request: pb.GetTeamRequest, context: Context) -> pb.Team:
        await self._team_scope(request.team_id, admin=False, action="team.read")
        return _team(await self.teams.get(request.team_id))

    @rpc
    async def ListTeams(self, request: pb.ListTeamsRequest, context: Context) -> pb.ListTeamsReply:
        return pb.ListTeamsReply(teams=[_team(t) for t in await self.teams.list()])

    @rpc
    async def SetTeamMember(self, request: pb.SetTeamMemberRequest, context: Context) -> pb.TeamMember:
        scoped = await self._team_scope(request.team_id, admin=True, action="team.member.set")
        member = await self.teams.set_member(
            request.team_id, request.user_id, request.role, request.actor, admin=not scoped
        )
        return _member(member)

    @rpc
    async def RemoveTeamMember(self, request: pb.RemoveTeamMemberRequest, context: Context) -> pb.RemoveTeamMemberReply:
        await self._team_scope(request.team_id, admin=True, action="team.member.remove")
        removed = await self.teams.remove_member(request.team_id, request.user_id, request.actor)
        return pb.RemoveTeamMemberReply(removed=removed)
