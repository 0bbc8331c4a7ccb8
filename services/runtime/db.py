"""Database engines and migrations for the services that own data (credits, keyvault, health).

PostgreSQL (asyncpg) in production, SQLite (aiosqlite, WAL) in the embedded default. Each service keeps
its Alembic scripts in its own `migrations/` folder and its own version table, so two services can even
share one database without touching each other's tables. SQLite files are readable by their owner only
(0600, in a 0700 folder when tollgate creates it); SQLite gives its -wal and -shm files the same mode.

A database that stops answering is an outage, not a bug: calls that meet it answer `service_unavailable`
(503 with `Retry-After` at the edge) instead of a logged traceback each, and the log says once that the
database is unreachable and once that it is back (`outage`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy import event, exc, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.runtime import errors

log = logging.getLogger("tollgate.db")
# How long a client waits before trying again while the database is away.
RETRY_AFTER_SECONDS = 2


def _driver_gone(err: BaseException) -> bool:
    """asyncpg's own "the server is not there" errors, without importing asyncpg where it is not installed."""
    names = {cls.__name__ for cls in type(err).__mro__}
    return bool(names & {"PostgresConnectionError", "InterfaceError", "CannotConnectNowError", "AdminShutdownError"})


def unreachable(err: BaseException) -> bool:
    """Whether `err` says the database is not there (refused, cut, shutting down) rather than a query's fault."""
    seen: set[int] = set()
    found: BaseException | None = err
    while found is not None and id(found) not in seen:
        seen.add(id(found))
        if isinstance(found, exc.DBAPIError) and found.connection_invalidated:
            return True
        if isinstance(found, (exc.InterfaceError, exc.DisconnectionError, ConnectionError, TimeoutError)):
            return True
        if isinstance(found, OSError) or _driver_gone(found):
            return True
        if isinstance(found, exc.OperationalError) and "locked" not in str(found):
            return True
        found = found.__cause__ or found.__context__
    return False


class Outage:
    """Whether this process's database is away; says so once when it goes and once when it is back."""

    def __init__(self) -> None:
        self.down = False

    def went(self, err: BaseException) -> None:
        if not self.down:
            self.down = True
            log.error("database unreachable (%s); answering 503 until it is back", type(err).__name__)

    def back(self) -> None:
        if self.down:
            self.down = False
            log.warning("database reachable again")


outage = Outage()


def _unavailable(err: Exception) -> errors.DomainError | None:
    if not unreachable(err):
        return None
    outage.went(err)
    refusal = errors.DomainError("service_unavailable", "the database is unreachable; try again shortly")
    refusal.headers = {"retry-after": str(RETRY_AFTER_SECONDS)}
    return refusal


errors.TRANSLATORS.append(_unavailable)


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` and `sqlite:///` URLs and pick the async driver."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.split(":///", 1)[1]
    return url


def private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 if it does not exist, or take away others' access if it does."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for found in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if found.exists() and found.stat().st_mode & 0o077:
            os.chmod(found, 0o600)


class _InlineSqlite(aiosqlite.Connection):
    """aiosqlite, but each call runs on the calling (event loop) thread instead of a hop to its worker thread.

    A SQLite statement of ours takes microseconds (WAL, `synchronous=NORMAL`: a commit writes the WAL without an
    fsync), while the hop to aiosqlite's thread and back (queue, futex wake-up, loop wake-up, GIL hand-over) costs
    more than the statement, a dozen times per reserve+settle. Opening and closing still go through the thread.
    The price: while another process holds the write lock (an operator's CLI command), the loop waits in
    SQLite's busy handler instead of serving other calls; those transactions are a few milliseconds.
    """

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        result = fn(*args, **kwargs)
        # Still a point where the loop runs other tasks and a cancellation lands, as the awaited hop was.
        await asyncio.sleep(0)
        return result


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            private_file(Path(parsed.database))
        database = parsed.database or ":memory:"

        # One connection per process, calls inline (`_InlineSqlite`): SQLite has one writer anyway, and every
        # transaction here takes the write lock up front (`BEGIN IMMEDIATE`, below). With a pool of several,
        # concurrent transactions of one service met the lock and slept in SQLite's busy handler (1, 2, 5 … 100 ms
        # back-offs), which at concurrency 32 gave p99s above a second; queued on the pool instead, they wait
        # in order for exactly as long as the transactions ahead of them take. Other processes (the CLI, another
        # service's migration) still meet the busy timeout.
        async def _connect() -> Any:
            conn = _InlineSqlite(partial(sqlite3.connect, database, timeout=30, check_same_thread=False), 64)
            return await conn

        engine = create_async_engine(url, async_creator=_connect, pool_size=1, max_overflow=0, pool_timeout=60)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        # pysqlite's own transaction handling defers BEGIN; emit it ourselves so that
        # `BEGIN IMMEDIATE` takes the write lock up front and guarded updates stay atomic.
        @event.listens_for(engine.sync_engine, "connect")
        def _no_autobegin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


async def ping(engine: AsyncEngine) -> bool:
    """The readiness check: the database answers (marks an outage over, or begun)."""
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as err:
        if unreachable(err):
            outage.went(err)
        raise
    outage.back()
    return True


def _alembic_config(migrations: Path, version_table: str) -> Any:
    # Imported here: alembic costs every service memory it needs only for the moment of migrating.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    cfg.attributes["version_table"] = version_table
    return cfg


async def migrate(engine: AsyncEngine, migrations: Path, version_table: str) -> None:
    """Upgrade the schema to the newest revision (idempotent, safe to run at every start)."""
    from alembic import command

    cfg = _alembic_config(migrations, version_table)

    def upgrade(conn: Connection) -> None:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")

    async with engine.begin() as conn:
        await conn.run_sync(upgrade)
    log.info("schema at head (%s)", version_table)


def run_migrations_env() -> None:
    """The body of every service's `migrations/env.py`: run against the connection `migrate` passes in."""
    from alembic import context

    cfg = context.config
    conn = cfg.attributes["connection"]
    context.configure(
        connection=conn,
        version_table=cfg.attributes["version_table"],
        render_as_batch=conn.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
