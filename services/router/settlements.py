"""Settlements owed: a settle that did not land is kept on disk and repeated until credits takes it.

A delivered answer is paid for. Before the router asks credits to settle a hold it appends the settle
(hold, amount, ledger key, usage row) to its journal, and marks it done once credits answered. A settle
that failed because credits or its database was away stays owed: a background task repeats it with
back-off until it lands. Repeating is safe: credits settles a hold once per key and answers a repeat with
its first result, and a hold its sweeper expired meanwhile is still charged (an explicit overdraft when
the money is gone). A router killed between the answer and the settle finds the entry at its next start.

Settling after the answer (`settle_later`): the settle is journaled (with `sync`, also synced to disk:
one fdatasync for all the settles written meanwhile, a group commit off the event loop), then the answer
goes out while credits takes the settle. Until it lands the hold still covers the request's worst case, so
nothing can be spent twice; a router (with `sync`, its machine too) that dies in between leaves the settle
in the journal. Without a journal (no folder) a settle is always made before the answer.

Each process appends to its own `settles-<pid>.jsonl` under an exclusive lock; at start it adopts the
files of processes that are gone, so replicas sharing a volume take over each other's debts. Lines not
synced survive the process (kill -9), not the machine.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from services.router.clients import Funds, Ledger
from services.router.telemetry import SETTLES_REFUSED
from services.runtime.errors import DomainError
from tollgate.credits.v1 import credits_pb2

log = logging.getLogger("tollgate.router.settlements")

# Answers that say "credits could not take it now", not "credits refuses it": repeated until they land.
RETRIED = frozenset({"service_unavailable", "timeout", "internal_error"})
_COMPACT_BYTES = 1 << 20
BATCH = 64  # settles per SettleBatch call at most (credits takes up to 256)


@dataclass(slots=True)
class Owed:
    hold_id: str
    amount_micro: int
    key: str
    usage: credits_pb2.UsageRecord

    def request(self) -> credits_pb2.SettleRequest:
        return credits_pb2.SettleRequest(
            hold_id=self.hold_id, amount_micro=self.amount_micro, idempotency_key=self.key, usage=self.usage
        )

    def line(self) -> bytes:
        usage = base64.b64encode(self.usage.SerializeToString()).decode()
        return orjson.dumps({"owe": self.key, "hold": self.hold_id, "amount": self.amount_micro, "usage": usage})

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Owed:
        usage = credits_pb2.UsageRecord.FromString(base64.b64decode(obj["usage"]))
        return cls(str(obj["hold"]), int(obj["amount"]), str(obj["owe"]), usage)


def read_owed(path: Path) -> list[Owed]:
    """The settles a journal file owes: written and never marked done (a torn last line is skipped)."""
    owed: dict[str, Owed] = {}
    for raw in path.read_bytes().splitlines():
        try:
            obj = orjson.loads(raw)
            if "done" in obj:
                owed.pop(str(obj["done"]), None)
            else:
                entry = Owed.parse(obj)
                owed[entry.key] = entry
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return list(owed.values())


class Settlements:
    """The router's settles: journaled, tried once in line, repeated in the background while owed."""

    def __init__(
        self,
        ledger: Ledger,
        folder: Path | None,
        rpc_timeout: float = 5.0,
        retry_max_seconds: float = 10.0,
        sync: bool = False,
    ) -> None:
        self.ledger = ledger
        self.rpc_timeout = rpc_timeout
        self.retry_max_seconds = retry_max_seconds
        self.sync = sync
        self.owed: dict[str, Owed] = {}
        self._settling: dict[str, Owed] = {}  # written and on their way to credits: their lines must stay
        self._queued: list[Owed] = []  # settles made after their answers, waiting for the lander's next call
        self._lander: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._written = 0  # lines written, and of those the ones known to be on disk
        self._synced = 0
        self._syncing: asyncio.Future[None] | None = None
        self._compact_at = _COMPACT_BYTES
        self._fd: int | None = None
        self._path: Path | None = None
        if folder is not None:
            try:
                self._open(folder)
            except OSError as exc:
                log.warning("no settle journal in %s (%s): owed settles are kept in memory only", folder, exc)

    def _open(self, folder: Path) -> None:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._path = folder / f"settles-{os.getpid()}.jsonl"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # A restarted container is often the same pid again: its own file may hold a predecessor's debts.
        self.owed = {entry.key: entry for entry in read_owed(self._path)}
        for other in sorted(folder.glob("settles-*.jsonl")):
            if other != self._path:
                self._adopt(other)
        if self.owed:
            log.warning("%d settles owed by an earlier router: repeating them until credits takes them", len(self.owed))

    def _adopt(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # its router is alive
            for entry in read_owed(path):
                self._write(entry.line())
                self.owed[entry.key] = entry
            path.unlink()
        finally:
            os.close(fd)

    def _write(self, line: bytes) -> None:
        if self._fd is not None:
            os.write(self._fd, line + b"\n")
            self._written += 1

    async def _durable(self) -> None:
        """Wait until every line written so far is on disk: one fdatasync, in a thread, for all of them."""
        if not self.sync or self._fd is None:
            return
        wanted = self._written
        while self._synced < wanted:
            if self._syncing is None:
                self._syncing = asyncio.ensure_future(self._fdatasync())
            await asyncio.shield(self._syncing)

    async def _fdatasync(self) -> None:
        upto = self._written
        try:
            await asyncio.get_running_loop().run_in_executor(None, os.fdatasync, self._fd)  # type: ignore[arg-type]
            self._synced = max(self._synced, upto)
        finally:
            self._syncing = None

    def _done(self, key: str) -> None:
        self._settling.pop(key, None)
        self._write(orjson.dumps({"done": key}))
        if not self.owed and self._fd is not None and os.fstat(self._fd).st_size > self._compact_at:
            # Compacted to the settles other requests still have on their way to credits; next time only once
            # the file has grown well past what they left, so that fat lines in flight cannot make every settle
            # rewrite them all.
            os.ftruncate(self._fd, 0)
            for entry in self._settling.values():
                self._write(entry.line())
            if self.sync:
                os.fdatasync(self._fd)
            self._compact_at = max(_COMPACT_BYTES, 4 * os.fstat(self._fd).st_size)

    async def settle(
        self, hold_id: str, amount_micro: int, key: str, usage: credits_pb2.UsageRecord, timeout: float
    ) -> Funds | None:
        """Settle the hold; when credits cannot take it now, keep the settle owed and answer None."""
        entry = Owed(hold_id, amount_micro, key, usage)
        self._settling[key] = entry
        self._write(entry.line())
        return await self._land(entry, timeout)

    async def settle_later(
        self, hold_id: str, amount_micro: int, key: str, usage: credits_pb2.UsageRecord, timeout: float
    ) -> bool:
        """Journal the settle, sync it to disk and make it in the background: True once the answer may go out.

        False when there is no journal to keep it (or the disk refused the sync): then settle in line.
        """
        if self._fd is None:
            return False
        entry = Owed(hold_id, amount_micro, key, usage)
        self._settling[key] = entry
        self._write(entry.line())
        try:
            await self._durable()
        except OSError as exc:
            self._settling.pop(key, None)
            log.warning("the settle journal could not be synced (%s): settling before the answer", exc)
            return False
        self._queued.append(entry)
        if self._lander is None or self._lander.done():
            self._lander = asyncio.ensure_future(self._land_queued(timeout))
        return True

    async def _land_queued(self, timeout: float) -> None:
        """Settle what is queued, in one call each time (what queued up while a call was out goes in the next)."""
        while self._queued:
            batch, self._queued = self._queued[:BATCH], self._queued[BATCH:]
            whole: DomainError | None = None
            try:
                requests = [entry.request() for entry in batch]
                results: list[Funds | DomainError] = await self.ledger.settle_many(requests, timeout)
            except Exception as exc:
                # The call failed as a whole (credits away, a refused identity, our own fault): that says nothing
                # of any one settle, and each was answered, so all stay owed and are repeated.
                whole = exc if isinstance(exc, DomainError) else DomainError("internal_error", str(exc))
                if whole.code not in RETRIED:
                    log.error("a call of %d settles failed (%s): kept and repeated", len(batch), whole.message)
                results = [whole] * len(batch)
            except BaseException:
                for entry in [*batch, *self._queued]:
                    self._owe(entry)
                self._queued = []
                raise
            if len(results) != len(batch):
                results = [DomainError("internal_error", "credits answered another number of settles")] * len(batch)
            landed = list(zip(batch, results, strict=True))
            try:
                for entry, result in landed:
                    if not isinstance(result, DomainError):
                        self._done(entry.key)
                    elif whole is not None or result.code in RETRIED:
                        self._owe(entry, result)
                    else:
                        self._done(entry.key)
                        SETTLES_REFUSED.inc()
                        log.error(
                            "answered, yet credits refused its settle (hold %s): %s", entry.hold_id, result.message
                        )
            except OSError as exc:  # the journal cannot be written: keep in memory what is not marked yet
                log.error("the settle journal cannot be written (%s)", exc)
                for entry, _ in landed:
                    if entry.key in self._settling:
                        self._owe(entry)

    async def _land(self, entry: Owed, timeout: float) -> Funds | None:
        key = entry.key
        try:
            funds = await self.ledger.settle(entry.hold_id, entry.amount_micro, key, entry.usage, timeout)
        except DomainError as err:
            if err.code not in RETRIED:
                self._done(key)
                raise
            self._owe(entry, err)
            return None
        except BaseException:
            self._owe(entry)  # cancelled or our own fault mid-call: the repeat finds out what happened
            raise
        self._done(key)
        return funds

    def _owe(self, entry: Owed, err: DomainError | None = None) -> None:
        """Keep a settle credits did not take (or may not have) for the repeat."""
        self._settling.pop(entry.key, None)
        if err is not None and not self.owed:
            log.warning("credits cannot settle now (%s): settles are kept and repeated until it can", err.message)
        self.owed[entry.key] = entry
        self._wake.set()

    async def drain(self, timeout: float) -> None:
        """At stop: wait for the settles made after their answers and try the owed ones once more, for at most
        `timeout` seconds; what credits has not taken by then stays in the journal for the next router."""
        deadline = asyncio.get_running_loop().time() + timeout
        if self._lander is not None and not self._lander.done():
            await asyncio.wait({self._lander}, timeout=timeout)
        left = deadline - asyncio.get_running_loop().time()
        if self.owed and left > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.repeat_once(), left)

    async def repeat(self) -> None:
        """Background: repeat every owed settle with back-off until each lands, forever."""
        delay = 0.2
        while True:
            if not self.owed:
                self._wake.clear()
                await self._wake.wait()
                delay = 0.2
            await asyncio.sleep(delay)
            delay = 0.2 if await self.repeat_once() else min(self.retry_max_seconds, delay * 2)

    async def repeat_once(self) -> bool:
        """Repeat each owed settle once, in batches; False when credits still could not take one.

        One settle credits keeps failing does not hold back the others behind it.
        """
        owed = list(self.owed.values())
        landed_all = True
        for start in range(0, len(owed), BATCH):
            batch = owed[start : start + BATCH]
            try:
                results = await self.ledger.settle_many([entry.request() for entry in batch], self.rpc_timeout)
            except DomainError:
                return False  # the call failed as a whole: nothing is known of any one settle
            if len(results) != len(batch):
                return False
            for entry, result in zip(batch, results, strict=True):
                if isinstance(result, DomainError):
                    if result.code in RETRIED:
                        landed_all = False
                        continue
                    # Credits answered and refused (a hold already resolved another way): nothing more to do.
                    SETTLES_REFUSED.inc()
                    log.error("owed settle of hold %s refused by credits: %s", entry.hold_id, result.message)
                self.owed.pop(entry.key, None)
                self._done(entry.key)
        if owed and not self.owed:
            log.info("every owed settle has landed")
        return landed_all

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
