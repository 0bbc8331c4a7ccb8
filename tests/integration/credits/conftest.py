"""Fixtures of the credits tests: the ledger on a migrated database, SQLite in a tmp dir and real PostgreSQL.

`ledger` runs every test three ways: SQLite (the Python path), PostgreSQL as production runs it (one
database function per operation, `procedures`) and PostgreSQL on the Python path, so both paths
answer the same cases on the same database.
"""

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


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("postgres-python", marks=pytest.mark.postgres),
    ]
)
def ledger_backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(database URL, path): the path is "procedures" on PostgreSQL as production runs it, else "python"."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'credits.db'}", "python"
    url = str(request.getfixturevalue("postgres_url"))
    return url, "procedures" if request.param == "postgres" else "python"


@pytest.fixture
async def ledger(ledger_backend: tuple[str, str]) -> AsyncIterator[Ledger]:
    url, path = ledger_backend
    engine = create_engine(url, pool_size=20)
    await migrate(engine, MIGRATIONS, VERSION_TABLE)
    ledger = Ledger(engine, POLICY, procedures=path == "procedures")
    assert (ledger.procedures is not None) == (path == "procedures")
    yield ledger
    await ledger.close()
    await engine.dispose()
