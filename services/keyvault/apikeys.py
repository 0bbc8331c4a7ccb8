"""Gateway API keys: `tg-` + 32 random bytes (URL-safe), stored only as an HMAC-SHA256 under a server pepper.

The plaintext is shown once, at creation; the table keeps the keyed hash (one indexed lookup per
`Authenticate`, joined with the user's team), a display prefix, scopes, optional expiry, per-key limits and
an access policy. Revoked, expired, unknown and malformed keys all get the same answer, which never repeats the
key. User ids starting with `team:` are refused: that prefix names teams' credit accounts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.expression import Select

from services.keyvault import audit, policies
from services.keyvault.last_used import LastUsed
from services.keyvault.policies import Policy
from services.keyvault.schema import api_keys, now_ms, team_members, teams
from services.runtime.errors import DomainError

log = logging.getLogger("tollgate.keyvault.apikeys")

KEY_PREFIX = "tg-"
SCOPES = ("user", "admin")
_KEY_SHAPE = re.compile(r"^tg-[A-Za-z0-9_\-]{32,200}$")
_USER_ID = re.compile(r"^[A-Za-z0-9_.@:+\-]{1,200}$")

INVALID = DomainError("invalid_api_key", "Incorrect API key provided")


@dataclass(frozen=True)
class Principal:
    user_id: str
    key_id: str
    scopes: tuple[str, ...]
    rpm_limit: int
    tpm_limit: int
    expires_at: int | None
    policy: Policy = policies.NONE
    team_id: str = ""
    team_role: str = ""
    team_pays: bool = False
    team_policy: Policy = policies.NONE


@dataclass(frozen=True)
class ApiKeyInfo:
    key_id: str
    user_id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None
    rpm_limit: int
    tpm_limit: int
    policy: Policy = policies.NONE
    team_id: str = ""


def generate() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def well_formed(key: str) -> bool:
    return bool(_KEY_SHAPE.match(key))


def key_hash(pepper: str, key: str) -> str:
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()


def display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + 4] + "…"


def check_user_id(user_id: str) -> str:
    if not _USER_ID.match(user_id):
        raise DomainError("invalid_request", "user_id must be 1-200 characters of A-Z a-z 0-9 _ . @ : + -", "user_id")
    if user_id.lower().startswith("team:"):
        raise DomainError("invalid_request", "user ids starting with 'team:' name team accounts", "user_id")
    return user_id


def _scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(s.strip().lower() for s in scopes if s.strip())) or ("user",)
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown:
        raise DomainError("invalid_request", f"unknown scope {unknown[0]!r}; scopes are user and admin", "scopes")
    return chosen


def _info(row: Row[tuple[object, ...]]) -> ApiKeyInfo:
    m = row._mapping
    return ApiKeyInfo(
        key_id=m["key_id"],
        user_id=m["user_id"],
        name=m["name"],
        prefix=m["prefix"],
        scopes=tuple(m["scopes"].split(",")),
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
        last_used_at=m["last_used_at"],
        rpm_limit=m["rpm_limit"],
        tpm_limit=m["tpm_limit"],
        policy=policies.loads(m["policy"]),
        team_id=m["team_id"] or "",
    )


def _with_team() -> Select[tuple[object, ...]]:
    """Keys with their user's team (none: NULL)."""
    joined = api_keys.outerjoin(team_members, team_members.c.user_id == api_keys.c.user_id)
    return select(api_keys, team_members.c.team_id).select_from(joined)


async def _holds_admin_key(conn: AsyncConnection, user_id: str) -> bool:
    """Whether the user has a live admin key: a team admin manages no platform admin's keys."""
    query = select(api_keys.c.key_id).where(
        api_keys.c.user_id == user_id, api_keys.c.scopes.contains("admin"), api_keys.c.revoked_at.is_(None)
    )
    return (await conn.execute(query.limit(1))).first() is not None


class ApiKeys:
    """The gateway API keys of every user."""

    def __init__(self, engine: AsyncEngine, pepper: str, last_used: LastUsed) -> None:
        self.engine = engine
        self.pepper = pepper
        self.last_used = last_used

    def fingerprint(self, key: str) -> str:
        return key_hash(self.pepper, key)[:16]

    async def authenticate(self, key: str) -> Principal:
        """The principal of a live key; `invalid_api_key` for anything else."""
        if not well_formed(key):
            raise INVALID
        # One indexed lookup, the user's team and its policy joined in: this is on every request's path.
        joined = api_keys.outerjoin(team_members, team_members.c.user_id == api_keys.c.user_id).outerjoin(
            teams, teams.c.team_id == team_members.c.team_id
        )
        query = (
            select(
                api_keys.c.key_id,
                api_keys.c.user_id,
                api_keys.c.scopes,
                api_keys.c.expires_at,
                api_keys.c.revoked_at,
                api_keys.c.rpm_limit,
                api_keys.c.tpm_limit,
                api_keys.c.policy,
                team_members.c.team_id,
                team_members.c.role,
                teams.c.pooled,
                teams.c.policy.label("team_policy"),
            )
            .select_from(joined)
            .where(api_keys.c.key_hash == key_hash(self.pepper, key))
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        now = now_ms()
        if row is None:
            raise INVALID
        if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
            log.info(
                "refused a %s key",
                "revoked" if row.revoked_at is not None else "expired",
                extra={"fields": {"key_id": row.key_id}},
            )
            raise INVALID
        self.last_used.touch(row.key_id, now)
        return Principal(
            user_id=row.user_id,
            key_id=row.key_id,
            scopes=tuple(row.scopes.split(",")),
            rpm_limit=row.rpm_limit,
            tpm_limit=row.tpm_limit,
            expires_at=row.expires_at,
            policy=policies.loads(row.policy),
            team_id=row.team_id or "",
            team_role=row.role or "",
            team_pays=bool(row.pooled),
            team_policy=policies.loads(row.team_policy),
        )

    async def create(
        self,
        user_id: str,
        scopes: Sequence[str] = ("user",),
        *,
        name: str = "",
        expires_at: int | None = None,
        rpm_limit: int = 0,
        tpm_limit: int = 0,
        actor: str = "",
        key: str | None = None,
        policy: Policy = policies.NONE,
        team_id: str = "",
    ) -> tuple[str, ApiKeyInfo]:
        """A new key for `user_id`: its plaintext (shown once) and its stored description. With `team_id`
        (a team admin's call) the user must be a member of that team and the key has the user scope only."""
        check_user_id(user_id)
        chosen = _scopes(scopes)
        if team_id and chosen != ("user",):
            raise DomainError("permission_denied", "a team admin creates keys with the user scope only", "scopes")
        now = now_ms()
        if expires_at is not None and expires_at <= now:
            raise DomainError("invalid_request", "expires_at must be in the future", "expires_at")
        if rpm_limit < 0 or tpm_limit < 0:
            raise DomainError(
                "invalid_request", "limits cannot be negative", "rpm_limit" if rpm_limit < 0 else "tpm_limit"
            )
        if len(name) > 200:
            raise DomainError("invalid_request", "name is longer than 200 characters", "name")
        plaintext = key or generate()
        info = ApiKeyInfo(
            key_id="ak_" + secrets.token_hex(8),
            user_id=user_id,
            name=name,
            prefix=display_prefix(plaintext),
            scopes=chosen,
            created_at=now,
            expires_at=expires_at,
            revoked_at=None,
            last_used_at=None,
            rpm_limit=rpm_limit,
            tpm_limit=tpm_limit,
            policy=policy,
        )
        async with self.engine.begin() as conn:
            member = (
                await conn.execute(select(team_members.c.team_id).where(team_members.c.user_id == user_id))
            ).first()
            if team_id and (member is None or member.team_id != team_id):
                raise DomainError("permission_denied", "this user is not a member of the team", "user_id")
            if team_id and await _holds_admin_key(conn, user_id):
                raise DomainError(
                    "permission_denied", "only an admin creates keys for a user with admin keys", "user_id"
                )
            info = dataclasses.replace(info, team_id=member.team_id if member else "")
            await conn.execute(
                api_keys.insert().values(
                    key_id=info.key_id,
                    user_id=user_id,
                    name=name,
                    key_hash=key_hash(self.pepper, plaintext),
                    prefix=info.prefix,
                    scopes=",".join(chosen),
                    created_at=now,
                    expires_at=expires_at,
                    rpm_limit=rpm_limit,
                    tpm_limit=tpm_limit,
                    policy=policy.dumps(),
                )
            )
            await audit.record(
                conn,
                actor=actor,
                action="api_key.create",
                outcome="ok",
                user_id=user_id,
                key_id=info.key_id,
                fingerprint=self.fingerprint(plaintext),
                detail="scopes=" + ",".join(chosen) + (f" team={team_id}" if team_id else ""),
            )
        return plaintext, info

    async def list(self, user_id: str = "", team_id: str = "") -> list[ApiKeyInfo]:
        query = _with_team().order_by(api_keys.c.created_at, api_keys.c.key_id)
        if user_id:
            query = query.where(api_keys.c.user_id == user_id)
        if team_id:
            query = query.where(team_members.c.team_id == team_id)
        async with self.engine.connect() as conn:
            return [_info(row) for row in (await conn.execute(query)).all()]

    async def update_policy(self, key_id: str, policy: Policy, team_id: str = "", actor: str = "") -> ApiKeyInfo:
        """Replace a key's access policy; with `team_id`, only a key of that team's members."""
        async with self.engine.begin() as conn:
            query = _with_team().where(api_keys.c.key_id == key_id)
            row = (await conn.execute(query)).first()
            if row is None or (team_id and row.team_id != team_id):
                raise DomainError("not_found", "no such API key", "key_id")
            if team_id and await _holds_admin_key(conn, row.user_id):
                raise DomainError(
                    "permission_denied", "only an admin changes the keys of a user with admin keys", "key_id"
                )
            await conn.execute(update(api_keys).where(api_keys.c.key_id == key_id).values(policy=policy.dumps()))
            await audit.record(
                conn,
                actor=actor,
                action="api_key.update",
                outcome="ok",
                user_id=row.user_id,
                key_id=key_id,
                detail=f"policy={policy.dumps()}"[:500],
            )
            row = (await conn.execute(query)).first()
        assert row is not None
        return _info(row)

    async def revoke(self, key_id: str, user_id: str = "", actor: str = "", team_id: str = "") -> ApiKeyInfo:
        """Revoke a key (idempotent); with `user_id`, only that user's key; with `team_id`, only a key of that
        team's members (and no admin's)."""
        where = [api_keys.c.key_id == key_id]
        if user_id:
            where.append(api_keys.c.user_id == user_id)
        async with self.engine.begin() as conn:
            if team_id:
                owner = (await conn.execute(_with_team().where(*where))).first()
                if owner is None or owner.team_id != team_id:
                    raise DomainError("not_found", "no such API key", "key_id")
                if await _holds_admin_key(conn, owner.user_id):
                    raise DomainError("permission_denied", "only an admin revokes the keys of an admin", "key_id")
            await conn.execute(
                update(api_keys).where(*where, api_keys.c.revoked_at.is_(None)).values(revoked_at=now_ms())
            )
            row = (await conn.execute(_with_team().where(*where))).first()
            if row is None:
                raise DomainError("not_found", "no such API key", "key_id")
            await audit.record(
                conn, actor=actor, action="api_key.revoke", outcome="ok", user_id=row.user_id, key_id=key_id
            )
        return _info(row)

    async def count(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(api_keys))).scalar_one())

    async def ensure_admin(self, key: str) -> bool:
        """Make sure this admin key exists (production bootstrap); True when it was inserted now."""
        async with self.engine.connect() as conn:
            found = (
                await conn.execute(select(api_keys.c.key_id).where(api_keys.c.key_hash == key_hash(self.pepper, key)))
            ).first()
        if found is not None:
            return False
        try:
            await self.create("admin", ("admin", "user"), name="bootstrap admin", actor="bootstrap", key=key)
        except IntegrityError:
            return False  # another replica inserted it a moment ago
        return True
