"""The audit log: who did what to which key, with its fingerprint and the outcome — never the value.

Each event is a row in `audit_events` and one structured log line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.keyvault.schema import audit_events, now_ms
from services.runtime.logging import fields

log = logging.getLogger("tollgate.keyvault.audit")


@dataclass(frozen=True)
class AuditEvent:
    at: int
    actor: str
    action: str
    user_id: str
    key_id: str
    fingerprint: str
    outcome: str
    detail: str


async def record(
    conn: AsyncConnection,
    *,
    actor: str,
    action: str,
    outcome: str,
    user_id: str = "",
    key_id: str = "",
    fingerprint: str = "",
    detail: str = "",
) -> None:
    """Write one event inside the caller's transaction (so it commits or rolls back with the change)."""
    await conn.execute(
        audit_events.insert().values(
            at=now_ms(),
            actor=(actor or "unknown")[:200],
            action=action,
            user_id=user_id[:200],
            key_id=key_id,
            fingerprint=fingerprint,
            outcome=outcome,
            detail=detail[:500],
        )
    )
    log.info(
        "audit %s %s",
        action,
        outcome,
        extra=fields(actor=actor, user_id=user_id, key_id=key_id, fingerprint=fingerprint, detail=detail),
    )


async def record_alone(engine: AsyncEngine, **event: str) -> None:
    """Write one event in a transaction of its own (for refusals, where nothing else changes)."""
    async with engine.begin() as conn:
        await record(conn, **event)


async def recent(engine: AsyncEngine, user_id: str = "", limit: int = 100) -> list[AuditEvent]:
    query = select(audit_events).order_by(audit_events.c.id.desc()).limit(max(1, min(limit, 1000)))
    if user_id:
        query = query.where(audit_events.c.user_id == user_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [AuditEvent(r.at, r.actor, r.action, r.user_id, r.key_id, r.fingerprint, r.outcome, r.detail) for r in rows]
