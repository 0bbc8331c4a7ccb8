"""Migration 0002 builds what `schema.py` declares for teams, members and key policies (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

from services.keyvault.schema import metadata

OURS = {"teams", "team_members"}


def _about_ours(diff: Any) -> bool:
    text = repr(diff)
    return any(f"'{t}'" in text or f"Table('{t}'" in text for t in OURS) or "'policy'" in text


async def test_the_teams_migration_matches_the_schema(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        diffs = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
    assert [d for d in diffs if _about_ours(d)] == []
