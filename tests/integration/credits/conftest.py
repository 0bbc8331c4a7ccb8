"""Fixtures of the credits tests: the ledger on a migrated database, SQLite in a tmp dir and real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.credits.__main__ import MIGRATIONS, VERSION_TABLE
from services.credits.ledger import Ledger, Policy
from services.runtime.db import create_engine, migrate

MICRO = 1_000_000
POLICY = Policy(default_grant_micro=10 * MICRO, low_threshold_micro=2 * MICRO, hold_ttl_seconds=60)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def credits_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'credits.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def ledger(credits_url: str) -> AsyncIterator[Ledger]:
    engine = create_engine(credits_url, pool_size=20)
    await migrate(engine, MIGRATIONS, VERSION_TABLE)
    yield Ledger(engine, POLICY)
    await engine.dispose()
