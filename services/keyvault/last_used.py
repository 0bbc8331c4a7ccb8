"""`last_used` timestamps written off the request path: marked in memory, flushed in batches.

A key is written at most once per `interval` seconds, so `Authenticate` and `GetProviderKey` stay one
indexed read each, however hot the key.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import Table, bindparam, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime.db import unreachable

log = logging.getLogger("tollgate.keyvault.last_used")


class LastUsed:
    """Pending `last_used_at` writes for one table whose rows are named by `key_id`."""

    def __init__(self, engine: AsyncEngine, table: Table, interval: float = 60.0) -> None:
        self.engine = engine
        self.table = table
        self.interval = interval
        self._pending: dict[str, int] = {}
        self._written: dict[str, float] = {}

    def touch(self, key_id: str, at_ms: int) -> None:
        if time.monotonic() - self._written.get(key_id, -1e12) >= self.interval:
            self._pending[key_id] = at_ms

    async def flush(self) -> int:
        """Write what is pending; returns how many keys were written."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        statement = update(self.table).where(self.table.c.key_id == bindparam("k")).values(last_used_at=bindparam("at"))
        try:
            async with self.engine.begin() as conn:
                await conn.execute(statement, [{"k": k, "at": at} for k, at in batch.items()])
        except BaseException:
            self._pending = {**batch, **self._pending}
            raise
        stamp = time.monotonic()
        for key_id in batch:
            self._written[key_id] = stamp
        return len(batch)

    async def run(self, every: float = 5.0) -> None:
        """Background task: flush every few seconds until cancelled."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.flush()
            except Exception as exc:
                if not unreachable(exc):  # an outage is logged once, by the runtime
                    log.warning("could not record last use of keys: %s", type(exc).__name__)
