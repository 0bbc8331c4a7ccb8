"""The SQL of the health service: target records, the probe history and its retention, maintenance holds.

Every change of a record happens in one transaction that locks the row (`FOR UPDATE` on PostgreSQL,
`BEGIN IMMEDIATE` on SQLite), so replicas sharing a database count failures and eject consistently.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.health.ejection import Outlier
from services.health.lock import to_ms
from services.health.maintenance import Change as MaintenanceChange
from services.health.maintenance import Hold
from services.health.probes import ProbeResult
from services.health.schema import maintenance, maintenance_audit, probes, targets
from services.health.state import TargetRecord, percentiles
from services.health.targets import Target

Key = tuple[str, str]
# (record, targets ejected now other than this one, targets in total) -> the new record
Change = Callable[[TargetRecord, int, int], TargetRecord]


def _seconds(ms: int) -> float:
    return ms / 1000


def _record(m: Mapping[Any, Any]) -> TargetRecord:
    return TargetRecord(
        provider=m["provider"],
        base_url=m["base_url"],
        outlier=Outlier(
            consecutive_failures=m["consecutive_failures"],
            ejections=m["ejections"],
            ejected_until=_seconds(m["ejected_until_ms"]),
            half_open=bool(m["half_open"]),
            closed_at=_seconds(m["closed_at_ms"]),
            last_failure=_seconds(m["last_failure_ms"]),
        ),
        latency_ms=m["latency_ms"],
        last_checked=_seconds(m["last_checked_ms"]),
        last_success=_seconds(m["last_success_ms"]),
        last_error=m["last_error"],
        p50_ms=m["p50_ms"],
        p90_ms=m["p90_ms"],
        p99_ms=m["p99_ms"],
        probe_due=_seconds(m["probe_due_ms"]),
        latency_ewma_ms=m["latency_ewma_ms"],
    )


def _values(record: TargetRecord) -> dict[str, Any]:
    """The row of `record`, without the probe lease (which only lock.py moves)."""
    o = record.outlier
    return {
        "consecutive_failures": o.consecutive_failures,
        "ejections": o.ejections,
        "ejected_until_ms": to_ms(o.ejected_until),
        "half_open": o.half_open,
        "closed_at_ms": to_ms(o.closed_at),
        "last_failure_ms": to_ms(o.last_failure),
        "latency_ms": record.latency_ms,
        "last_checked_ms": to_ms(record.last_checked),
        "last_success_ms": to_ms(record.last_success),
        "last_error": record.last_error,
        "p50_ms": record.p50_ms,
        "p90_ms": record.p90_ms,
        "p99_ms": record.p99_ms,
        "latency_ewma_ms": record.latency_ewma_ms,
    }


def _stored(record: TargetRecord) -> TargetRecord:
    """`record` as it reads back from its row (times in whole milliseconds)."""
    row = _values(record) | {
        "provider": record.provider,
        "base_url": record.base_url,
        "probe_due_ms": to_ms(record.probe_due),
    }
    return _record(row)


def _where(key: Key) -> Any:
    return and_(targets.c.provider == key[0], targets.c.base_url == key[1])


class HealthStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def ensure(self, wanted: Iterable[Target]) -> None:
        """Create the record of every target that has none yet."""
        rows = [{"provider": t.provider, "base_url": t.base_url} for t in wanted]
        if not rows:
            return
        dialect = self.engine.dialect.name
        statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(targets)
        async with self.engine.begin() as conn:
            await conn.execute(statement.on_conflict_do_nothing(), rows)

    async def load(self) -> list[TargetRecord]:
        async with self.engine.connect() as conn:
            return [_record(row._mapping) for row in await conn.execute(select(targets))]

    async def _census(self, conn: AsyncConnection, key: Key, keys: Collection[Key], now: float) -> tuple[int, int]:
        rows = await conn.execute(select(targets.c.provider, targets.c.base_url, targets.c.ejected_until_ms))
        current = [(r.provider, r.base_url, r.ejected_until_ms) for r in rows if (r.provider, r.base_url) in keys]
        ejected = sum(1 for p, b, until in current if until > to_ms(now) and (p, b) != key)
        return ejected, len(current)

    async def _change(
        self, conn: AsyncConnection, key: Key, change: Change, keys: Collection[Key], now: float
    ) -> TargetRecord:
        row = (await conn.execute(select(targets).where(_where(key)).with_for_update())).one()
        ejected, total = await self._census(conn, key, keys, now)
        record = _stored(change(_record(row._mapping), ejected, total))
        await conn.execute(update(targets).where(_where(key)).values(**_values(record), updated_ms=to_ms(now)))
        return record

    async def change(self, key: Key, change: Change, keys: Collection[Key], now: float) -> TargetRecord:
        """Apply `change` to the locked record of `key` and store the result."""
        async with self.engine.begin() as conn:
            return await self._change(conn, key, change, keys, now)

    async def record_probe(
        self, key: Key, result: ProbeResult, change: Change, keys: Collection[Key], window: int
    ) -> TargetRecord:
        """Append the probe to the history, refresh the latency percentiles and apply `change`."""
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(probes).values(
                    provider=key[0],
                    base_url=key[1],
                    checked_ms=to_ms(result.checked),
                    ok=result.ok,
                    latency_ms=result.latency_ms,
                    http_status=result.http_status,
                    error=result.error,
                )
            )
            recent = await conn.execute(
                select(probes.c.latency_ms)
                .where(and_(probes.c.provider == key[0], probes.c.base_url == key[1], probes.c.ok))
                .order_by(probes.c.checked_ms.desc(), probes.c.id.desc())
                .limit(window)
            )
            p50, p90, p99 = percentiles([r.latency_ms for r in recent])

            def measured(record: TargetRecord, ejected: int, total: int) -> TargetRecord:
                return change(replace(record, p50_ms=p50, p90_ms=p90, p99_ms=p99), ejected, total)

            return await self._change(conn, key, measured, keys, result.checked)

    async def history(self, key: Key, limit: int) -> list[ProbeResult]:
        """The newest probes of `key`, newest first."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(probes)
                .where(and_(probes.c.provider == key[0], probes.c.base_url == key[1]))
                .order_by(probes.c.checked_ms.desc(), probes.c.id.desc())
                .limit(limit)
            )
            return [ProbeResult(r.ok, r.latency_ms, r.http_status, r.error, _seconds(r.checked_ms)) for r in rows]

    async def prune(self, before: float) -> int:
        """Delete probe history older than `before`; returns how many rows went."""
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(probes).where(probes.c.checked_ms < to_ms(before)))
        return int(result.rowcount)

    # maintenance

    async def holds(self) -> dict[str, Hold]:
        """The providers an admin holds down or up, by name."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(maintenance))
            return {r.provider: Hold(r.provider, r.state, r.reason, r.actor, _seconds(r.at_ms)) for r in rows}

    async def set_hold(self, provider: str, state: str, reason: str, actor: str, now: float) -> None:
        """Hold `provider` down or up (`auto`: release it) and append the change to the audit trail, at once."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(maintenance).where(maintenance.c.provider == provider))
            if state != "auto":
                await conn.execute(
                    insert(maintenance).values(
                        provider=provider, state=state, reason=reason, actor=actor, at_ms=to_ms(now)
                    )
                )
            await conn.execute(
                insert(maintenance_audit).values(
                    provider=provider, state=state, reason=reason, actor=actor, at_ms=to_ms(now)
                )
            )

    async def maintenance_log(self, provider: str, limit: int) -> list[MaintenanceChange]:
        """The newest maintenance changes (of `provider`, or all when empty), newest first."""
        query = select(maintenance_audit).order_by(maintenance_audit.c.id.desc()).limit(limit)
        if provider:
            query = query.where(maintenance_audit.c.provider == provider)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
            return [MaintenanceChange(r.id, r.provider, r.state, r.reason, r.actor, _seconds(r.at_ms)) for r in rows]
