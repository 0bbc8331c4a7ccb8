"""`tollgate credits reconcile`: passes on a clean ledger, exits non-zero on a tampered one (both databases)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from services.cli.__main__ import main as cli
from services.credits import holds
from services.credits.__main__ import MIGRATIONS, VERSION_TABLE
from services.credits.ledger import Ledger, Policy
from services.credits.usage import UsageEntry
from services.runtime.db import create_engine, migrate


async def _activity(url: str) -> None:
    engine = create_engine(url)
    await migrate(engine, MIGRATIONS, VERSION_TABLE)
    ledger = Ledger(engine, Policy(default_grant_micro=5_000_000))
    for n in range(3):
        hold_id, _ = await holds.reserve(ledger, f"u{n}", 2_000_000, f"r{n}:reserve", f"r{n}")
        await holds.settle(
            ledger,
            hold_id,
            2_500_000 + 2_000_000 * n,
            f"r{n}:settle",
            UsageEntry(request_id=f"r{n}", user_id=f"u{n}", model="m"),
        )
    await holds.reserve(ledger, "u0", 1_000_000, "open:reserve", "open")
    free_id, _ = await holds.reserve(ledger, "u0", 0, "free:reserve", "free")
    await holds.settle(ledger, free_id, 0, "free:settle", UsageEntry(request_id="free", user_id="u0", model="gratis"))
    await ledger.close()
    await engine.dispose()


async def _sql(url: str, statement: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text(statement))
    await engine.dispose()


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE accounts SET balance_micro = balance_micro + 1 WHERE user_id = 'u1'",
        "UPDATE holds SET status = 'released' WHERE request_id = 'open'",
        "UPDATE usage SET cost_micro = cost_micro - 1 WHERE request_id = 'r2'",
        "DELETE FROM billing_events WHERE transaction_id = 'r0'",
        "DELETE FROM journal WHERE kind = 'overdraft'",
        # A provider call (a free one: no money moved) whose usage row is gone.
        "DELETE FROM usage WHERE request_id = 'free'",
        # A served answer that no hold accounts for.
        "INSERT INTO usage (request_id, user_id, api_key_id, model, provider, deployment, power_level, route, "
        "prompt_tokens, completion_tokens, cost_micro, latency_ms, status, byok, cache_hit, fallback_count, "
        "usage_estimated, created_at) VALUES ('ghost', 'u1', '', 'm', 'p', 'm', '', 'chat', 5, 5, 0, 1.0, 'ok', "
        "false, false, 0, false, 0)",
        # A pending hold that already has its usage row.
        "UPDATE holds SET status = 'pending' WHERE request_id = 'free'",
    ],
)
def test_reconcile_passes_clean_and_fails_tampered(
    credits_url: str, tamper: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_activity(credits_url))
    assert cli(["credits", "reconcile", "--database-url", credits_url]) == 0
    assert "ledger consistent" in capsys.readouterr().out
    asyncio.run(_sql(credits_url, tamper))
    assert cli(["credits", "reconcile", "--database-url", credits_url]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_reconcile_unreadable_database_is_an_error(tmp_path: Path) -> None:
    assert cli(["credits", "reconcile", "--database-url", f"sqlite:///{tmp_path / 'missing.db'}"]) == 2
