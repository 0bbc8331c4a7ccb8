"""Reserve+settle pairs per second on PostgreSQL: spread over many accounts, and on one hot account.

    python -m bench.credits_bench [--url postgresql://postgres@127.0.0.1:5432/postgres]
        [--pairs 5000] [--concurrency 32] [--pool-size 10] [--processes 1]

Makes a scratch database, migrates it, runs each scenario, reconciles the ledger (any violation fails
the run) and drops the database. Each pair is what the router does per request: Reserve the worst
case, then Settle the actual cost with a usage row and its billing event — on PostgreSQL one call
of a database function each, as the service runs them. `--pool-size` is the service's
TOLLGATE_CREDITS_POOL_SIZE: fewer connections than concurrent pairs is faster (the calls are short,
and more connections only queue on a busy account's row lock). The one-minute load average is
printed next to each figure: the machine may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
import uuid

from services.credits import holds
from services.credits.__main__ import MIGRATIONS, VERSION_TABLE
from services.credits.ledger import Ledger, Policy
from services.credits.reconcile import reconcile
from services.credits.usage import UsageEntry
from services.runtime.db import create_engine, migrate

MICRO = 1_000_000
POLICY = Policy(default_grant_micro=1_000_000 * MICRO)


async def _pairs(url: str, users: list[str], pairs: int, concurrency: int, pool: int, tag: str) -> None:
    engine = create_engine(url, pool_size=pool)
    ledger = Ledger(engine, POLICY)
    queue = iter(range(pairs))

    async def worker() -> None:
        for n in queue:
            user = users[n % len(users)]
            rid = f"{tag}-{n}"
            hold_id, _ = await holds.reserve(ledger, user, 20_000, f"{rid}:0:reserve", rid)
            entry = UsageEntry(
                request_id=rid, user_id=user, model="bench", provider="bench", prompt_tokens=100, completion_tokens=50
            )
            await holds.settle(ledger, hold_id, 12_345, f"{rid}:0:settle", entry)

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await ledger.close()
        await engine.dispose()


def _process(url: str, users: list[str], pairs: int, concurrency: int, pool: int, tag: str) -> None:
    asyncio.run(_pairs(url, users, pairs, concurrency, pool, tag))


def scenario(name: str, url: str, users: list[str], pairs: int, concurrency: int, pool: int, processes: int) -> float:
    started = time.perf_counter()
    if processes == 1:
        _process(url, users, pairs, concurrency, pool, f"{name}-0")
    else:
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(target=_process, args=(url, users, pairs // processes, concurrency, pool, f"{name}-{p}"))
            for p in range(processes)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
            if proc.exitcode:
                raise SystemExit(f"{name}: a worker process failed")
        pairs = pairs // processes * processes
    elapsed = time.perf_counter() - started
    rate = pairs / elapsed
    load = os.getloadavg()[0]
    print(f"{name:<28} {pairs:>7} pairs in {elapsed:6.2f}s = {rate:8.0f} pairs/s  (load average {load:.2f})")
    return rate


async def _prepare(url: str, users: list[str]) -> None:
    engine = create_engine(url)
    await migrate(engine, MIGRATIONS, VERSION_TABLE)
    ledger = Ledger(engine, POLICY)
    for start in range(0, len(users), 100):
        await asyncio.gather(*(ledger.balance(u) for u in users[start : start + 100]))
    await ledger.close()
    await engine.dispose()


async def _check(url: str) -> bool:
    engine = create_engine(url)
    try:
        report = await reconcile(engine)
    finally:
        await engine.dispose()
    print("\n".join(report.lines()))
    return report.ok


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url", default=os.environ.get("TOLLGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent pairs per process")
    parser.add_argument(
        "--pool-size", type=int, default=10, help="database connections per process (TOLLGATE_CREDITS_POOL_SIZE)"
    )
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="synchronous_commit=off on the scratch database: shows the figure without the "
        "disk's flush latency (not how a ledger should run)",
    )
    args = parser.parse_args()

    name = f"tollgate_bench_{uuid.uuid4().hex[:8]}"
    base = args.url.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    asyncio.run(_admin(args.url, f'CREATE DATABASE "{name}"'))
    try:
        if args.async_commit:
            asyncio.run(_admin(args.url, f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
        spread = [f"acct{n:04d}" for n in range(1000)]
        asyncio.run(_prepare(url, [*spread, "hot"]))
        print(
            f"credits bench: PostgreSQL, {os.cpu_count()} cores, {args.processes} process(es) x "
            f"{args.concurrency} concurrent pairs on {args.pool_size} connections"
        )
        scenario("1,000 accounts", url, spread, args.pairs, args.concurrency, args.pool_size, args.processes)
        scenario("one hot account", url, ["hot"], args.pairs, args.concurrency, args.pool_size, args.processes)
        ok = asyncio.run(_check(url))
    finally:
        asyncio.run(_admin(args.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
