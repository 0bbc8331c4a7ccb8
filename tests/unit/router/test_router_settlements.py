"""A delivered answer is paid for: a settle credits cannot take is kept, survives the router, and lands once.

Holds live as long as their request may (plus a margin), not for the ledger's fixed TTL.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.router.catalog import Catalog
from services.router.clients import SELF, Funds, Hold, Payer
from services.router.health_view import HealthView
from services.router.pipeline import Caller, Router, Settings
from services.router.request import parse
from services.router.settlements import Owed, Settlements, read_owed
from services.runtime.channels import Deadline
from services.runtime.errors import DomainError
from tollgate.credits.v1 import credits_pb2

from .conftest import FakeLedger, FakeVault

CHAT = {"messages": [{"role": "user", "content": "hello there friend"}], "model": "echo"}


@dataclass
class FlakyLedger(FakeLedger):
    """Credits that is away (`down`) for settles, and counts every settle it did take, by key."""

    down: str = ""  # the error code settles fail with while set
    ttls: list[int] = field(default_factory=list)
    landed: dict[str, int] = field(default_factory=dict)

    async def reserve(
        self,
        user_id: str,
        amount_micro: int,
        key: str,
        request_id: str,
        ttl_seconds: int,
        timeout: float,
        payer: Payer = SELF,
    ) -> Hold:
        self.ttls.append(ttl_seconds)
        return await super().reserve(user_id, amount_micro, key, request_id, ttl_seconds, timeout, payer)

    async def settle(
        self, hold_id: str, amount_micro: int, key: str, usage: credits_pb2.UsageRecord, timeout: float
    ) -> Funds:
        if self.down:
            raise DomainError(self.down, "the credits service is unavailable; try again shortly")
        if key in self.landed:  # credits answers a repeat with its first result
            return Funds(self.available, False)
        self.landed[key] = amount_micro
        return await super().settle(hold_id, amount_micro, key, usage, timeout)


def caller(seconds: float = 10.0) -> Caller:
    return Caller(request_id=uuid.uuid4().hex, user_id="u1", key_id="k1", deadline=Deadline(seconds))


def make_router(
    catalog: Catalog, ledger: FlakyLedger, folder: Path | None, after_answer: bool = True, sync: bool = True
) -> Router:
    settings = Settings(default_power_level="BALANCED", hold_ttl_margin_seconds=30, settle_after_answer=after_answer)
    journal = Settlements(ledger, folder, sync=sync)
    return Router(catalog, settings, ledger, FakeVault(), HealthView(), settlements=journal)


async def test_a_settle_credits_cannot_take_is_owed_and_lands_once(pipeline_catalog: Catalog, tmp_path: Path) -> None:
    ledger = FlakyLedger(down="service_unavailable")
    router = make_router(pipeline_catalog, ledger, tmp_path)
    try:
        body, outcome = await router.complete(parse("chat", orjson.dumps(CHAT)), caller())
        assert orjson.loads(body)["choices"][0]["message"]["content"] == "echo: hello there friend"
        assert outcome.cost_micro > 0 and ledger.landed == {}
        reserved = next(key for kind, key, _ in ledger.calls if kind == "reserve")
        assert list(router.settlements.owed) == [reserved.replace(":reserve", ":settle")]
        assert await router.settlements.repeat_once() is False  # still away: still owed
        ledger.down = ""
        assert await router.settlements.repeat_once() is True
        assert list(ledger.landed.values()) == [outcome.cost_micro] and not router.settlements.owed
        assert await router.settlements.repeat_once() is True
        assert len(ledger.landed) == 1 and ledger.charged() == [outcome.cost_micro]
    finally:
        await router.close()


async def test_owed_settles_survive_the_router(pipeline_catalog: Catalog, tmp_path: Path) -> None:
    ledger = FlakyLedger(down="timeout")
    router = make_router(pipeline_catalog, ledger, tmp_path)
    _, outcome = await router.complete(parse("chat", orjson.dumps(CHAT)), caller())
    await router.close()
    mine = tmp_path / f"settles-{os.getpid()}.jsonl"
    # The router is killed: its file stays behind, unlocked, under another process's name.
    shutil.copy(mine, tmp_path / "settles-1.jsonl")
    router.settlements.close()
    mine.unlink()
    assert [e.amount_micro for e in read_owed(tmp_path / "settles-1.jsonl")] == [outcome.cost_micro]

    ledger.down = ""
    after = Settlements(ledger, tmp_path)
    try:
        assert [e.amount_micro for e in after.owed.values()] == [outcome.cost_micro]
        assert not (tmp_path / "settles-1.jsonl").exists()
        assert await after.repeat_once() is True
        assert ledger.charged() == [outcome.cost_micro]
    finally:
        after.close()
    again = Settlements(ledger, tmp_path)  # nothing is owed twice
    assert again.owed == {}
    again.close()


async def test_a_stream_whose_settle_fails_still_ends_whole(pipeline_catalog: Catalog, tmp_path: Path) -> None:
    ledger = FlakyLedger(down="service_unavailable")
    router = make_router(pipeline_catalog, ledger, tmp_path)
    try:
        events = [e async for e in router.stream(parse("chat", orjson.dumps({**CHAT, "stream": True})), caller())]
        kinds = [e.WhichOneof("event") for e in events]
        assert "error" not in kinds and kinds[-1] == "outcome"
        assert len(router.settlements.owed) == 1
        ledger.down = ""
        assert await router.settlements.repeat_once() is True
        assert ledger.charged() == [events[-1].outcome.cost_micro]
    finally:
        await router.close()


async def test_a_refused_settle_is_not_repeated(pipeline_catalog: Catalog, tmp_path: Path) -> None:
    """Settled before the answer, a refusal fails the request; settled after it, the refusal is logged."""
    ledger = FlakyLedger(down="conflict")
    router = make_router(pipeline_catalog, ledger, tmp_path, after_answer=False)
    try:
        with pytest.raises(DomainError) as err:
            await router.complete(parse("chat", orjson.dumps(CHAT)), caller())
        assert err.value.code == "conflict" and not router.settlements.owed
    finally:
        await router.close()
    router.settlements.close()
    later = make_router(pipeline_catalog, ledger, tmp_path / "later")
    try:
        await later.complete(parse("chat", orjson.dumps(CHAT)), caller())
        await later.settlements.drain(5)
        assert not later.settlements.owed and not ledger.landed
        assert read_owed(tmp_path / "later" / f"settles-{os.getpid()}.jsonl") == []
    finally:
        await later.close()
        later.settlements.close()


@pytest.mark.parametrize(("seconds", "ttl"), [(10.0, 40), (600.0, 630), (5000.0, 900)])
async def test_a_hold_lives_as_long_as_its_request(
    pipeline_catalog: Catalog, tmp_path: Path, seconds: float, ttl: int
) -> None:
    ledger = FlakyLedger()
    router = make_router(pipeline_catalog, ledger, None)
    try:
        await router.complete(parse("chat", orjson.dumps(CHAT)), caller(seconds))
        assert ledger.ttls == [ttl]
    finally:
        await router.close()


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "settles-7.jsonl"
    usage: Any = credits_pb2.UsageRecord(request_id="r1", status="ok")
    whole = Owed("h1", 5, "k1:1:settle", usage).line()
    path.write_bytes(whole + b"\n" + whole[:20])
    assert [e.key for e in read_owed(path)] == ["k1:1:settle"]


@dataclass
class GatedLedger(FlakyLedger):
    """Credits that takes settles only once `gate` is open."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def settle(
        self, hold_id: str, amount_micro: int, key: str, usage: credits_pb2.UsageRecord, timeout: float
    ) -> Funds:
        await self.gate.wait()
        return await super().settle(hold_id, amount_micro, key, usage, timeout)


def count_syncs(monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> list[int]:
    synced: list[int] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        if fail:
            raise OSError(5, "Input/output error")
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return synced


async def test_an_answer_goes_out_once_its_settle_is_on_disk(
    pipeline_catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = count_syncs(monkeypatch)
    ledger = GatedLedger(available=10**9)
    router = make_router(pipeline_catalog, ledger, tmp_path)
    try:
        _, outcome = await router.complete(parse("chat", orjson.dumps(CHAT)), caller())
        # Answered while credits has not taken the settle: it is in the journal, synced, and the hold stands.
        assert ledger.landed == {} and len(ledger.holds) == 1 and synced
        owed = read_owed(tmp_path / f"settles-{os.getpid()}.jsonl")
        assert [e.amount_micro for e in owed] == [outcome.cost_micro]
        held = next(amount for kind, _, amount in ledger.calls if kind == "reserve")
        assert outcome.credits_remaining_micro == 10**9 - outcome.cost_micro
        assert held > outcome.cost_micro > 0
        ledger.gate.set()
        await router.settlements.drain(5)
        assert ledger.charged() == [outcome.cost_micro] and not ledger.holds
        assert read_owed(tmp_path / f"settles-{os.getpid()}.jsonl") == []
    finally:
        await router.close()
        router.settlements.close()


async def test_settles_written_together_share_one_sync(
    pipeline_catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = count_syncs(monkeypatch)
    ledger = FlakyLedger(available=10**9)
    router = make_router(pipeline_catalog, ledger, tmp_path)
    try:
        outcomes = await asyncio.gather(
            *(router.complete(parse("chat", orjson.dumps(CHAT)), caller()) for _ in range(30))
        )
        await router.settlements.drain(5)
        assert sorted(ledger.charged()) == sorted(o.cost_micro for _, o in outcomes)
        assert 1 <= len(synced) < 30
        # And what queued up while a call to credits was out went in the next call: fewer calls than settles.
        assert sum(ledger.batches) == 30 and len(ledger.batches) < 30
    finally:
        await router.close()
        router.settlements.close()


async def test_a_journal_that_cannot_sync_settles_before_the_answer(
    pipeline_catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count_syncs(monkeypatch, fail=True)
    ledger = FlakyLedger(available=10**9)
    router = make_router(pipeline_catalog, ledger, tmp_path)
    try:
        _, outcome = await router.complete(parse("chat", orjson.dumps(CHAT)), caller())
        assert ledger.charged() == [outcome.cost_micro] and not ledger.holds  # settled before it returned
        assert read_owed(tmp_path / f"settles-{os.getpid()}.jsonl") == []
    finally:
        await router.close()
        router.settlements.close()


async def test_without_sync_an_answer_waits_for_no_disk(
    pipeline_catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = count_syncs(monkeypatch)
    ledger = GatedLedger(available=10**9)
    router = make_router(pipeline_catalog, ledger, tmp_path, sync=False)
    try:
        _, outcome = await router.complete(parse("chat", orjson.dumps(CHAT)), caller())
        assert ledger.landed == {} and not synced  # answered, settle in the journal (not synced), not landed
        assert [e.amount_micro for e in read_owed(tmp_path / f"settles-{os.getpid()}.jsonl")] == [outcome.cost_micro]
        ledger.gate.set()
        await router.settlements.drain(5)
        assert ledger.charged() == [outcome.cost_micro]
    finally:
        await router.close()
        router.settlements.close()


@dataclass
class AwayLedger(FlakyLedger):
    """Credits whose SettleBatch call fails as a whole while `away` (unreachable), though Settle works."""

    away: bool = True
    code: str = "service_unavailable"

    async def settle_many(self, settles: list[credits_pb2.SettleRequest], timeout: float) -> list[Funds | DomainError]:
        if self.away:
            raise DomainError(self.code, "the call failed as a whole")
        return await super().settle_many(settles, timeout)


@pytest.mark.parametrize("code", ["service_unavailable", "unauthenticated", "permission_denied"])
async def test_a_batch_credits_cannot_take_is_owed_whole_and_lands_once(
    pipeline_catalog: Catalog, tmp_path: Path, code: str
) -> None:
    """A call that fails as a whole says nothing of any one settle: every answered one stays owed."""
    ledger = AwayLedger(available=10**9, code=code)
    router = make_router(pipeline_catalog, ledger, tmp_path, sync=False)
    try:
        outcomes = await asyncio.gather(
            *(router.complete(parse("chat", orjson.dumps(CHAT)), caller()) for _ in range(5))
        )
        await router.settlements.drain(5)
        assert len(router.settlements.owed) == 5 and ledger.landed == {}
        assert len(read_owed(tmp_path / f"settles-{os.getpid()}.jsonl")) == 5
        ledger.away, ledger.down = False, ""
        assert await router.settlements.repeat_once() is True
        assert await router.settlements.repeat_once() is True
        assert sorted(ledger.charged()) == sorted(o.cost_micro for _, o in outcomes)
        assert read_owed(tmp_path / f"settles-{os.getpid()}.jsonl") == []
    finally:
        await router.close()
        router.settlements.close()


@dataclass
class StuckLedger(FlakyLedger):
    """Credits that keeps failing one hold's settle (`stuck`) and takes the others."""

    stuck: str = ""

    async def settle(
        self, hold_id: str, amount_micro: int, key: str, usage: credits_pb2.UsageRecord, timeout: float
    ) -> Funds:
        if hold_id == self.stuck:
            raise DomainError("internal_error", "internal error")
        return await super().settle(hold_id, amount_micro, key, usage, timeout)


async def test_one_settle_credits_keeps_failing_does_not_hold_back_the_others(
    pipeline_catalog: Catalog, tmp_path: Path
) -> None:
    ledger = StuckLedger(down="service_unavailable")
    router = make_router(pipeline_catalog, ledger, tmp_path, sync=False)
    try:
        for _ in range(4):
            await router.complete(parse("chat", orjson.dumps(CHAT)), caller())
        await router.settlements.drain(5)
        owed = list(router.settlements.owed.values())
        assert len(owed) == 4
        ledger.down, ledger.stuck = "", owed[0].hold_id  # the first in line keeps failing
        assert await router.settlements.repeat_once() is False
        assert list(router.settlements.owed) == [owed[0].key] and len(ledger.landed) == 3
        ledger.stuck = ""
        assert await router.settlements.repeat_once() is True
        assert not router.settlements.owed and len(ledger.landed) == 4
    finally:
        await router.close()
        router.settlements.close()


class HalfSlowLedger:
    """Credits that holds on to the settles whose key starts with `fat` until `gate` opens."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def settle(
        self, hold_id: str, amount_micro: int, key: str, usage: credits_pb2.UsageRecord, timeout: float
    ) -> Funds:
        if key.startswith("fat"):
            await self.gate.wait()
        return Funds(1, False)

    async def settle_many(self, settles: list[credits_pb2.SettleRequest], timeout: float) -> list[Funds | DomainError]:
        return [await self.settle(s.hold_id, s.amount_micro, s.idempotency_key, s.usage, timeout) for s in settles]


async def test_fat_settles_in_flight_do_not_make_every_settle_rewrite_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client's biggest attribution (16 tags of 512 characters) on settles credits is slow to take: once their
    lines alone pass the compaction size, each later settle must not rewrite them all again."""
    truncations: list[int] = []
    real = os.ftruncate

    def ftruncate(fd: int, length: int) -> None:
        truncations.append(length)
        real(fd, length)

    monkeypatch.setattr(os, "ftruncate", ftruncate)
    ledger = HalfSlowLedger()
    journal = Settlements(ledger, tmp_path)  # type: ignore[arg-type]
    fat = credits_pb2.UsageRecord(user_id="m", end_user="e" * 256, tags={f"t{i}": "\u20ac" * 512 for i in range(16)})
    try:
        for n in range(60):
            assert await journal.settle_later(f"hf{n}", 1, f"fat{n}", fat, 5)
        for n in range(300):
            await journal.settle(f"h{n}", 1, f"k{n}", fat, 5)
        path = tmp_path / f"settles-{os.getpid()}.jsonl"
        assert sorted(e.key for e in read_owed(path)) == sorted(f"fat{n}" for n in range(60))
        assert 1 <= len(truncations) <= 3, len(truncations)
        ledger.gate.set()
        await journal.drain(5)
        assert read_owed(path) == []
    finally:
        journal.close()
