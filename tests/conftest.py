"""Fixtures shared by every test: real PostgreSQL and Redis, each test run in its own database.

PostgreSQL and Redis come from TOLLGATE_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test)
and TOLLGATE_TEST_REDIS_URL (default redis://127.0.0.1:6379/0). Unreachable, they skip the tests that need
them and say why; with CI=true they fail the run instead.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import pytest

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")

POSTGRES_URL = os.environ.get("TOLLGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TOLLGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _unsigned_process() -> Iterator[None]:
    """A test that makes this process sign its calls (as the gateway's app does) leaves it unsigned again, and one
    that runs a route's code in this process (which may act for an admin) leaves it acting for nobody."""
    from services.runtime import identity

    with identity.acting_for_nobody():
        yield
    identity.use(None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unavailable(what: str, url: str, exc: BaseException) -> None:
    reason = f"{what} unreachable at {urlsplit(url).hostname}:{urlsplit(url).port}: {type(exc).__name__}: {exc}"
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test (dropped afterwards); plain postgresql:// URL."""
    name = f"tollgate_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(POSTGRES_URL, f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        _unavailable("PostgreSQL", POSTGRES_URL, exc)
    try:
        yield _with_database(POSTGRES_URL, name)
    finally:
        asyncio.run(_admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis, with a key prefix unique to this test in `TOLLGATE_TEST_REDIS_PREFIX` style: use
    `redis_prefix` for keys and they are deleted afterwards."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=3)
    try:
        client.ping()
    except Exception as exc:
        _unavailable("Redis", REDIS_URL, exc)
    yield REDIS_URL
    client.close()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    import redis

    prefix = f"tollgate-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, every finished span kept in memory; off again afterwards."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from services.runtime import tracing
    from services.runtime.settings import CommonSettings

    exporter = InMemorySpanExporter()
    tracing.setup("test", CommonSettings(), exporter)
    yield exporter
    tracing._state["enabled"] = False
