"""SQLite files of the embedded mode are their owner's alone; its engine runs statements inline, one at a time."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from services.runtime.db import create_engine, ping


async def test_sqlite_files_are_created_0600_in_a_0700_folder(tmp_path: Path) -> None:
    path = tmp_path / "data" / "credits.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        assert await ping(engine)
    finally:
        await engine.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for extra in (path.with_name("credits.db-wal"), path.with_name("credits.db-shm")):
        if extra.exists():
            assert stat.S_IMODE(extra.stat().st_mode) == 0o600


async def test_an_existing_readable_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "keyvault.db"
    path.touch()
    os.chmod(path, 0o644)
    engine = create_engine(f"sqlite:///{path}")
    await engine.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_sqlite_statements_run_on_the_event_loop_thread_over_one_connection(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'inline.db'}")
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            threads: list[int] = []

            def whose() -> int:
                threads.append(threading.get_ident())
                return 1

            assert raw.driver_connection is not None
            raw.driver_connection._conn.create_function("whose", 0, whose)
            await conn.execute(text("SELECT whose()"))
        assert threads == [threading.get_ident()]  # no hop to aiosqlite's worker thread
        pool: Any = engine.pool
        assert (pool.size(), pool._max_overflow) == (1, 0)
    finally:
        await engine.dispose()


async def test_concurrent_sqlite_transactions_queue_instead_of_meeting_the_lock(tmp_path: Path) -> None:
    """Read-modify-write transactions that yield in the middle: every one lands, none waits on SQLite's lock."""
    engine = create_engine(f"sqlite:///{tmp_path / 'queue.db'}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE n (v INTEGER NOT NULL)"))
            await conn.execute(text("INSERT INTO n VALUES (0)"))

        async def bump() -> None:
            async with engine.begin() as conn:
                value = (await conn.execute(text("SELECT v FROM n"))).scalar_one()
                await asyncio.sleep(0.001)
                await conn.execute(text("UPDATE n SET v = :v"), {"v": value + 1})

        started = time.monotonic()
        await asyncio.gather(*(bump() for _ in range(40)))
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT v FROM n"))).scalar_one() == 40
        assert time.monotonic() - started < 5  # no busy-handler back-offs (up to 100 ms each) stacked up
    finally:
        await engine.dispose()
