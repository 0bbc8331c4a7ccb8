"""Fixtures of keyvault's unit tests: a migrated database on SQLite and on PostgreSQL, master-key rings."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.keyvault.bootstrap import MIGRATIONS, VERSION_TABLE
from services.keyvault.masterkeys import KeyRing
from services.runtime.db import create_engine, migrate


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def keyvault_db_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path}/keyvault.db"


@pytest.fixture
async def engine(keyvault_db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(keyvault_db_url)
    await migrate(engine, MIGRATIONS, VERSION_TABLE)
    yield engine
    await engine.dispose()


@pytest.fixture
def ring_v1() -> KeyRing:
    return KeyRing(keys={1: os.urandom(32)}, active=1)
