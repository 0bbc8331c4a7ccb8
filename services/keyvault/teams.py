"""Teams: a team owns users (its members) and, through them, their keys; its credits may be one pool.

A user belongs to at most one team (`team_members` is keyed by user). A member is `member` or `admin`; a
team's admins manage its members and its members' keys and see only their team. Every change is an audit row
written in the same transaction; a refused attempt on another team is an audit row too. `authorize` is the
one check of a team admin's (or member's) call that the gateway makes for them.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.keyvault import audit, policies
from services.keyvault.apikeys import check_user_id
from services.keyvault.policies import Policy
from services.keyvault.schema import api_keys, now_ms, team_members, teams
from services.runtime.errors import DomainError

ROLES = ("member", "admin")
_TEAM_ID = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")


@dataclass(frozen=True)
class Member:
    team_id: str
    user_id: str
    role: str
    added_at: int


@dataclass(frozen=True)
class Team:
    team_id: str
    name: str
    pooled: bool
    policy: Policy
    created_at: int
    members: tuple[Member, ...] = ()


def check_team_id(team_id: str) -> str:
    if not _TEAM_ID.match(team_id):
        raise DomainError(
            "invalid_request",
            "team_id must be 1-64 characters of a-z 0-9 _ . - (starting with a letter or digit)",
            "team_id",
        )
    return team_id


def _name(name: str) -> str:
    if len(name) > 200:
        raise DomainError("invalid_request", "name is longer than 200 characters", "name")
    return name.strip()


def _role(role: str) -> str:
    chosen = (role or "member").strip().lower()
    if chosen not in ROLES:
        raise DomainError("invalid_request", "role must be 'member' or 'admin'", "role")
    return chosen


async def _team(conn: AsyncConnection, team_id: str, members: bool = True) -> Team:
    row = (await conn.execute(select(teams).where(teams.c.team_id == team_id))).first()
    if row is None:
        raise DomainError("not_found", f"no team {team_id!r}", "team_id")
    found: tuple[Member, ...] = ()
    if members:
        query = select(team_members).where(team_members.c.team_id == team_id).order_by(team_members.c.user_id)
        found = tuple(Member(m.team_id, m.user_id, m.role, m.added_at) for m in (await conn.execute(query)).all())
    return Team(row.team_id, row.name, bool(row.pooled), policies.loads(row.policy), row.created_at, found)


async def membership(conn: AsyncConnection, user_id: str) -> Member | None:
    row = (await conn.execute(select(team_members).where(team_members.c.user_id == user_id))).first()
    return None if row is None else Member(row.team_id, row.user_id, row.role, row.added_at)


class Teams:
    """Every team and its members."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def authorize(self, acting_user: str, team_id: str, *, admin: bool, action: str) -> str:
        """Hold a non-admin caller to its own team: `acting_user` must be a member (an admin, with `admin`)
        of `team_id`. Anything else is refused the same way, and written to the audit log."""
        if not team_id:
            raise DomainError("permission_denied", "this call needs the team it acts for", "team_id")
        async with self.engine.connect() as conn:
            member = await membership(conn, acting_user) if acting_user else None
        if member is None or member.team_id != team_id or (admin and member.role != "admin"):
            await audit.record_alone(
                self.engine,
                actor=acting_user,
                action=action,
                outcome="denied",
                user_id=acting_user,
                detail=f"team={team_id[:64]}",
            )
            raise DomainError(
                "permission_denied", f"only {'an admin' if admin else 'a member'} of the team may do this", "team_id"
            )
        return team_id

    async def create(self, team_id: str, name: str, pooled: bool, policy: Policy, actor: str) -> Team:
        team_id = check_team_id(team_id) if team_id else "team_" + secrets.token_hex(6)
        team = Team(team_id, _name(name) or team_id, pooled, policy, now_ms())
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    teams.insert().values(
                        team_id=team.team_id,
                        name=team.name,
                        pooled=pooled,
                        policy=policy.dumps(),
                        created_at=team.created_at,
                    )
                )
                await audit.record(
                    conn, actor=actor, action="team.create", outcome="ok", detail=f"team={team_id} pooled={pooled}"
                )
        except IntegrityError:
            raise DomainError("conflict", f"team {team_id!r} exists already", "team_id") from None
        return team

    async def update(self, team_id: str, name: str, pooled: bool, policy: Policy, actor: str) -> Team:
        """Replace the team's pooling and policy whole (and its name, when one is given)."""
        values: dict[str, object] = {"pooled": pooled, "policy": policy.dumps()}
        if name.strip():
            values["name"] = _name(name)
        async with self.engine.begin() as conn:
            done = await conn.execute(update(teams).where(teams.c.team_id == team_id).values(**values))
            if not done.rowcount:
                raise DomainError("not_found", f"no team {team_id!r}", "team_id")
            await audit.record(
                conn, actor=actor, action="team.update", outcome="ok", detail=f"team={team_id} pooled={pooled}"
            )
            return await _team(conn, team_id)

    async def get(self, team_id: str) -> Team:
        async with self.engine.connect() as conn:
            return await _team(conn, team_id)

    async def list(self) -> list[Team]:
        async with self.engine.connect() as conn:
            ids = (await conn.execute(select(teams.c.team_id).order_by(teams.c.created_at, teams.c.team_id))).all()
            return [await _team(conn, row.team_id) for row in ids]

    async def set_member(self, team_id: str, user_id: str, role: str, actor: str, *, admin: bool) -> Member:
        """Add `user_id` to the team (or change its role). An admin's call (`admin`) may move a user from
        another team. A team admin's may not, and may add only a user who has no key yet: a key it then makes
        for an existing user would spend that user's own credits and provider keys."""
        check_user_id(user_id)
        chosen = _role(role)
        try:
            return await self._set_member(team_id, user_id, chosen, actor, admin)
        except IntegrityError:  # the same user added by two calls at once: one of them wins
            raise DomainError("conflict", "this user's team changed concurrently; try again", "user_id") from None

    async def _set_member(self, team_id: str, user_id: str, chosen: str, actor: str, admin: bool) -> Member:
        async with self.engine.begin() as conn:
            await _team(conn, team_id, members=False)
            current = await membership(conn, user_id)
            if current is not None and current.team_id != team_id and not admin:
                raise DomainError("conflict", "this user belongs to another team", "user_id")
            if current is None and not admin:
                has_keys = (
                    await conn.execute(select(api_keys.c.key_id).where(api_keys.c.user_id == user_id).limit(1))
                ).first()
                if has_keys is not None:
                    raise DomainError(
                        "permission_denied", "this user has keys already; an admin adds existing users", "user_id"
                    )
            member = Member(team_id, user_id, chosen, current.added_at if current else now_ms())
            if current is None:
                await conn.execute(
                    team_members.insert().values(
                        user_id=user_id, team_id=team_id, role=chosen, added_at=member.added_at
                    )
                )
            else:
                await conn.execute(
                    update(team_members).where(team_members.c.user_id == user_id).values(team_id=team_id, role=chosen)
                )
            detail = f"team={team_id} role={chosen}" + (f" from={current.team_id}" if current else "")
            await audit.record(
                conn, actor=actor, action="team.member.set", outcome="ok", user_id=user_id, detail=detail
            )
        return member

    async def remove_member(self, team_id: str, user_id: str, actor: str) -> bool:
        async with self.engine.begin() as conn:
            await _team(conn, team_id, members=False)
            done = await conn.execute(
                delete(team_members).where(team_members.c.user_id == user_id, team_members.c.team_id == team_id)
            )
            if done.rowcount:
                await audit.record(
                    conn,
                    actor=actor,
                    action="team.member.remove",
                    outcome="ok",
                    user_id=user_id,
                    detail=f"team={team_id}",
                )
        return bool(done.rowcount)

    async def team_of(self, user_id: str) -> Member | None:
        async with self.engine.connect() as conn:
            return await membership(conn, user_id)
