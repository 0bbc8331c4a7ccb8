"""One prober per target per interval across replicas: a lease on the target's row.

Each target row carries `probe_due_ms`. A replica probes only after its guarded update moves that moment
forward (`... WHERE probe_due_ms <= now`); PostgreSQL re-checks the condition after a concurrent update
commits and SQLite serialises writers, so exactly one replica wins each interval. Unlike an advisory lock,
which only excludes at the same instant, the lease also stops a replica whose timer runs a little later
from probing again within the same interval.
"""

from __future__ import annotations

from sqlalchemy import and_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.health.schema import targets


def to_ms(seconds: float) -> int:
    return round(seconds * 1000)


async def claim_probe(engine: AsyncEngine, key: tuple[str, str], now: float, next_due: float) -> bool:
    """Take the probe of `key` due at or before `now`, pushing the next one to `next_due`."""
    provider, base_url = key
    statement = (
        update(targets)
        .where(
            and_(
                targets.c.provider == provider,
                targets.c.base_url == base_url,
                targets.c.probe_due_ms <= to_ms(now),
            )
        )
        .values(probe_due_ms=to_ms(next_due))
    )
    async with engine.begin() as conn:
        result = await conn.execute(statement)
    return result.rowcount == 1


async def reschedule(engine: AsyncEngine, key: tuple[str, str], next_due: float) -> None:
    """After a manual check: the next scheduled probe is a full interval away."""
    provider, base_url = key
    statement = (
        update(targets)
        .where(and_(targets.c.provider == provider, targets.c.base_url == base_url))
        .values(probe_due_ms=to_ms(next_due))
    )
    async with engine.begin() as conn:
        await conn.execute(statement)
